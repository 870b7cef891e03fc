//! The handlers, one module per resource kind, and [`table`]: the list of
//! every route with its policy and error codes (see [`crate::table`]).

pub mod admin;
pub mod disks;
pub mod encryption_sets;
pub mod exports;
pub mod grants;
pub mod iam;
pub mod images;
pub mod meta;
pub mod org;
pub mod shares;
pub mod snapshots;
pub mod vaults;

use coffer_iam::Action as A;
use coffer_wire::ErrorCode as E;
use utoipa_axum::routes;

use crate::table::Policy::{Action as Act, Authenticated, Public, PullToken as Pull};
use crate::table::RouteTable;
use admin::*;
use disks::*;
use encryption_sets::*;
use exports::*;
use grants::*;
use iam::*;
use images::*;
use meta::*;
use org::*;
use shares::*;
use snapshots::*;
use vaults::*;

/// Every route: policy, error codes beyond the common ones, handler.
pub fn table(doc: utoipa::openapi::OpenApi) -> RouteTable {
    RouteTable::new(doc)
        // The service itself.
        .add(Public, &[], routes!(healthz))
        .add(Public, &[], routes!(openapi_json))
        .add(Authenticated, &[], routes!(whoami))
        .add(
            Authenticated,
            &[E::ManagedIdentity],
            routes!(create_console_link),
        )
        .add(Authenticated, &[], routes!(regions))
        .add(Authenticated, &[], routes!(list_roles))
        // Disks.
        .add(
            Act(A::DisksWrite),
            &[
                E::InvalidName,
                E::InvalidSize,
                E::MissingSize,
                E::UnknownZone,
                E::InvalidId,
                E::NameTaken,
                E::AccountNotFound,
                E::SnapshotNotFound,
                E::RegionMismatch,
                E::KeyUnusable,
                E::EncryptionSetNotFound,
                E::InvalidKeyOperation,
                E::CustomerKeyBoundary,
                E::InvalidTag,
            ],
            routes!(create_disk),
        )
        .add(
            Authenticated,
            &[E::InvalidPage, E::InvalidFilter],
            routes!(list_disks),
        )
        .add(Act(A::DisksRead), &[E::DiskNotFound], routes!(get_disk))
        .add(
            Act(A::DisksDelete),
            &[E::DiskNotFound, E::DiskAttached],
            routes!(delete_disk),
        )
        .add(
            Act(A::DisksWrite),
            &[
                E::DiskNotFound,
                E::DiskAttached,
                E::InvalidSize,
                E::ShrinkNotAllowed,
            ],
            routes!(resize_disk),
        )
        .add(
            Act(A::DisksAttach),
            &[
                E::DiskNotFound,
                E::DiskAttached,
                E::NbdUnavailable,
                E::RegionUnavailable,
                E::Conflict,
            ],
            routes!(attach_disk),
        )
        .add(
            Act(A::DisksAttach),
            &[
                E::DiskNotFound,
                E::DiskNotAttached,
                E::HeldByOtherNode,
                E::DiskMoved,
                E::NodeFenced,
                E::KeyUnusable,
                E::IntegrityError,
            ],
            routes!(detach_disk),
        )
        // Snapshots.
        .add(
            Act(A::SnapshotsWrite),
            &[
                E::InvalidName,
                E::DiskNotFound,
                E::NameTaken,
                E::HeldByOtherNode,
                E::NodeFenced,
                E::DiskDetached,
                E::KeyUnusable,
                E::Conflict,
                E::InvalidTag,
            ],
            routes!(create_snapshot),
        )
        .add(
            Authenticated,
            &[E::InvalidPage, E::InvalidFilter],
            routes!(list_snapshots),
        )
        .add(
            Act(A::SnapshotsRead),
            &[E::SnapshotNotFound],
            routes!(get_snapshot),
        )
        .add(
            Act(A::SnapshotsDelete),
            &[E::SnapshotNotFound, E::SnapshotInUse],
            routes!(delete_snapshot),
        )
        .add(
            Act(A::SnapshotsUse),
            &[
                E::SnapshotNotFound,
                E::InvalidName,
                E::InvalidId,
                E::InvalidTag,
                E::NameTaken,
                E::AccountNotFound,
                E::KeyRequired,
                E::KeyNotShared,
                E::EncryptionSetNotFound,
                E::KeyUnusable,
                E::InvalidKeyOperation,
                E::UnknownRegion,
                E::RegionMismatch,
                E::Conflict,
            ],
            routes!(copy_snapshot),
        )
        .add(
            Authenticated,
            &[E::InvalidPage, E::InvalidFilter, E::InvalidId],
            routes!(list_jobs),
        )
        .add(
            Act(A::SnapshotsRead),
            &[E::InvalidId, E::JobNotFound],
            routes!(get_job),
        )
        .add(
            Act(A::SnapshotsWrite),
            &[E::InvalidId, E::JobNotFound, E::Conflict],
            routes!(cancel_job),
        )
        // Copies between two deployments: exports and imports.
        .add(
            Act(A::SnapshotsWrite),
            &[
                E::SnapshotNotFound,
                E::InvalidDuration,
                E::KeyNotShared,
                E::RegionUnavailable,
            ],
            routes!(export_snapshot),
        )
        .add(
            Act(A::ImagesWrite),
            &[
                E::ImageNotFound,
                E::SnapshotNotFound,
                E::InvalidDuration,
                E::KeyNotShared,
                E::Conflict,
            ],
            routes!(export_image),
        )
        .add(Authenticated, &[], routes!(list_exports))
        .add(
            Act(A::SnapshotsWrite),
            &[E::ExportNotFound],
            routes!(get_export),
        )
        .add(
            Act(A::SnapshotsWrite),
            &[E::ExportNotFound],
            routes!(revoke_export),
        )
        .add(Pull, &[E::ExportNotFound], routes!(pull_export))
        .add(
            Pull,
            &[E::ExportNotFound, E::InvalidRange, E::RegionUnavailable],
            routes!(pull_map),
        )
        .add(
            Pull,
            &[
                E::ExportNotFound,
                E::InvalidRange,
                E::RegionUnavailable,
                E::IntegrityError,
            ],
            routes!(pull_data),
        )
        .add(
            Pull,
            &[E::ExportNotFound, E::InvalidRange],
            routes!(pull_changed),
        )
        .add(
            Pull,
            &[
                E::ExportNotFound,
                E::InvalidRange,
                E::RegionUnavailable,
                E::IntegrityError,
            ],
            routes!(pull_hash),
        )
        .add(
            Act(A::SnapshotsWrite),
            &[
                E::InvalidName,
                E::InvalidId,
                E::InvalidTag,
                E::NameTaken,
                E::UnknownRegion,
                E::AccountNotFound,
                E::EncryptionSetNotFound,
                E::KeyUnusable,
                E::KeyRequired,
                E::ExportNotFound,
                E::RemoteUnavailable,
                E::InvalidBody,
            ],
            routes!(create_import),
        )
        // Sharing: permissions (AWS).
        .add(
            Act(A::SharesRead),
            &[
                E::InvalidId,
                E::SnapshotNotFound,
                E::ImageNotFound,
                E::NotShareable,
            ],
            routes!(get_permissions),
        )
        .add(
            Act(A::SharesWrite),
            &[
                E::InvalidId,
                E::SnapshotNotFound,
                E::ImageNotFound,
                E::AccountNotFound,
                E::FolderNotFound,
                E::TenantNotFound,
                E::NotShareable,
                E::InvalidPrincipal,
                E::KeyNotShared,
                E::CustomerKeyBoundary,
                E::QuotaExceeded,
                E::Conflict,
            ],
            routes!(update_permissions),
        )
        // Tags of disks, snapshots and images (the action is the
        // resource's own `*/write`).
        .add(
            Authenticated,
            &[
                E::InvalidId,
                E::AuthorizationFailed,
                E::DiskNotFound,
                E::SnapshotNotFound,
                E::ImageNotFound,
                E::InvalidTag,
            ],
            routes!(update_tags),
        )
        // Sharing: resource shares and invitations (Alibaba, AWS RAM).
        .add(
            Act(A::SharesWrite),
            &[
                E::InvalidName,
                E::InvalidId,
                E::NameTaken,
                E::AccountNotFound,
                E::FolderNotFound,
                E::TenantNotFound,
                E::SnapshotNotFound,
                E::ImageNotFound,
                E::NotShareable,
                E::InvalidPrincipal,
                E::KeyNotShared,
                E::CustomerKeyBoundary,
                E::QuotaExceeded,
                E::Conflict,
            ],
            routes!(create_share),
        )
        .add(
            Authenticated,
            &[
                E::InvalidPage,
                E::InvalidFilter,
                E::InvalidId,
                E::AccountNotFound,
            ],
            routes!(list_shares),
        )
        .add(Act(A::SharesRead), &[E::ShareNotFound], routes!(get_share))
        .add(
            Act(A::SharesWrite),
            &[
                E::ShareNotFound,
                E::InvalidId,
                E::AccountNotFound,
                E::FolderNotFound,
                E::TenantNotFound,
                E::SnapshotNotFound,
                E::ImageNotFound,
                E::NotShareable,
                E::InvalidPrincipal,
                E::KeyNotShared,
                E::CustomerKeyBoundary,
                E::QuotaExceeded,
                E::Conflict,
            ],
            routes!(update_share),
        )
        .add(
            Act(A::SharesWrite),
            &[E::ShareNotFound],
            routes!(delete_share),
        )
        .add(
            Authenticated,
            &[E::InvalidId, E::AccountNotFound, E::AuthorizationFailed],
            routes!(list_invitations),
        )
        .add(
            Act(A::SharesWrite),
            &[E::InvalidId, E::InvitationNotFound, E::InvitationAnswered],
            routes!(accept_invitation),
        )
        .add(
            Act(A::SharesWrite),
            &[E::InvalidId, E::InvitationNotFound, E::InvitationAnswered],
            routes!(reject_invitation),
        )
        // Images.
        .add(
            Act(A::ImagesWrite),
            &[
                E::InvalidName,
                E::InvalidId,
                E::InvalidTag,
                E::DiskNotFound,
                E::SnapshotNotFound,
                E::AccountNotFound,
                E::NameTaken,
                E::RegionMismatch,
                E::HeldByOtherNode,
                E::NodeFenced,
                E::DiskDetached,
                E::KeyUnusable,
                E::Conflict,
            ],
            routes!(create_image),
        )
        .add(
            Authenticated,
            &[E::InvalidPage, E::InvalidFilter],
            routes!(list_images),
        )
        .add(Act(A::ImagesRead), &[E::ImageNotFound], routes!(get_image))
        .add(
            Act(A::ImagesDelete),
            &[E::ImageNotFound],
            routes!(delete_image),
        )
        .add(
            Act(A::ImagesUse),
            &[
                E::ImageNotFound,
                E::InvalidName,
                E::InvalidId,
                E::InvalidTag,
                E::UnknownZone,
                E::AccountNotFound,
                E::EncryptionSetNotFound,
                E::NameTaken,
                E::RegionMismatch,
                E::KeyUnusable,
                E::InvalidKeyOperation,
                E::CustomerKeyBoundary,
            ],
            routes!(launch_image),
        )
        .add(
            Act(A::ImagesUse),
            &[
                E::ImageNotFound,
                E::InvalidName,
                E::InvalidId,
                E::InvalidTag,
                E::NameTaken,
                E::AccountNotFound,
                E::KeyRequired,
                E::KeyNotShared,
                E::EncryptionSetNotFound,
                E::UnknownRegion,
                E::RegionMismatch,
            ],
            routes!(copy_image),
        )
        // Key vaults, keys, the audit log.
        .add(
            Act(A::VaultsWrite),
            &[
                E::InvalidName,
                E::InvalidId,
                E::NameTaken,
                E::AccountNotFound,
                E::UnknownRegion,
                E::InvalidRetention,
                E::Irreversible,
            ],
            routes!(create_vault),
        )
        .add(
            Authenticated,
            &[
                E::InvalidPage,
                E::InvalidFilter,
                E::InvalidId,
                E::AccountNotFound,
            ],
            routes!(list_vaults),
        )
        .add(Act(A::VaultsRead), &[E::VaultNotFound], routes!(get_vault))
        .add(
            Act(A::VaultsWrite),
            &[
                E::VaultNotFound,
                E::InvalidRetention,
                E::Irreversible,
                E::ResourceDeleted,
                E::InvalidKeyOperation,
            ],
            routes!(update_vault),
        )
        .add(
            Act(A::VaultsDelete),
            &[E::VaultNotFound, E::ResourceDeleted],
            routes!(delete_vault),
        )
        .add(
            Act(A::VaultsDelete),
            &[E::VaultNotFound, E::NotDeleted],
            routes!(recover_vault),
        )
        .add(
            Act(A::VaultsDelete),
            &[E::VaultNotFound, E::NotDeleted, E::PurgeProtected],
            routes!(purge_vault),
        )
        .add(
            Act(A::KeysWrite),
            &[E::VaultNotFound, E::ResourceDeleted],
            routes!(get_import_key),
        )
        .add(
            Act(A::KeysWrite),
            &[
                E::VaultNotFound,
                E::InvalidName,
                E::NameTaken,
                E::ResourceDeleted,
                E::InvalidKeyType,
                E::InvalidKeyMaterial,
                E::InvalidKeyOperation,
            ],
            routes!(create_key),
        )
        .add(
            Act(A::KeysRead),
            &[E::VaultNotFound, E::InvalidPage, E::InvalidFilter],
            routes!(list_keys),
        )
        .add(
            Act(A::KeysRead),
            &[E::KeyNotFound, E::KeyUnusable],
            routes!(get_key),
        )
        .add(
            Act(A::KeysWrite),
            &[
                E::KeyNotFound,
                E::KeyUnusable,
                E::ResourceDeleted,
                E::InvalidKeyOperation,
            ],
            routes!(update_key),
        )
        .add(
            Act(A::KeysRead),
            &[E::KeyNotFound],
            routes!(list_key_versions),
        )
        .add(
            Act(A::KeysWrite),
            &[
                E::KeyNotFound,
                E::KeyUnusable,
                E::ResourceDeleted,
                E::InvalidKeyType,
                E::InvalidKeyMaterial,
            ],
            routes!(rotate_key),
        )
        .add(
            Act(A::KeysDelete),
            &[E::KeyNotFound, E::KeyUnusable, E::ResourceDeleted],
            routes!(delete_key),
        )
        .add(
            Act(A::KeysGrant),
            &[
                E::KeyNotFound,
                E::KeyUnusable,
                E::ResourceDeleted,
                E::PrincipalNotFound,
                E::CrossTenantGrant,
                E::InvalidKeyOperation,
                E::InvalidName,
                E::InvalidId,
            ],
            routes!(create_grant),
        )
        .add(Act(A::KeysGrant), &[E::KeyNotFound], routes!(list_grants))
        .add(
            Act(A::KeysGrant),
            &[E::GrantNotFound, E::InvalidId],
            routes!(revoke_grant),
        )
        .add(
            Authenticated,
            &[E::GrantNotFound, E::InvalidId],
            routes!(retire_grant),
        )
        .add(
            Act(A::KeysDelete),
            &[
                E::KeyNotFound,
                E::KeyUnusable,
                E::NotDeleted,
                E::ResourceDeleted,
            ],
            routes!(recover_key),
        )
        .add(
            Act(A::KeysDelete),
            &[
                E::KeyNotFound,
                E::NotDeleted,
                E::PurgeProtected,
                E::KeyUnusable,
            ],
            routes!(purge_key),
        )
        .add(
            Act(A::KeysEncrypt),
            &[E::KeyNotFound, E::KeyUnusable, E::InvalidKeyOperation],
            routes!(key_encrypt),
        )
        .add(
            Act(A::KeysDecrypt),
            &[E::KeyNotFound, E::KeyUnusable, E::InvalidCiphertext],
            routes!(key_decrypt),
        )
        .add(
            Act(A::KeysWrap),
            &[E::KeyNotFound, E::KeyUnusable, E::InvalidKeyOperation],
            routes!(key_wrap),
        )
        .add(
            Act(A::KeysUnwrap),
            &[E::KeyNotFound, E::KeyUnusable, E::InvalidCiphertext],
            routes!(key_unwrap),
        )
        .add(
            Act(A::KeysEncrypt),
            &[E::KeyNotFound, E::KeyUnusable, E::InvalidKeyOperation],
            routes!(key_generate_data_key),
        )
        .add(
            Act(A::KeysDecrypt),
            &[
                E::KeyNotFound,
                E::KeyUnusable,
                E::InvalidCiphertext,
                E::InvalidKeyOperation,
            ],
            routes!(key_re_encrypt),
        )
        .add(
            Act(A::EncryptionSetsWrite),
            &[
                E::InvalidName,
                E::InvalidId,
                E::NameTaken,
                E::AccountNotFound,
                E::KeyNotFound,
                E::KeyUnusable,
                E::VaultNotProtected,
                E::InvalidKeyOperation,
            ],
            routes!(create_encryption_set),
        )
        .add(
            Authenticated,
            &[
                E::InvalidPage,
                E::InvalidFilter,
                E::InvalidId,
                E::AccountNotFound,
            ],
            routes!(list_encryption_sets),
        )
        .add(
            Act(A::EncryptionSetsRead),
            &[E::EncryptionSetNotFound],
            routes!(get_encryption_set),
        )
        .add(
            Act(A::EncryptionSetsWrite),
            &[
                E::EncryptionSetNotFound,
                E::KeyNotFound,
                E::KeyUnusable,
                E::VaultNotProtected,
                E::RegionMismatch,
                E::InvalidKeyOperation,
            ],
            routes!(update_encryption_set),
        )
        .add(
            Act(A::EncryptionSetsDelete),
            &[E::EncryptionSetNotFound, E::EncryptionSetInUse],
            routes!(delete_encryption_set),
        )
        .add(
            Act(A::SecretsWrite),
            &[
                E::VaultNotFound,
                E::InvalidName,
                E::InvalidSecret,
                E::ResourceDeleted,
                E::Conflict,
            ],
            routes!(set_secret),
        )
        .add(
            Act(A::SecretsRead),
            &[E::VaultNotFound, E::InvalidPage, E::InvalidFilter],
            routes!(list_secrets),
        )
        .add(
            Act(A::SecretsRead),
            &[E::SecretNotFound],
            routes!(get_secret),
        )
        .add(
            Act(A::SecretsGet),
            &[E::SecretNotFound, E::ResourceDeleted, E::IntegrityError],
            routes!(get_secret_value),
        )
        .add(
            Act(A::SecretsDelete),
            &[E::SecretNotFound, E::ResourceDeleted],
            routes!(delete_secret),
        )
        .add(
            Act(A::SecretsDelete),
            &[E::SecretNotFound, E::NotDeleted],
            routes!(recover_secret),
        )
        .add(
            Act(A::SecretsDelete),
            &[E::SecretNotFound, E::NotDeleted, E::PurgeProtected],
            routes!(purge_secret),
        )
        .add(
            Authenticated,
            &[
                E::AuthorizationFailed,
                E::InvalidPage,
                E::InvalidId,
                E::InvalidFilter,
                E::KeyNotFound,
                E::InvalidKeyOperation,
            ],
            routes!(list_audit),
        )
        .add(Act(A::DeploymentOperate), &[], routes!(verify_audit))
        // The organisation.
        .add(
            Act(A::OrgWrite),
            &[E::InvalidName, E::NameTaken],
            routes!(create_tenant),
        )
        .add(Authenticated, &[E::InvalidPage], routes!(list_tenants))
        .add(Act(A::OrgRead), &[E::TenantNotFound], routes!(get_tenant))
        .add(
            Act(A::OrgWrite),
            &[E::InvalidId, E::TenantNotFound],
            routes!(update_tenant),
        )
        .add(
            Act(A::OrgWrite),
            &[
                E::InvalidName,
                E::NameTaken,
                E::TenantNotFound,
                E::FolderNotFound,
                E::TenantMismatch,
                E::FolderTooDeep,
            ],
            routes!(create_folder),
        )
        .add(
            Act(A::OrgRead),
            &[E::InvalidPage, E::TenantNotFound],
            routes!(list_folders),
        )
        .add(Act(A::OrgRead), &[E::FolderNotFound], routes!(get_folder))
        .add(
            Act(A::OrgWrite),
            &[E::FolderNotFound, E::FolderNotEmpty],
            routes!(delete_folder),
        )
        .add(
            Act(A::OrgWrite),
            &[
                E::InvalidName,
                E::NameTaken,
                E::TenantNotFound,
                E::FolderNotFound,
                E::TenantMismatch,
            ],
            routes!(create_account),
        )
        .add(
            Authenticated,
            &[E::InvalidPage, E::TenantNotFound],
            routes!(list_accounts),
        )
        .add(Act(A::OrgRead), &[E::AccountNotFound], routes!(get_account))
        .add(
            Act(A::DisksRead),
            &[E::AccountNotFound, E::InvalidFilter],
            routes!(account_usage),
        )
        .add(
            Act(A::OrgWrite),
            &[E::AccountNotFound, E::FolderNotFound, E::TenantMismatch],
            routes!(move_account),
        )
        // Identity and access.
        .add(
            Act(A::IamWrite),
            &[
                E::InvalidName,
                E::NameTaken,
                E::AccountNotFound,
                E::InvalidKind,
                E::ManagedIdentity,
            ],
            routes!(create_principal),
        )
        .add(
            Act(A::OrgRead),
            &[E::InvalidPage, E::AccountNotFound],
            routes!(list_principals),
        )
        .add(
            Act(A::IamRead),
            &[E::PrincipalNotFound],
            routes!(get_principal),
        )
        .add(
            Act(A::IamWrite),
            &[
                E::PrincipalNotFound,
                E::CannotDeleteSelf,
                E::LastOwner,
                E::ManagedIdentity,
            ],
            routes!(delete_principal),
        )
        .add(
            Act(A::TokensWrite),
            &[
                E::PrincipalNotFound,
                E::InvalidName,
                E::InvalidDuration,
                E::TokenOutlivesCaller,
                E::ManagedIdentity,
            ],
            routes!(create_token),
        )
        .add(
            Act(A::IamRead),
            &[E::InvalidPage, E::PrincipalNotFound],
            routes!(list_tokens),
        )
        .add(
            Act(A::TokensWrite),
            &[E::TokenNotFound, E::LastOwner],
            routes!(revoke_token),
        )
        .add(
            Act(A::IamWrite),
            &[
                E::PrincipalNotFound,
                E::UnknownRole,
                E::InvalidScope,
                E::InvalidId,
                E::RoleAssignmentExists,
                E::TenantNotFound,
                E::FolderNotFound,
                E::AccountNotFound,
                E::DiskNotFound,
                E::SnapshotNotFound,
                E::KeyNotFound,
                E::RoleAssignmentNotFound,
                E::CustomerKeyBoundary,
                E::KeyNotShared,
                E::ImageNotFound,
                E::Conflict,
            ],
            routes!(create_role_assignment),
        )
        .add(
            Authenticated,
            &[
                E::AuthorizationFailed,
                E::InvalidPage,
                E::InvalidScope,
                E::PrincipalNotFound,
                E::TenantNotFound,
                E::FolderNotFound,
                E::AccountNotFound,
                E::DiskNotFound,
                E::SnapshotNotFound,
                E::KeyNotFound,
                E::RoleAssignmentNotFound,
            ],
            routes!(list_role_assignments),
        )
        .add(
            Act(A::IamWrite),
            &[E::RoleAssignmentNotFound, E::LastOwner],
            routes!(delete_role_assignment),
        )
        .add(
            Authenticated,
            &[
                E::AuthorizationFailed,
                E::UnknownAction,
                E::InvalidScope,
                E::PrincipalNotFound,
                E::TenantNotFound,
                E::FolderNotFound,
                E::AccountNotFound,
                E::DiskNotFound,
                E::SnapshotNotFound,
                E::KeyNotFound,
                E::RoleAssignmentNotFound,
            ],
            routes!(explain),
        )
        // Administration.
        .add(Act(A::DeploymentOperate), &[], routes!(fsck))
        .add(Act(A::DeploymentOperate), &[], routes!(admin_gc))
        .add(Act(A::DeploymentOperate), &[], routes!(list_nodes))
}
