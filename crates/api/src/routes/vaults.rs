//! Key vaults, the customer keys in them, and the audit log of key use.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coffer_service::Service;
use coffer_service::model::{
    AuditEntry, AuditVerification, CreateKey, CreateVault, DecryptRequest, EncryptRequest,
    GenerateDataKeyRequest, ImportKey, Key, KeyOperationResult, KeyVersion, ReEncryptRequest,
    RotateKey, Secret, SecretValue, SetSecret, UnwrapRequest, UpdateKey, UpdateVault, Vault,
    WrapRequest,
};
use coffer_wire::{AuditQuery, KeyQuery, Page, SecretQuery, SecretValueQuery, VaultQuery};

use crate::{ApiJson, ApiQuery, ApiResult, Auth};

/// Create a key vault (soft delete on by default; purge protection off until turned on).
#[utoipa::path(post, path = "/v1/vaults", tag = "vaults", request_body = CreateVault,
    responses((status = 201, body = Vault)))]
pub async fn create_vault(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateVault>,
) -> ApiResult<(StatusCode, Json<Vault>)> {
    Ok((StatusCode::CREATED, Json(s.create_vault(&c, req).await?)))
}

/// Key vaults the caller can see, a page at a time (`state=deleted` lists the soft-deleted ones).
#[utoipa::path(get, path = "/v1/vaults", tag = "vaults", params(VaultQuery),
    responses((status = 200, body = Page<Vault>)))]
pub async fn list_vaults(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<VaultQuery>,
) -> ApiResult<Json<Page<Vault>>> {
    Ok(Json(s.list_vaults(&c, q.into()).await?))
}

/// One key vault.
#[utoipa::path(get, path = "/v1/vaults/{id}", tag = "vaults", params(("id" = String, Path, description = "key vault id")),
    responses((status = 200, body = Vault)))]
pub async fn get_vault(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vault>> {
    Ok(Json(s.get_vault(&c, &id).await?))
}

/// Turn on soft delete or purge protection, or change the retention period.
#[utoipa::path(patch, path = "/v1/vaults/{id}", tag = "vaults", params(("id" = String, Path, description = "key vault id")), request_body = UpdateVault,
    responses((status = 200, body = Vault)))]
pub async fn update_vault(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateVault>,
) -> ApiResult<Json<Vault>> {
    Ok(Json(s.update_vault(&c, &id, req).await?))
}

/// Delete a key vault: soft (recoverable with its keys until `purge_after`) when it has soft delete, else a purge.
#[utoipa::path(delete, path = "/v1/vaults/{id}", tag = "vaults", params(("id" = String, Path, description = "key vault id")),
    responses((status = 200, body = Vault)))]
pub async fn delete_vault(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vault>> {
    Ok(Json(s.delete_vault(&c, &id).await?))
}

/// Recover a soft-deleted key vault and its keys.
#[utoipa::path(post, path = "/v1/vaults/{id}/recover", tag = "vaults", params(("id" = String, Path, description = "key vault id")),
    responses((status = 200, body = Vault)))]
pub async fn recover_vault(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vault>> {
    Ok(Json(s.recover_vault(&c, &id).await?))
}

/// Purge a soft-deleted key vault: its keys' material is destroyed for good. Refused under purge protection until the retention period ends.
#[utoipa::path(post, path = "/v1/vaults/{id}/purge", tag = "vaults", params(("id" = String, Path, description = "key vault id")),
    responses((status = 200, body = Vault)))]
pub async fn purge_vault(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vault>> {
    Ok(Json(s.purge_vault(&c, &id).await?))
}

/// The vault's RSA-3072 import key (public part), to wrap key material for import (BYOK).
#[utoipa::path(get, path = "/v1/vaults/{id}/import-key", tag = "vaults", params(("id" = String, Path, description = "key vault id")),
    responses((status = 200, body = ImportKey)))]
pub async fn get_import_key(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ImportKey>> {
    Ok(Json(s.vault_import_key(&c, &id).await?))
}

/// Create a key in the vault: generated there, or imported (`material`, or `wrapped_material` under the import key).
#[utoipa::path(post, path = "/v1/vaults/{id}/keys", tag = "keys", params(("id" = String, Path, description = "key vault id")), request_body = CreateKey,
    responses((status = 201, body = Key)))]
pub async fn create_key(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<Key>)> {
    Ok((StatusCode::CREATED, Json(s.create_key(&c, &id, req).await?)))
}

