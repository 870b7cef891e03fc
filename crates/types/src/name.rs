//! Resource names chosen by users: 1 to 80 characters, starting with a letter
//! or digit, then letters, digits, `.`, `_` and `-` (Azure's rule for most
//! resource names). Names are labels, not identities: two disks may share one.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted name.
pub const MAX_NAME_LEN: usize = 80;

/// Why a name is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty name.
    #[error("a name must not be empty")]
    Empty,
    /// Too long.
    #[error("name is {0} characters long; the limit is 80")]
    TooLong(usize),
    /// A character outside the allowed set.
    #[error(
        "name '{name}' has an invalid character {bad:?} at position {pos}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
    )]
    BadChar {
        /// The name (truncated).
        name: String,
        /// The offending character.
        bad: char,
        /// Its position (0-based, in characters).
        pos: usize,
    },
}

/// A validated resource name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Name(String);

impl Name {
    /// Validate `s` as a name.
    pub fn new(s: &str) -> Result<Self, NameError> {
        let n = s.chars().count();
        if n == 0 {
            return Err(NameError::Empty);
        }
        if n > MAX_NAME_LEN {
            return Err(NameError::TooLong(n));
        }
        for (pos, c) in s.chars().enumerate() {
            let ok = c.is_ascii_alphanumeric() || (pos > 0 && matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(NameError::BadChar {
                    name: s.chars().take(MAX_NAME_LEN).collect(),
                    bad: c,
                    pos,
                });
            }
        }
        Ok(Self(s.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Name::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["web", "db-01", "golden.image_v2", "A", &"x".repeat(80)] {
            Name::new(ok).unwrap();
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new(&"x".repeat(81)), Err(NameError::TooLong(81)));
        for bad in [
            "-lead",
            ".hidden",
            "has space",
            "semi;colon",
            "slash/y",
            "nul\0",
            "é",
        ] {
            assert!(
                matches!(Name::new(bad), Err(NameError::BadChar { .. })),
                "{bad:?}"
            );
        }
    }
}
