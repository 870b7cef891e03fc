//! Coffer's shared vocabulary, owned by no layer and used by all of them:
//! resource ids ([`id`]), byte sizes ([`size`]), resource names ([`name`]) and
//! the deployment's regions and zones ([`region`]), and the states and kinds
//! of resources ([`state`]).
//!
//! Everything here validates at construction, so a value of these types that
//! reaches a lower layer is already known to be well formed.

pub mod id;
pub mod name;
pub mod region;
pub mod size;
pub mod state;
pub mod tag;

pub use id::{Id, IdError, Kind};
pub use name::{Name, NameError};
pub use region::{RegionConfig, RegionError, Regions};
pub use size::{ByteSize, SizeError};
pub use state::{
    CreationMethod, Decision, DiskState, EncryptionType, ImageState, KeyState, Lifecycle,
    PrincipalKind, PrincipalScope, ShareKind, ShareStatus, SnapshotState, TokenState, UnknownWord,
};
pub use tag::{Tag, TagError};
