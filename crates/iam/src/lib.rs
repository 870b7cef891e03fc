//! Coffer's policy engine. It owns the vocabulary of authorization (the
//! [`Action`]s a request can perform, the built-in [`Role`]s and the
//! actions each grants, the [`Scope`]s a role is assigned at) and the one
//! function that decides every request, [`authorize`], with the reasons
//! behind its answer. It does no I/O: the service layer loads the caller's
//! role assignments and the target's chain of scopes from the metadata
//! store and asks this crate.
//!
//! ## The rule
//! A role assigned at a scope applies to that scope and everything under
//! it: the deployment holds tenants, a tenant holds a tree of folders, a
//! folder holds folders and accounts, an account holds resources (disks,
//! snapshots, keys, principals). Nothing is allowed unless an assignment
//! (or one of the two fixed rules below) allows it: deny by default.
//!
//! A denied request is answered in one of two ways, so that existence never
//! leaks:
//! - **hidden** (404): the caller holds no role that may *read* the target
//!   (e.g. `disks/read` for a disk) at the target or above it: the answer is
//!   exactly that of a target that does not exist;
//! - **forbidden** (403): the caller may read the target but not perform
//!   the action; the answer names the missing action and the roles that
//!   grant it.
//!
//! Two fixed rules besides assignments: a principal may see its own home
//! account and tenant (their id and name, nothing in them), and may read
//! itself and manage its own tokens.

use std::fmt;
use std::str::FromStr;

use coffer_types::{Id, Kind};
use serde::{Deserialize, Serialize};

/// Something a request does. The text form (`disks/read`) is part of the
/// API: it appears in errors, in `iam explain` and in `docs/IAM.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See disks: show, list.
    DisksRead,
    /// Create and resize disks.
    DisksWrite,
    /// Delete disks.
    DisksDelete,
    /// Attach and detach disks (read and write their blocks over NBD).
    DisksAttach,
    /// See snapshots: show, list.
    SnapshotsRead,
    /// Take snapshots.
    SnapshotsWrite,
    /// Delete snapshots.
    SnapshotsDelete,
    /// Create disks from a snapshot and copy it (AWS's create-volume
    /// permission): seeing a snapshot is not enough.
    SnapshotsUse,
    /// See images: show, list.
    ImagesRead,
    /// Create images and change their tags.
    ImagesWrite,
    /// Delete images.
    ImagesDelete,
    /// Launch disks from an image and copy it (AWS's launch permission).
    ImagesUse,
    /// See resource shares, their resources, principals and invitations,
    /// and a resource's permissions.
    SharesRead,
    /// Create resource shares, change what they share and with whom,
    /// change a snapshot's or image's permissions; accept or reject an
    /// invitation for an account.
    SharesWrite,
    /// See tenants, folders and accounts.
    OrgRead,
    /// Create, move and delete tenants, folders and accounts.
    OrgWrite,
    /// See principals and role assignments.
    IamRead,
    /// Create and delete principals and role assignments.
    IamWrite,
    /// Create and revoke API tokens of principals.
    TokensWrite,
    /// See key vaults.
    VaultsRead,
    /// Create key vaults and change their settings.
    VaultsWrite,
    /// Delete, recover and purge key vaults.
    VaultsDelete,
    /// See keys and their versions (never their material).
    KeysRead,
    /// Create, import and rotate keys; change their state.
    KeysWrite,
    /// Delete, recover and purge keys.
    KeysDelete,
    /// Encrypt with a key.
    KeysEncrypt,
    /// Decrypt with a key.
    KeysDecrypt,
    /// Wrap a data key with a key.
    KeysWrap,
    /// Unwrap a data key with a key.
    KeysUnwrap,
    /// Create, list and revoke grants on a key.
    KeysGrant,
    /// See disk encryption sets.
    EncryptionSetsRead,
    /// Create disk encryption sets and change their key.
    EncryptionSetsWrite,
    /// Delete disk encryption sets.
    EncryptionSetsDelete,
    /// See secrets: names, versions, dates (never values).
    SecretsRead,
    /// Read a secret's value.
    SecretsGet,
    /// Set secrets (a new version each time).
    SecretsWrite,
    /// Delete, recover and purge secrets.
    SecretsDelete,
    /// Operate the deployment: consistency checks, garbage collection,
    /// nodes. Only meaningful at the deployment scope.
    DeploymentOperate,
}