/// The vault's keys, a page at a time (`state=deleted` lists the soft-deleted ones).
#[utoipa::path(get, path = "/v1/vaults/{id}/keys", tag = "keys", params(("id" = String, Path, description = "key vault id"), KeyQuery),
    responses((status = 200, body = Page<Key>)))]
pub async fn list_keys(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<KeyQuery>,
) -> ApiResult<Json<Page<Key>>> {
    Ok(Json(s.list_keys(&c, &id, q.into()).await?))
}

/// One key (never its material).
#[utoipa::path(get, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = Key)))]
pub async fn get_key(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Key>> {
    Ok(Json(s.get_key(&c, &id).await?))
}

/// Enable or disable a key, or change its validity times or rotation period.
#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "key id")), request_body = UpdateKey,
    responses((status = 200, body = Key)))]
pub async fn update_key(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateKey>,
) -> ApiResult<Json<Key>> {
    Ok(Json(s.update_key(&c, &id, req).await?))
}

/// A key's versions, with the public key of RSA versions.
#[utoipa::path(get, path = "/v1/keys/{id}/versions", tag = "keys", params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = Page<KeyVersion>)))]
pub async fn list_key_versions(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<KeyVersion>>> {
    Ok(Json(s.key_versions(&c, &id).await?))
}

/// Add a version (generated, or imported) and make it current; older versions still unwrap and decrypt.
#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "keys", params(("id" = String, Path, description = "key id")), request_body = RotateKey,
    responses((status = 200, body = Key)))]
pub async fn rotate_key(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RotateKey>,
) -> ApiResult<Json<Key>> {
    Ok(Json(s.rotate_key(&c, &id, req).await?))
}

/// Delete a key: soft (recoverable until `purge_after`) when its vault has soft delete, else a purge.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = Key)))]
pub async fn delete_key(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Key>> {
    Ok(Json(s.delete_key(&c, &id).await?))
}

/// Recover a soft-deleted key.
#[utoipa::path(post, path = "/v1/keys/{id}/recover", tag = "keys", params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = Key)))]
pub async fn recover_key(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Key>> {
    Ok(Json(s.recover_key(&c, &id).await?))
}

/// Purge a soft-deleted key: its material is destroyed for good. Refused under purge protection until the retention period ends.
#[utoipa::path(post, path = "/v1/keys/{id}/purge", tag = "keys", params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = Key)))]
pub async fn purge_key(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Key>> {
    Ok(Json(s.purge_key(&c, &id).await?))
}

/// Entries of the audit log of key use. Operators of the deployment see all; others give `key=` (a key they may read) and see its entries.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>)))]
pub async fn list_audit(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    Ok(Json(s.list_audit(&c, q).await?))
}

/// Recompute the audit log's hash chain and check its head: names the first edited, removed, reordered or cut entry.
#[utoipa::path(post, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerification)))]
pub async fn verify_audit(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
) -> ApiResult<Json<AuditVerification>> {
    Ok(Json(s.verify_audit(&c).await?))
}

/// Encrypt up to 4 KiB with the key's current version (an AES key; an RSA key takes what RSA-OAEP-SHA-256 does), bound to an optional context.
#[utoipa::path(post, path = "/v1/keys/{id}/encrypt", tag = "keys", params(("id" = String, Path, description = "key id")), request_body = EncryptRequest,
    responses((status = 200, body = KeyOperationResult)))]
pub async fn key_encrypt(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<EncryptRequest>,
) -> ApiResult<Json<KeyOperationResult>> {
    Ok(Json(s.key_encrypt(&c, &id, req).await?))
}

/// Decrypt a ciphertext of this key (any of its versions) made with the same context.
#[utoipa::path(post, path = "/v1/keys/{id}/decrypt", tag = "keys", params(("id" = String, Path, description = "key id")), request_body = DecryptRequest,
    responses((status = 200, body = KeyOperationResult)))]
pub async fn key_decrypt(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DecryptRequest>,
) -> ApiResult<Json<KeyOperationResult>> {
    Ok(Json(s.key_decrypt(&c, &id, req).await?))
}

/// Wrap a key (16 to 512 bytes) with the key's current version.
#[utoipa::path(post, path = "/v1/keys/{id}/wrap", tag = "keys", params(("id" = String, Path, description = "key id")), request_body = WrapRequest,
    responses((status = 200, body = KeyOperationResult)))]
pub async fn key_wrap(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<WrapRequest>,
) -> ApiResult<Json<KeyOperationResult>> {
    Ok(Json(s.key_wrap(&c, &id, req).await?))
}

