//! The closed sets of words the API and the metadata use for states and
//! kinds (`"attached"`, `"platform"`, `"managed"`, ...): one enum each, so a
//! misspelt or new value is a compile error, not a silent mismatch. Each
//! serialises as the lower-case word the wire format and the database
//! already use, and parses back with a message naming the words allowed.

/// A word that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{got}' is not a valid {what}: use one of {allowed}")]
pub struct UnknownWord {
    /// What was being parsed, e.g. `principal kind`.
    pub what: &'static str,
    /// The word given.
    pub got: String,
    /// The words allowed, comma-separated.
    pub allowed: &'static str,
}

macro_rules! words {
    ($(#[$m:meta])* $name:ident ($what:literal) { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        // kebab-case is the word of every value (`from-image`): the
        // test below holds `as_str` and serde to the same word.
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$vm])* $var,)+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The word for this value, as stored and sent.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $s,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($s => Ok($name::$var),)+
                    _ => Err(UnknownWord {
                        what: $what,
                        got: s.to_string(),
                        allowed: concat!($($s, " "),+).trim_ascii_end(),
                    }),
                }
            }
        }
    };
}

words! {
    /// Whether a key vault or key is in use or soft-deleted (purged ones
    /// are not shown).
    Lifecycle ("lifecycle state") {
        /// In use.
        Active = "active",
        /// Soft-deleted: recoverable until its purge date.
        Deleted = "deleted",
        /// Purged: a tombstone; its material is destroyed.
        Purged = "purged",
    }
}

words! {
    /// How a disk, snapshot or image is encrypted at rest.
    EncryptionType ("encryption type") {
        /// Under a platform-managed key of the region.
        Platform = "platform",
        /// Under a customer key reached through a disk encryption set.
        Customer = "customer",
        /// Two layers: platform and customer.
        Double = "double",
    }
}

words! {
    /// What a principal is.
    PrincipalKind ("principal kind") {
        /// A person.
        User = "user",
        /// A program.
        Service = "service",
        /// An identity the platform creates for a resource (e.g. a disk
        /// encryption set) to reach a key.
        Managed = "managed",
    }
}

words! {
    /// Whether a disk is attached.
    DiskState ("disk state") {
        /// Not attached.
        Available = "available",
        /// Attached: an NBD URI reaches it.
        Attached = "attached",
    }
}

words! {
    /// A snapshot's state (complete when the call that takes it returns).
    SnapshotState ("snapshot state") {
        /// Complete and restorable.
        Completed = "completed",
    }
}

words! {
    /// An API token's state.
    TokenState ("token state") {
        /// Usable.
        Active = "active",
        /// Past its expiry.
        Expired = "expired",
        /// Revoked.
        Revoked = "revoked",
    }
}

words! {
    /// A key's state in the vault.
    KeyState ("key state") {
        /// Usable for wrap and unwrap.
        Enabled = "enabled",
        /// Not usable until enabled again.
        Disabled = "disabled",
    }
}

words! {
    /// An authorization decision.
    Decision ("decision") {
        /// Allowed.
        Allow = "allow",
        /// Denied.
        Deny = "deny",
    }
}

words! {
    /// How a snapshot, image or disk came to be, as its owner sees it (a
    /// recipient of a shared one sees `shared`).
    CreationMethod ("creation method") {
        /// Taken from a disk.
        Snapshot = "snapshot",
        /// Made for an image (from a disk or a snapshot).
        Image = "image",
        /// Copied from another snapshot or image (maybe of another account).
        Copy = "copy",
        /// Shared with the caller's account by another account (never
        /// stored: what a recipient sees).
        Shared = "shared",
        /// An empty disk.
        Empty = "empty",
        /// A disk made from a snapshot.
        FromSnapshot = "from-snapshot",
        /// A disk launched from an image.
        FromImage = "from-image",
    }
}

words! {
    /// What a share is.
    ShareKind ("share kind") {
        /// A resource share: resources and principals, named by its owner.
        Share = "share",
        /// The share behind one snapshot's or image's permissions.
        Permission = "permission",
    }
}

words! {
    /// Who a resource share may name as principals.
    PrincipalScope ("principal scope") {
        /// Accounts anywhere (those outside the owner's tenant are invited
        /// and must accept), and the owner tenant's folders and tenant.
        Any = "any",
        /// Only the owner's tenant, its folders and accounts.
        Tenant = "tenant",
    }
}

words! {
    /// Whether an image can be launched.
    ImageState ("image state") {
        /// Launchable.
        Available = "available",
        /// Its copy under another key is running: launches wait.
        Pending = "pending",
        /// A job of its copy failed or was cancelled: delete it.
        Failed = "failed",
    }
}

words! {
    /// Where a principal of a share stands.
    ShareStatus ("share status") {
        /// In force: the principal sees the share's resources.
        Associated = "associated",
        /// Invited, not answered yet: nothing is shared yet.
        Pending = "pending",
        /// The invitation was rejected.
        Rejected = "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_through_text_and_json() {
        for k in PrincipalKind::ALL {
            assert_eq!(k.as_str().parse::<PrincipalKind>().unwrap(), *k);
            assert_eq!(
                serde_json::to_string(k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert_eq!(DiskState::Attached.to_string(), "attached");
        for m in CreationMethod::ALL {
            assert_eq!(
                serde_json::to_string(m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        for m in ImageState::ALL {
            assert_eq!(
                serde_json::to_string(m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        for m in ShareStatus::ALL {
            assert_eq!(
                serde_json::to_string(m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
    }

    #[test]
    fn an_unknown_word_names_the_allowed_ones() {
        let e = "admin".parse::<PrincipalKind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "'admin' is not a valid principal kind: use one of user service managed"
        );
        assert!(serde_json::from_str::<EncryptionType>("\"Platform\"").is_err());
    }
}