impl Action {
    /// Every action, in the order of the docs.
    pub const ALL: [Action; 38] = [
        Action::DisksRead,
        Action::DisksWrite,
        Action::DisksDelete,
        Action::DisksAttach,
        Action::SnapshotsRead,
        Action::SnapshotsWrite,
        Action::SnapshotsDelete,
        Action::SnapshotsUse,
        Action::ImagesRead,
        Action::ImagesWrite,
        Action::ImagesDelete,
        Action::ImagesUse,
        Action::SharesRead,
        Action::SharesWrite,
        Action::OrgRead,
        Action::OrgWrite,
        Action::IamRead,
        Action::IamWrite,
        Action::TokensWrite,
        Action::VaultsRead,
        Action::VaultsWrite,
        Action::VaultsDelete,
        Action::KeysRead,
        Action::KeysWrite,
        Action::KeysDelete,
        Action::KeysEncrypt,
        Action::KeysDecrypt,
        Action::KeysWrap,
        Action::KeysUnwrap,
        Action::KeysGrant,
        Action::EncryptionSetsRead,
        Action::EncryptionSetsWrite,
        Action::EncryptionSetsDelete,
        Action::SecretsRead,
        Action::SecretsGet,
        Action::SecretsWrite,
        Action::SecretsDelete,
        Action::DeploymentOperate,
    ];

    /// The action's stable text form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::DisksRead => "disks/read",
            Action::DisksWrite => "disks/write",
            Action::DisksDelete => "disks/delete",
            Action::DisksAttach => "disks/attach",
            Action::SnapshotsRead => "snapshots/read",
            Action::SnapshotsWrite => "snapshots/write",
            Action::SnapshotsDelete => "snapshots/delete",
            Action::SnapshotsUse => "snapshots/use",
            Action::ImagesRead => "images/read",
            Action::ImagesWrite => "images/write",
            Action::ImagesDelete => "images/delete",
            Action::ImagesUse => "images/use",
            Action::SharesRead => "shares/read",
            Action::SharesWrite => "shares/write",
            Action::OrgRead => "org/read",
            Action::OrgWrite => "org/write",
            Action::IamRead => "iam/read",
            Action::IamWrite => "iam/write",
            Action::TokensWrite => "tokens/write",
            Action::VaultsRead => "vaults/read",
            Action::VaultsWrite => "vaults/write",
            Action::VaultsDelete => "vaults/delete",
            Action::KeysRead => "keys/read",
            Action::KeysWrite => "keys/write",
            Action::KeysDelete => "keys/delete",
            Action::KeysEncrypt => "keys/encrypt",
            Action::KeysDecrypt => "keys/decrypt",
            Action::KeysWrap => "keys/wrapKey",
            Action::KeysUnwrap => "keys/unwrapKey",
            Action::KeysGrant => "keys/grant",
            Action::EncryptionSetsRead => "encryptionSets/read",
            Action::EncryptionSetsWrite => "encryptionSets/write",
            Action::EncryptionSetsDelete => "encryptionSets/delete",
            Action::SecretsRead => "secrets/read",
            Action::SecretsGet => "secrets/get",
            Action::SecretsWrite => "secrets/write",
            Action::SecretsDelete => "secrets/delete",
            Action::DeploymentOperate => "deployment/operate",
        }
    }

    /// The action that makes a target of `kind` visible at all.
    pub const fn read_of(kind: TargetKind) -> Action {
        match kind {
            TargetKind::Disk => Action::DisksRead,
            TargetKind::Snapshot => Action::SnapshotsRead,
            TargetKind::Image => Action::ImagesRead,
            TargetKind::Share => Action::SharesRead,
            TargetKind::Tenant | TargetKind::Folder | TargetKind::Account => Action::OrgRead,
            TargetKind::Principal | TargetKind::RoleAssignment => Action::IamRead,
            TargetKind::Vault => Action::VaultsRead,
            TargetKind::Secret => Action::SecretsRead,
            TargetKind::EncryptionSet => Action::EncryptionSetsRead,
            TargetKind::Key => Action::KeysRead,
            TargetKind::Deployment => Action::DeploymentOperate,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action '{0}': actions look like 'disks/read'; see `coffer role list` for all")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, UnknownAction> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownAction(s.chars().take(60).collect()))
    }
}

/// A built-in role: a named set of actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including assigning roles.
    Owner,
    /// Manage disks, snapshots and key vaults (not the keys in them); see
    /// everything else; no role assignments, no organisation changes, no
    /// key operations.
    Contributor,
    /// See everything, change nothing.
    Reader,
    /// Manage keys and use them (all key actions).
    KeyVaultAdministrator,
    /// Use keys: encrypt, decrypt, wrap, unwrap.
    KeyVaultCryptoUser,
    /// Wrap and unwrap with keys: the role a managed identity of a disk
    /// encryption set needs on its key.
    KeyVaultCryptoServiceEncryptionUser,
    /// Read secrets' values.
    KeyVaultSecretsUser,
    /// See snapshots and images, create disks from them and copy them:
    /// what a recipient of a shared snapshot or image needs (Reader only
    /// sees it).
    DiskSnapshotUser,
}

use Action as A;

