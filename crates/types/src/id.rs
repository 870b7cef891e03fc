//! Resource ids: a kind prefix and 16 lowercase hex digits of randomness, in the
//! style of `vol-0123456789abcdef`. The prefix makes an id self-describing in
//! logs and errors; the 64 random bits come from the system CSPRNG, so ids are
//! not guessable from one another (still, an id is never a capability: every
//! use is authorised).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What an id names. The prefix of each kind is part of the API and of stored
/// metadata: never change one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A disk (`disk-`).
    Disk,
    /// A snapshot (`snap-`).
    Snapshot,
    /// An internal storage volume, one node of a lineage (`vol-`).
    Volume,
    /// A data encryption key (`dek-`).
    Dek,
    /// A key in a key vault (`key-`).
    Key,
    /// A key vault (`kv-`).
    Vault,
    /// A secret in a key vault (`sec-`).
    Secret,
    /// A disk encryption set: a customer key and a managed identity
    /// (`des-`).
    EncryptionSet,
    /// A principal (`prn-`).
    Principal,
    /// An account (`acct-`).
    Account,
    /// A tenant (`tnt-`).
    Tenant,
    /// An API token's public identifier (`tok-`).
    Token,
    /// An attachment of a disk to a block client (`att-`).
    Attachment,
    /// A Coffer server node: one run of `coffer serve` (`node-`).
    Node,
    /// A folder of a tenant's organisation tree (`fld-`).
    Folder,
    /// A role assignment: principal + role + scope (`ra-`).
    RoleAssignment,
    /// A grant on a key: a principal allowed some operations with it
    /// (`grant-`).
    Grant,
    /// An image: one or more snapshots (root and data) to launch disks
    /// from (`img-`).
    Image,
    /// A resource share: resources and the principals they are shared
    /// with (`rs-`); also the one behind a snapshot's or image's
    /// permissions.
    Share,
    /// A background job, e.g. a re-encrypting copy (`job-`).
    Job,
    /// An invitation of an account to a resource share (`inv-`).
    Invitation,
    /// An export: another deployment's read access to a snapshot or an
    /// image, by a pull token (`exp-`).
    Export,
}

impl Kind {
    /// The id prefix of this kind, without the dash.
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::Disk => "disk",
            Kind::Snapshot => "snap",
            Kind::Volume => "vol",
            Kind::Dek => "dek",
            Kind::Key => "key",
            Kind::Vault => "kv",
            Kind::Secret => "sec",
            Kind::EncryptionSet => "des",
            Kind::Principal => "prn",
            Kind::Account => "acct",
            Kind::Tenant => "tnt",
            Kind::Token => "tok",
            Kind::Attachment => "att",
            Kind::Node => "node",
            Kind::Folder => "fld",
            Kind::RoleAssignment => "ra",
            Kind::Grant => "grant",
            Kind::Image => "img",
            Kind::Share => "rs",
            Kind::Job => "job",
            Kind::Invitation => "inv",
            Kind::Export => "exp",
        }
    }

    /// A human word for the kind, used in error messages.
    pub const fn noun(self) -> &'static str {
        match self {
            Kind::Disk => "disk",
            Kind::Snapshot => "snapshot",
            Kind::Volume => "volume",
            Kind::Dek => "data key",
            Kind::Key => "key",
            Kind::Vault => "key vault",
            Kind::Secret => "secret",
            Kind::EncryptionSet => "encryption set",
            Kind::Principal => "principal",
            Kind::Account => "account",
            Kind::Tenant => "tenant",
            Kind::Token => "token",
            Kind::Attachment => "attachment",
            Kind::Node => "node",
            Kind::Folder => "folder",
            Kind::RoleAssignment => "role assignment",
            Kind::Grant => "key grant",
            Kind::Image => "image",
            Kind::Share => "resource share",
            Kind::Job => "job",
            Kind::Invitation => "invitation",
            Kind::Export => "export",
        }
    }

    const ALL: [Kind; 22] = [
        Kind::Disk,
        Kind::Snapshot,
        Kind::Volume,
        Kind::Dek,
        Kind::Key,
        Kind::Vault,
        Kind::Secret,
        Kind::EncryptionSet,
        Kind::Principal,
        Kind::Account,
        Kind::Tenant,
        Kind::Token,
        Kind::Attachment,
        Kind::Node,
        Kind::Folder,
        Kind::RoleAssignment,
        Kind::Grant,
        Kind::Image,
        Kind::Share,
        Kind::Job,
        Kind::Invitation,
        Kind::Export,
    ];
}

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string does not have the `prefix-16hex` shape.
    #[error("'{0}' is not a valid id: ids look like 'disk-0123456789abcdef'")]
    Malformed(String),
    /// The id is well formed but names another kind of resource.
    #[error("'{got}' is not a {expected} id: {expected} ids start with '{prefix}-'")]
    WrongKind {
        /// The id given.
        got: String,
        /// The kind expected.
        expected: &'static str,
        /// The expected prefix.
        prefix: &'static str,
    },
}

/// A resource id: a [`Kind`] and 64 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id {
    kind: Kind,
    value: u64,
}

impl Id {
    /// A fresh random id of `kind`.
    pub fn random(kind: Kind) -> Self {
        let mut b = [0u8; 8];
        aws_lc_rs::rand::fill(&mut b).expect("system CSPRNG failed");
        Self {
            kind,
            value: u64::from_be_bytes(b),
        }
    }

    /// The kind of resource this id names.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The 64-bit value (used in on-disk names and associated data).
    pub fn value(&self) -> u64 {
        self.value
    }

    /// Rebuild an id from its parts (for stored metadata).
    pub fn from_parts(kind: Kind, value: u64) -> Self {
        Self { kind, value }
    }

    /// Parse `s` and check that it names a resource of `kind`.
    pub fn parse_kind(s: &str, kind: Kind) -> Result<Self, IdError> {
        let id: Id = s.parse()?;
        if id.kind != kind {
            return Err(IdError::WrongKind {
                got: s.to_string(),
                expected: kind.noun(),
                prefix: kind.prefix(),
            });
        }
        Ok(id)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:016x}", self.kind.prefix(), self.value)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::Malformed(s.chars().take(80).collect());
        let (prefix, hexpart) = s.rsplit_once('-').ok_or_else(bad)?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.prefix() == prefix)
            .ok_or_else(bad)?;
        if hexpart.len() != 16
            || !hexpart
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(bad());
        }
        let value = u64::from_str_radix(hexpart, 16).map_err(|_| bad())?;
        Ok(Self { kind, value })
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for kind in Kind::ALL {
            let id = Id::random(kind);
            let text = id.to_string();
            assert!(text.starts_with(kind.prefix()));
            assert_eq!(text.parse::<Id>().unwrap(), id);
        }
    }

    #[test]
    fn rejects_malformed_and_wrong_kind() {
        for bad in [
            "",
            "disk",
            "disk-",
            "disk-123",
            "disk-0123456789ABCDEF",
            "disk-0123456789abcdefg",
            "nope-0123456789abcdef",
            "disk-0123456789abcde\u{e9}",
        ] {
            assert!(bad.parse::<Id>().is_err(), "{bad:?} parsed");
        }
        let e = Id::parse_kind("snap-0123456789abcdef", Kind::Disk).unwrap_err();
        assert!(e.to_string().contains("disk ids start with 'disk-'"), "{e}");
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(Id::random(Kind::Disk), Id::random(Kind::Disk));
    }
}
