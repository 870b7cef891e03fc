//! Byte sizes as users write them (`10GiB`, `512MiB`, `1073741824`) and as the
//! API returns them (bytes, plus a human rendering).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One kibibyte.
pub const KIB: u64 = 1 << 10;
/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// One gibibyte.
pub const GIB: u64 = 1 << 30;
/// One tebibyte.
pub const TIB: u64 = 1 << 40;

/// Why a size string or value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number with an optional unit.
    #[error(
        "'{0}' is not a size: write a whole number with an optional unit, e.g. 10GiB, 512MiB, 1TiB or 1073741824"
    )]
    Malformed(String),
    /// The unit is not one we know.
    #[error("unknown size unit '{0}': use B, KiB, MiB, GiB or TiB (or K, M, G, T for the same)")]
    UnknownUnit(String),
    /// A decimal unit (KB, MB, GB, TB): refused, because tools disagree on
    /// whether `1GB` is 10^9 or 2^30 bytes and a disk size must not be a
    /// guess.
    #[error(
        "'{given}' is ambiguous: some tools read {unit} as powers of 1000, others as powers of 1024. Write {suggestion} (binary units: KiB, MiB, GiB, TiB, or K, M, G, T as qemu-img does) or a number of bytes"
    )]
    DecimalUnit {
        /// What was given.
        given: String,
        /// The unit, e.g. `GB`.
        unit: String,
        /// The binary spelling of the same number, e.g. `10GiB`.
        suggestion: String,
    },
    /// The number overflows 64 bits.
    #[error("size '{0}' is too large")]
    Overflow(String),
}

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, SizeError> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(SizeError::Malformed(s.chars().take(40).collect()));
        }
        let n: u64 = num
            .parse()
            .map_err(|_| SizeError::Overflow(s.chars().take(40).collect()))?;
        let mult = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => KIB,
            "m" | "mib" => MIB,
            "g" | "gib" => GIB,
            "t" | "tib" => TIB,
            "kb" | "mb" | "gb" | "tb" => {
                let unit = unit.trim().to_ascii_uppercase();
                return Err(SizeError::DecimalUnit {
                    given: t.chars().take(40).collect(),
                    suggestion: format!("{num}{}iB", &unit[..1]),
                    unit,
                });
            }
            other => {
                if other.starts_with('.') || other.starts_with(',') {
                    return Err(SizeError::Malformed(s.chars().take(40).collect()));
                }
                return Err(SizeError::UnknownUnit(
                    unit.trim().chars().take(16).collect(),
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| SizeError::Overflow(s.chars().take(40).collect()))
    }
}

/// `bytes` as people read it: the largest binary unit it reaches, with
/// one decimal under 100 of it (`1.5 GiB`, `640 KiB`, `17 B`).
pub fn approx(bytes: u64) -> String {
    for (unit, m) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if bytes >= m {
            let v = bytes as f64 / m as f64;
            return if v < 100.0 {
                format!("{v:.1} {unit}")
            } else {
                format!("{v:.0} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, m) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if b >= m && b.is_multiple_of(m) {
                return write!(f, "{}{}", b / m, unit);
            }
        }
        write!(f, "{b}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    /// Accepts a number of bytes or a string such as `"10GiB"`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a size must be a whole number of bytes or a string such as \"10GiB\"",
            )
        })? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn approx_sizes_read_as_people_say_them() {
        assert_eq!(super::approx(17), "17 B");
        assert_eq!(super::approx(640 * super::KIB), "640 KiB");
        assert_eq!(super::approx(3 * super::GIB / 2), "1.5 GiB");
        assert_eq!(super::approx(200 * super::MIB), "200 MiB");
    }

    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("10GiB".parse::<ByteSize>().unwrap().bytes(), 10 * GIB);
        assert_eq!("512mib".parse::<ByteSize>().unwrap().bytes(), 512 * MIB);
        assert_eq!("1 TiB".parse::<ByteSize>().unwrap().bytes(), TIB);
        assert_eq!("4096".parse::<ByteSize>().unwrap().bytes(), 4096);
        assert_eq!("2G".parse::<ByteSize>().unwrap().bytes(), 2 * GIB);
        assert_eq!("3k".parse::<ByteSize>().unwrap().bytes(), 3 * KIB);
    }

    #[test]
    fn decimal_units_are_refused_with_the_binary_spelling() {
        for (given, hint) in [
            ("1GB", "1GiB"),
            ("10 mb", "10MiB"),
            ("2TB", "2TiB"),
            ("4kB", "4KiB"),
        ] {
            let e = given.parse::<ByteSize>().unwrap_err();
            assert!(matches!(e, SizeError::DecimalUnit { .. }), "{given}: {e:?}");
            let m = e.to_string();
            assert!(m.contains(hint) && m.contains("ambiguous"), "{given}: {m}");
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        for bad in [
            "",
            "GiB",
            "-1GiB",
            "1.5GiB",
            "10 parsecs",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            "20000000TiB".parse::<ByteSize>(),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn displays_in_largest_exact_unit() {
        assert_eq!(ByteSize(10 * GIB).to_string(), "10GiB");
        assert_eq!(ByteSize(1536 * MIB).to_string(), "1536MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn deserializes_numbers_and_strings() {
        let a: ByteSize = serde_json::from_str("\"1GiB\"").unwrap();
        let b: ByteSize = serde_json::from_str("1073741824").unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<ByteSize>("-5").is_err());
    }
}