const CONTRIBUTOR: &[Action] = &[
    A::DisksRead,
    A::DisksWrite,
    A::DisksDelete,
    A::DisksAttach,
    A::SnapshotsRead,
    A::SnapshotsWrite,
    A::SnapshotsDelete,
    A::SnapshotsUse,
    A::ImagesRead,
    A::ImagesWrite,
    A::ImagesDelete,
    A::ImagesUse,
    A::SharesRead,
    A::SharesWrite,
    A::OrgRead,
    A::IamRead,
    A::VaultsRead,
    A::VaultsWrite,
    A::VaultsDelete,
    A::KeysRead,
    A::SecretsRead,
    A::EncryptionSetsRead,
    A::EncryptionSetsWrite,
    A::EncryptionSetsDelete,
];
const READER: &[Action] = &[
    A::DisksRead,
    A::SnapshotsRead,
    A::ImagesRead,
    A::SharesRead,
    A::OrgRead,
    A::IamRead,
    A::VaultsRead,
    A::KeysRead,
    A::SecretsRead,
    A::EncryptionSetsRead,
];
const KEY_ADMIN: &[Action] = &[
    A::VaultsRead,
    A::KeysRead,
    A::KeysWrite,
    A::KeysDelete,
    A::KeysEncrypt,
    A::KeysDecrypt,
    A::KeysWrap,
    A::KeysUnwrap,
    A::KeysGrant,
    A::SecretsRead,
    A::SecretsGet,
    A::SecretsWrite,
    A::SecretsDelete,
];
const KEY_USER: &[Action] = &[
    A::KeysRead,
    A::KeysEncrypt,
    A::KeysDecrypt,
    A::KeysWrap,
    A::KeysUnwrap,
];
const KEY_SERVICE: &[Action] = &[A::KeysRead, A::KeysWrap, A::KeysUnwrap];
const SECRETS_USER: &[Action] = &[A::SecretsRead, A::SecretsGet];
const SNAPSHOT_USER: &[Action] = &[
    A::SnapshotsRead,
    A::SnapshotsUse,
    A::ImagesRead,
    A::ImagesUse,
];

impl Role {
    /// Every built-in role, in the order of the docs.
    pub const ALL: [Role; 8] = [
        Role::Owner,
        Role::Contributor,
        Role::Reader,
        Role::DiskSnapshotUser,
        Role::KeyVaultAdministrator,
        Role::KeyVaultCryptoUser,
        Role::KeyVaultCryptoServiceEncryptionUser,
        Role::KeyVaultSecretsUser,
    ];

    /// The role's stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::Contributor => "Contributor",
            Role::Reader => "Reader",
            Role::KeyVaultAdministrator => "Key Vault Administrator",
            Role::KeyVaultCryptoUser => "Key Vault Crypto User",
            Role::KeyVaultCryptoServiceEncryptionUser => "Key Vault Crypto Service Encryption User",
            Role::KeyVaultSecretsUser => "Key Vault Secrets User",
            Role::DiskSnapshotUser => "Disk Snapshot User",
        }
    }

    /// One line on what the role is for.
    pub const fn description(self) -> &'static str {
        match self {
            Role::Owner => "full access, including assigning roles and changing the organisation",
            Role::Contributor => {
                "manage disks, snapshots, key vaults and disk encryption sets; see the rest; no role assignments, organisation changes or key operations"
            }
            Role::Reader => "see everything, change nothing",
            Role::KeyVaultAdministrator => "manage keys and perform every key operation",
            Role::KeyVaultCryptoUser => "use keys: encrypt, decrypt, wrap and unwrap",
            Role::KeyVaultCryptoServiceEncryptionUser => {
                "wrap and unwrap data keys: for the managed identity of a disk encryption set"
            }
            Role::KeyVaultSecretsUser => "read secrets' values",
            Role::DiskSnapshotUser => {
                "see snapshots and images, create disks from them and copy them"
            }
        }
    }

    /// The actions the role grants.
    pub fn actions(self) -> &'static [Action] {
        match self {
            Role::Owner => &Action::ALL,
            Role::Contributor => CONTRIBUTOR,
            Role::Reader => READER,
            Role::KeyVaultAdministrator => KEY_ADMIN,
            Role::KeyVaultCryptoUser => KEY_USER,
            Role::KeyVaultCryptoServiceEncryptionUser => KEY_SERVICE,
            Role::KeyVaultSecretsUser => SECRETS_USER,
            Role::DiskSnapshotUser => SNAPSHOT_USER,
        }
    }

    /// Whether the role grants `action`.
    pub fn grants(self, action: Action) -> bool {
        self.actions().contains(&action)
    }

    /// The roles that grant `action`, most specific (fewest actions) first.
    pub fn granting(action: Action) -> Vec<Role> {
        let mut v: Vec<Role> = Role::ALL.into_iter().filter(|r| r.grants(action)).collect();
        v.sort_by_key(|r| r.actions().len());
        v
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role '{0}': the built-in roles are Owner, Contributor, Reader, Disk Snapshot User, Key Vault Administrator, Key Vault Crypto User, Key Vault Crypto Service Encryption User and Key Vault Secrets User"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    /// Case-insensitive; spaces, dashes and underscores are ignored, so
    /// `reader`, `key-vault-crypto-user` and `KeyVaultCryptoUser` all parse.
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        let squash = |t: &str| -> String {
            t.chars()
                .filter(|c| !matches!(c, ' ' | '-' | '_'))
                .flat_map(char::to_lowercase)
                .collect()
        };
        let want = squash(s);
        Role::ALL
            .into_iter()
            .find(|r| squash(r.as_str()) == want)
            .ok_or_else(|| UnknownRole(s.chars().take(60).collect()))
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What a role can be assigned at, and what a request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The whole deployment (its text form is `/`).
    Deployment,
    /// One tenant, a folder, an account or a single resource, by id.
    Id(Id),
}