/// Unwrap a key wrapped by this key.
#[utoipa::path(post, path = "/v1/keys/{id}/unwrap", tag = "keys", params(("id" = String, Path, description = "key id")), request_body = UnwrapRequest,
    responses((status = 200, body = KeyOperationResult)))]
pub async fn key_unwrap(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UnwrapRequest>,
) -> ApiResult<Json<KeyOperationResult>> {
    Ok(Json(s.key_unwrap(&c, &id, req).await?))
}

/// A fresh 256-bit data key, in the clear and encrypted under this key.
#[utoipa::path(post, path = "/v1/keys/{id}/generate-data-key", tag = "keys", params(("id" = String, Path, description = "key id")), request_body = GenerateDataKeyRequest,
    responses((status = 200, body = KeyOperationResult)))]
pub async fn key_generate_data_key(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<GenerateDataKeyRequest>,
) -> ApiResult<Json<KeyOperationResult>> {
    Ok(Json(s.key_generate_data_key(&c, &id, req).await?))
}

/// Decrypt under this key and encrypt under another, without the plaintext leaving the vault.
#[utoipa::path(post, path = "/v1/keys/{id}/re-encrypt", tag = "keys", params(("id" = String, Path, description = "key id")), request_body = ReEncryptRequest,
    responses((status = 200, body = KeyOperationResult)))]
pub async fn key_re_encrypt(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReEncryptRequest>,
) -> ApiResult<Json<KeyOperationResult>> {
    Ok(Json(s.key_re_encrypt(&c, &id, req).await?))
}

/// Set a secret in the vault: a new secret, or a new version of the one of
/// that name.
#[utoipa::path(post, path = "/v1/vaults/{id}/secrets", tag = "secrets", params(("id" = String, Path, description = "key vault id")), request_body = SetSecret,
    responses((status = 201, body = Secret)))]
pub async fn set_secret(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetSecret>,
) -> ApiResult<(StatusCode, Json<Secret>)> {
    Ok((StatusCode::CREATED, Json(s.set_secret(&c, &id, req).await?)))
}

/// The vault's secrets (never their values), a page at a time
/// (`state=deleted` lists the soft-deleted ones).
#[utoipa::path(get, path = "/v1/vaults/{id}/secrets", tag = "secrets", params(("id" = String, Path, description = "key vault id"), SecretQuery),
    responses((status = 200, body = Page<Secret>)))]
pub async fn list_secrets(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SecretQuery>,
) -> ApiResult<Json<Page<Secret>>> {
    Ok(Json(s.list_secrets(&c, &id, q.into()).await?))
}

/// One secret (never its value).
#[utoipa::path(get, path = "/v1/secrets/{id}", tag = "secrets", params(("id" = String, Path, description = "secret id")),
    responses((status = 200, body = Secret)))]
pub async fn get_secret(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Secret>> {
    Ok(Json(s.get_secret(&c, &id).await?))
}

/// A secret's value (the newest version, or `version`); audited.
#[utoipa::path(get, path = "/v1/secrets/{id}/value", tag = "secrets", params(("id" = String, Path, description = "secret id"), SecretValueQuery),
    responses((status = 200, body = SecretValue)))]
pub async fn get_secret_value(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SecretValueQuery>,
) -> ApiResult<Json<SecretValue>> {
    Ok(Json(s.get_secret_value(&c, &id, q).await?))
}

/// Delete a secret: soft (recoverable until `purge_after`) when its vault
/// has soft delete, else a purge.
#[utoipa::path(delete, path = "/v1/secrets/{id}", tag = "secrets", params(("id" = String, Path, description = "secret id")),
    responses((status = 200, body = Secret)))]
pub async fn delete_secret(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Secret>> {
    Ok(Json(s.delete_secret(&c, &id).await?))
}

/// Recover a soft-deleted secret.
#[utoipa::path(post, path = "/v1/secrets/{id}/recover", tag = "secrets", params(("id" = String, Path, description = "secret id")),
    responses((status = 200, body = Secret)))]
pub async fn recover_secret(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Secret>> {
    Ok(Json(s.recover_secret(&c, &id).await?))
}

/// Purge a soft-deleted secret: its values are destroyed for good. Refused
/// under purge protection until the retention period ends.
#[utoipa::path(post, path = "/v1/secrets/{id}/purge", tag = "secrets", params(("id" = String, Path, description = "secret id")),
    responses((status = 200, body = Secret)))]
pub async fn purge_secret(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Secret>> {
    Ok(Json(s.purge_secret(&c, &id).await?))
}