/// The kind of thing a scope or target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// The deployment.
    Deployment,
    /// A tenant.
    Tenant,
    /// A folder.
    Folder,
    /// An account.
    Account,
    /// A disk.
    Disk,
    /// A snapshot.
    Snapshot,
    /// A principal.
    Principal,
    /// A role assignment.
    RoleAssignment,
    /// A key vault.
    Vault,
    /// A key.
    Key,
    /// A secret.
    Secret,
    /// A disk encryption set.
    EncryptionSet,
    /// An image.
    Image,
    /// A resource share.
    Share,
}

impl TargetKind {
    /// The target kind of ids of `kind`, or `None` for ids that are never
    /// scopes or targets. Exhaustive on purpose: a new id kind does not
    /// compile until it is placed here.
    pub const fn of(kind: Kind) -> Option<TargetKind> {
        match kind {
            Kind::Tenant => Some(TargetKind::Tenant),
            Kind::Folder => Some(TargetKind::Folder),
            Kind::Account => Some(TargetKind::Account),
            Kind::Disk => Some(TargetKind::Disk),
            Kind::Snapshot => Some(TargetKind::Snapshot),
            Kind::Principal => Some(TargetKind::Principal),
            Kind::RoleAssignment => Some(TargetKind::RoleAssignment),
            Kind::Key => Some(TargetKind::Key),
            Kind::Vault => Some(TargetKind::Vault),
            Kind::Secret => Some(TargetKind::Secret),
            Kind::EncryptionSet => Some(TargetKind::EncryptionSet),
            Kind::Image => Some(TargetKind::Image),
            Kind::Share => Some(TargetKind::Share),
            Kind::Volume
            | Kind::Dek
            | Kind::Token
            | Kind::Attachment
            | Kind::Node
            | Kind::Grant
            | Kind::Job
            | Kind::Invitation
            | Kind::Export => None,
        }
    }
}

/// An id that cannot be a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a scope: a scope is '/' (the deployment) or the id of a tenant, folder, account, disk, snapshot, key vault, key or principal"
)]
pub struct BadScope(pub String);

impl Scope {
    /// The kind of the scope.
    pub fn kind(self) -> TargetKind {
        match self {
            Scope::Deployment => TargetKind::Deployment,
            Scope::Id(id) => TargetKind::of(id.kind()).unwrap_or_else(|| {
                // `FromStr` and `Scope::of` refuse such ids; only code that
                // builds `Scope::Id` by hand from a non-target id gets here.
                panic!("{id} cannot be a scope: build scopes with Scope::of")
            }),
        }
    }

    /// The scope of `id`, if ids of its kind can be scopes or targets.
    pub fn of(id: Id) -> Result<Self, BadScope> {
        match TargetKind::of(id.kind()) {
            Some(_) => Ok(Scope::Id(id)),
            None => Err(BadScope(id.to_string())),
        }
    }

    /// A word for what the scope names: `disk`, `deployment`.
    pub fn noun(self) -> &'static str {
        match self {
            Scope::Deployment => "deployment",
            Scope::Id(id) => id.kind().noun(),
        }
    }

    /// A noun for messages: `disk disk-0123…`, `the deployment`.
    pub fn describe(self) -> String {
        match self {
            Scope::Deployment => "the deployment".into(),
            Scope::Id(id) => format!("{} {id}", id.kind().noun()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Deployment => f.write_str("/"),
            Scope::Id(id) => write!(f, "{id}"),
        }
    }
}

impl FromStr for Scope {
    type Err = BadScope;
    fn from_str(s: &str) -> Result<Self, BadScope> {
        let s = s.trim();
        if s == "/" {
            return Ok(Scope::Deployment);
        }
        let id: Id = s
            .parse()
            .map_err(|_| BadScope(s.chars().take(60).collect()))?;
        Scope::of(id)
    }
}

/// One role assignment of the subject: `role` at `scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The assignment's id.
    pub id: Id,
    /// The role.
    pub role: Role,
    /// Where it was assigned.
    pub scope: Scope,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The principal.
    pub principal: Id,
    /// Its home account.
    pub home_account: Id,
    /// Its home tenant.
    pub home_tenant: Id,
    /// Every role assignment of the principal.
    pub grants: Vec<Grant>,
    /// Every active grant on a key the principal is the grantee of (AWS
    /// KMS grants): the key actions it allows on that key alone.
    pub key_grants: Vec<KeyGrant>,
    /// Every resource shared with the principal's account (by a resource
    /// share or a snapshot's or image's permission, accepted where an
    /// invitation was needed): the actions a share allows there.
    pub shared: Vec<Shared>,
}

/// A resource shared with the subject's account: what it may do there
/// (no inheritance: a share names resources, never scopes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// The share (`rs-…`): a resource share, or the one behind a
    /// resource's permissions.
    pub share: Id,
    /// How it was shared, for explanations.
    pub how: ShareHow,
    /// The resource.
    pub resource: Id,
}

/// The user-facing mechanism behind a [`Shared`] resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareHow {
    /// A resource share (Alibaba / AWS RAM).
    ResourceShare,
    /// A snapshot's create-volume or an image's launch permission (AWS).
    Permission,
}

impl Shared {
    /// The actions sharing gives on a resource of `kind`: see it, create
    /// disks from it and copy it; never change or delete it (sharing never
    /// transfers ownership).
    pub fn actions(kind: TargetKind) -> &'static [Action] {
        match kind {
            TargetKind::Snapshot => &[Action::SnapshotsRead, Action::SnapshotsUse],
            TargetKind::Image => &[Action::ImagesRead, Action::ImagesUse],
            _ => &[],
        }
    }
}

/// A grant on one key: the actions it allows its grantee there (no
/// inheritance: a key grant names a key, never a scope above it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    /// The grant's id (`grant-…`).
    pub id: Id,
    /// The key.
    pub key: Id,
    /// The actions it allows on the key.
    pub actions: Vec<Action>,
}

/// What is acted on: the target itself first, then every scope above it,
/// up to and including [`Scope::Deployment`] (e.g. disk, account,
/// folder…, tenant, deployment). The service builds it from metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    chain: Vec<Scope>,
}

impl Target {
    /// A target from its chain (the target first). The deployment is added
    /// at the end if missing.
    pub fn new(mut chain: Vec<Scope>) -> Self {
        if chain.last() != Some(&Scope::Deployment) {
            chain.push(Scope::Deployment);
        }
        Self { chain }
    }

    /// The deployment itself.
    pub fn deployment() -> Self {
        Self::new(vec![Scope::Deployment])
    }

    /// The thing acted on.
    pub fn scope(&self) -> Scope {
        self.chain[0]
    }

    /// The target and the scopes above it.
    pub fn chain(&self) -> &[Scope] {
        &self.chain
    }

    /// Whether `scope` is the target or above it.
    pub fn is_under(&self, scope: Scope) -> bool {
        self.chain.contains(&scope)
    }
}

/// Why a request is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// A role assignment grants the action, at the target or a scope above
    /// it (`inherited` when above).
    Assignment {
        /// The assignment.
        grant: Grant,
        /// Whether it applies by inheritance from a scope above the target.
        inherited: bool,
    },
    /// A principal may see its own home account and tenant.
    Home,
    /// A principal may read itself and manage its own tokens.
    OwnPrincipal,
    /// A grant on the key allows the action.
    KeyGrant {
        /// The grant's id.
        grant: Id,
    },
    /// The resource is shared with the principal's account.
    Shared {
        /// The share.
        share: Id,
        /// How.
        how: ShareHow,
    },
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allowed::Assignment { grant, inherited } => {
                write!(
                    f,
                    "role assignment {} gives {} at {}",
                    grant.id,
                    grant.role,
                    grant.scope.describe()
                )?;
                if *inherited {
                    f.write_str(", inherited by the scopes below it")?;
                }
                Ok(())
            }
            Allowed::Home => f.write_str("a principal may see its own home account and tenant"),
            Allowed::OwnPrincipal => {
                f.write_str("a principal may read itself and manage its own tokens")
            }
            Allowed::KeyGrant { grant } => write!(f, "key grant {grant} allows it on the key"),
            Allowed::Shared {
                share,
                how: ShareHow::ResourceShare,
            } => write!(
                f,
                "resource share {share} shares it with the principal's account"
            ),
            Allowed::Shared {
                share,
                how: ShareHow::Permission,
            } => write!(
                f,
                "its permissions ({share}) share it with the principal's account"
            ),
        }
    }
}

/// Why a request is denied: the action, the target, and what the subject
/// does hold there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The action refused.
    pub action: Action,
    /// The target.
    pub target: Scope,
    /// Whether the subject may see the target (403) or not (404).
    pub visible: bool,
    /// The subject's assignments that apply at the target (none grant the
    /// action).
    pub held: Vec<Grant>,
}

impl Denied {
    /// The roles that would grant the action.
    pub fn granting(&self) -> Vec<Role> {
        Role::granting(self.action)
    }

    /// The full reason, for `iam explain` and 403 errors (never for 404s
    /// shown to the caller: that would leak the target's existence).
    pub fn reason(&self, principal: Id) -> String {
        let mut s = if self.visible {
            format!(
                "principal {principal} may see {} but holds no role granting '{}' on it",
                self.target.describe(),
                self.action
            )
        } else {
            format!(
                "principal {principal} holds no role on {} or any scope above it that grants '{}' (nor '{}', so the target is hidden: 404)",
                self.target.describe(),
                self.action,
                Action::read_of(self.target.kind()),
            )
        };
        if !self.held.is_empty() {
            let held: Vec<String> = self
                .held
                .iter()
                .map(|g| format!("{} ({} at {})", g.role, g.id, g.scope))
                .collect();
            s.push_str(&format!("; it holds {}", held.join(", ")));
        }
        let roles: Vec<&str> = self.granting().into_iter().map(Role::as_str).collect();
        s.push_str(&format!(
            "; '{}' is granted by {}: ask an Owner to run `coffer role assignment create --principal {principal} --role \"{}\" --scope {}`",
            self.action,
            roles.join(", "),
            roles.first().copied().unwrap_or("Owner"),
            self.target
        ));
        s
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, and why.
    Allow(Allowed),
    /// Denied, and why.
    Deny(Denied),
}

impl Decision {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

fn own_principal_allows(action: Action) -> bool {
    matches!(action, Action::IamRead | Action::TokensWrite)
}

/// The first grant of `subject` at or above `target` whose role grants
/// `action`; the target's own scope first, then upwards.
fn find_grant<'a>(
    subject: &'a Subject,
    action: Action,
    target: &Target,
) -> Option<(&'a Grant, bool)> {
    target
        .chain()
        .iter()
        .enumerate()
        .find_map(|(depth, scope)| {
            subject
                .grants
                .iter()
                .find(|g| g.scope == *scope && g.role.grants(action))
                .map(|g| (g, depth > 0))
        })
}

/// Whether `subject` may do `action` on `target`, and why. Deny by default.
pub fn authorize(subject: &Subject, action: Action, target: &Target) -> Decision {
    let scope = target.scope();
    if let Some((grant, inherited)) = find_grant(subject, action, target) {
        return Decision::Allow(Allowed::Assignment {
            grant: grant.clone(),
            inherited,
        });
    }
    if let Some(g) = subject
        .key_grants
        .iter()
        .find(|g| scope == Scope::Id(g.key) && g.actions.contains(&action))
    {
        return Decision::Allow(Allowed::KeyGrant { grant: g.id });
    }
    if let Some(sh) = subject.shared.iter().find(|sh| {
        scope == Scope::Id(sh.resource) && Shared::actions(scope.kind()).contains(&action)
    }) {
        return Decision::Allow(Allowed::Shared {
            share: sh.share,
            how: sh.how,
        });
    }
    if scope == Scope::Id(subject.principal) && own_principal_allows(action) {
        return Decision::Allow(Allowed::OwnPrincipal);
    }
    let home = scope == Scope::Id(subject.home_account) || scope == Scope::Id(subject.home_tenant);
    if home && action == Action::OrgRead {
        return Decision::Allow(Allowed::Home);
    }
    let read = Action::read_of(scope.kind());
    let visible = scope == Scope::Deployment
        || home
        || scope == Scope::Id(subject.principal)
        || subject.key_grants.iter().any(|g| scope == Scope::Id(g.key))
        || subject
            .shared
            .iter()
            .any(|sh| scope == Scope::Id(sh.resource))
        || find_grant(subject, read, target).is_some();
    let held = subject
        .grants
        .iter()
        .filter(|g| target.is_under(g.scope))
        .cloned()
        .collect();
    Decision::Deny(Denied {
        action,
        target: scope,
        visible,
        held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct World {
        deployment_owner: Id,
        tenant: Id,
        folder: Id,
        account: Id,
        other_account: Id,
        disk: Id,
        snapshot: Id,
    }

    fn world() -> World {
        World {
            deployment_owner: Id::random(Kind::Principal),
            tenant: Id::random(Kind::Tenant),
            folder: Id::random(Kind::Folder),
            account: Id::random(Kind::Account),
            other_account: Id::random(Kind::Account),
            disk: Id::random(Kind::Disk),
            snapshot: Id::random(Kind::Snapshot),
        }
    }

    fn subject(w: &World, grants: &[(Role, Scope)]) -> Subject {
        Subject {
            principal: Id::random(Kind::Principal),
            home_account: w.account,
            home_tenant: w.tenant,
            grants: grants
                .iter()
                .map(|(role, scope)| Grant {
                    id: Id::random(Kind::RoleAssignment),
                    role: *role,
                    scope: *scope,
                })
                .collect(),
            key_grants: Vec::new(),
            shared: Vec::new(),
        }
    }

    fn disk(w: &World) -> Target {
        Target::new(vec![
            Scope::Id(w.disk),
            Scope::Id(w.account),
            Scope::Id(w.folder),
            Scope::Id(w.tenant),
        ])
    }

    fn snapshot(w: &World) -> Target {
        Target::new(vec![
            Scope::Id(w.snapshot),
            Scope::Id(w.account),
            Scope::Id(w.folder),
            Scope::Id(w.tenant),
        ])
    }

    #[test]
    fn nothing_is_allowed_without_an_assignment() {
        let w = world();
        let s = subject(&w, &[]);
        for a in Action::ALL {
            let d = authorize(&s, a, &disk(&w));
            let Decision::Deny(d) = d else {
                panic!("{a} allowed with no assignment")
            };
            assert!(!d.visible, "{a}: a disk must be hidden from a stranger");
        }
    }

    #[test]
    fn roles_inherit_downward_and_not_upward() {
        let w = world();
        for scope in [
            Scope::Deployment,
            Scope::Id(w.tenant),
            Scope::Id(w.folder),
            Scope::Id(w.account),
            Scope::Id(w.disk),
        ] {
            let s = subject(&w, &[(Role::Reader, scope)]);
            let d = authorize(&s, Action::DisksRead, &disk(&w));
            let Decision::Allow(Allowed::Assignment { grant, inherited }) = d else {
                panic!("Reader at {scope} does not read the disk: {d:?}")
            };
            assert_eq!(grant.scope, scope);
            assert_eq!(inherited, scope != Scope::Id(w.disk));
        }
        // A role on the disk says nothing about its account or siblings.
        let s = subject(&w, &[(Role::Owner, Scope::Id(w.disk))]);
        let account = Target::new(vec![Scope::Id(w.account), Scope::Id(w.tenant)]);
        assert!(!authorize(&s, Action::DisksWrite, &account).is_allowed());
        assert!(!authorize(&s, Action::SnapshotsRead, &snapshot(&w)).is_allowed());
        // Another account of the tenant is out of reach of an account role.
        let s = subject(&w, &[(Role::Owner, Scope::Id(w.other_account))]);
        assert!(!authorize(&s, Action::DisksRead, &disk(&w)).is_allowed());
    }

    #[test]
    fn visible_but_not_allowed_is_forbidden_with_the_missing_action_named() {
        let w = world();
        let s = subject(&w, &[(Role::Reader, Scope::Id(w.account))]);
        let Decision::Deny(d) = authorize(&s, Action::DisksDelete, &disk(&w)) else {
            panic!("a Reader deleted a disk")
        };
        assert!(d.visible);
        let reason = d.reason(s.principal);
        assert!(reason.contains("'disks/delete'"), "{reason}");
        assert!(reason.contains("Reader"), "{reason}");
        assert!(reason.contains("Contributor, Owner"), "{reason}");
        assert!(reason.contains(&w.disk.to_string()), "{reason}");
    }

    #[test]
    fn key_roles_do_not_reveal_disks() {
        let w = world();
        let s = subject(&w, &[(Role::KeyVaultAdministrator, Scope::Id(w.account))]);
        let Decision::Deny(d) = authorize(&s, Action::DisksRead, &disk(&w)) else {
            panic!("a key role read a disk")
        };
        assert!(!d.visible);
        let key = Target::new(vec![
            Scope::Id(Id::random(Kind::Key)),
            Scope::Id(w.account),
            Scope::Id(w.tenant),
        ]);
        assert!(authorize(&s, Action::KeysUnwrap, &key).is_allowed());
        let svc = subject(
            &w,
            &[(
                Role::KeyVaultCryptoServiceEncryptionUser,
                Scope::Id(w.account),
            )],
        );
        assert!(authorize(&svc, Action::KeysWrap, &key).is_allowed());
        assert!(!authorize(&svc, Action::KeysDecrypt, &key).is_allowed());
    }

    #[test]
    fn deployment_actions_need_a_deployment_assignment() {
        let w = world();
        let tenant_owner = subject(&w, &[(Role::Owner, Scope::Id(w.tenant))]);
        let Decision::Deny(d) = authorize(
            &tenant_owner,
            Action::DeploymentOperate,
            &Target::deployment(),
        ) else {
            panic!("a tenant owner operated the deployment")
        };
        assert!(d.visible, "the deployment is no secret: 403, not 404");
        let mut admin = subject(&w, &[(Role::Owner, Scope::Deployment)]);
        admin.principal = w.deployment_owner;
        assert!(authorize(&admin, Action::DeploymentOperate, &Target::deployment()).is_allowed());
        assert!(authorize(&admin, Action::OrgWrite, &Target::deployment()).is_allowed());
    }

    #[test]
    fn home_and_self_rules_are_narrow() {
        let w = world();
        let s = subject(&w, &[]);
        let home = Target::new(vec![Scope::Id(w.account), Scope::Id(w.tenant)]);
        assert_eq!(
            authorize(&s, Action::OrgRead, &home),
            Decision::Allow(Allowed::Home)
        );
        let Decision::Deny(d) = authorize(&s, Action::DisksWrite, &home) else {
            panic!("home account writable without a role")
        };
        assert!(d.visible, "the home account is visible: 403");
        let me = Target::new(vec![
            Scope::Id(s.principal),
            Scope::Id(w.account),
            Scope::Id(w.tenant),
        ]);
        assert_eq!(
            authorize(&s, Action::TokensWrite, &me),
            Decision::Allow(Allowed::OwnPrincipal)
        );
        assert!(!authorize(&s, Action::IamWrite, &me).is_allowed());
        let other = Target::new(vec![
            Scope::Id(Id::random(Kind::Principal)),
            Scope::Id(w.account),
            Scope::Id(w.tenant),
        ]);
        assert!(!authorize(&s, Action::TokensWrite, &other).is_allowed());
    }

    #[test]
    fn names_round_trip_and_bad_ones_are_explained() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            let kebab = r.as_str().to_lowercase().replace(' ', "-");
            assert_eq!(kebab.parse::<Role>().unwrap(), r);
        }
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>().unwrap(), a);
        }
        assert!(
            "Admin"
                .parse::<Role>()
                .unwrap_err()
                .to_string()
                .contains("Owner")
        );
        assert!("disks/eat".parse::<Action>().is_err());
        assert_eq!("/".parse::<Scope>().unwrap(), Scope::Deployment);
        assert!("vol-0123456789abcdef".parse::<Scope>().is_err());
        assert!("nonsense".parse::<Scope>().is_err());
        let json = serde_json::to_string(&Role::KeyVaultCryptoUser).unwrap();
        assert_eq!(json, "\"Key Vault Crypto User\"");
    }

    #[test]
    fn every_role_reads_what_it_may_change() {
        // A role that may change a kind of target must also see it, or its
        // holder would get 404 for a target it may act on.
        for r in Role::ALL {
            for a in r.actions() {
                let read = match a.as_str().split('/').next() {
                    Some("disks") => Action::DisksRead,
                    Some("snapshots") => Action::SnapshotsRead,
                    Some("images") => Action::ImagesRead,
                    Some("shares") => Action::SharesRead,
                    Some("keys") => Action::KeysRead,
                    Some("org") => Action::OrgRead,
                    Some("iam" | "tokens") => Action::IamRead,
                    _ => continue,
                };
                assert!(r.grants(read), "{r} grants {a} but not {read}");
            }
        }
    }

    #[test]
    fn a_shared_resource_is_seen_and_used_never_changed() {
        let w = world();
        let mut s = subject(&w, &[]);
        let share = Id::random(Kind::Share);
        s.shared.push(Shared {
            share,
            how: ShareHow::Permission,
            resource: w.snapshot,
        });
        for a in [Action::SnapshotsRead, Action::SnapshotsUse] {
            let d = authorize(&s, a, &snapshot(&w));
            assert_eq!(
                d,
                Decision::Allow(Allowed::Shared {
                    share,
                    how: ShareHow::Permission
                }),
                "{a}"
            );
        }
        for a in [Action::SnapshotsDelete, Action::SnapshotsWrite] {
            let Decision::Deny(d) = authorize(&s, a, &snapshot(&w)) else {
                panic!("{a} allowed through a share")
            };
            assert!(d.visible, "{a}: a shared snapshot is visible, so 403");
        }
        // Nothing else of the sharer's account comes with it.
        let Decision::Deny(d) = authorize(&s, Action::DisksRead, &disk(&w)) else {
            panic!("the sharer's disk is readable")
        };
        assert!(!d.visible);
    }

    #[test]
    fn seeing_a_snapshot_is_not_launching_it() {
        let w = world();
        let s = subject(&w, &[(Role::Reader, Scope::Id(w.snapshot))]);
        assert!(authorize(&s, Action::SnapshotsRead, &snapshot(&w)).is_allowed());
        let Decision::Deny(d) = authorize(&s, Action::SnapshotsUse, &snapshot(&w)) else {
            panic!("Reader may create disks from a snapshot")
        };
        assert!(d.visible);
        assert!(d.reason(s.principal).contains("Disk Snapshot User"));
        let s = subject(&w, &[(Role::DiskSnapshotUser, Scope::Id(w.snapshot))]);
        assert!(authorize(&s, Action::SnapshotsUse, &snapshot(&w)).is_allowed());
        assert!(!authorize(&s, Action::SnapshotsDelete, &snapshot(&w)).is_allowed());
    }
}
