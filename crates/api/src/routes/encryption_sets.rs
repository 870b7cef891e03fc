//! Disk encryption sets.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coffer_service::Service;
use coffer_service::model::{CreateEncryptionSet, EncryptionSet, UpdateEncryptionSet};
use coffer_wire::{EncryptionSetQuery, Page};

use crate::{ApiJson, ApiQuery, ApiResult, Auth};

/// Create a disk encryption set and its managed identity. The key's vault
/// needs soft delete and purge protection; give the identity the role Key
/// Vault Crypto Service Encryption User on the key.
#[utoipa::path(post, path = "/v1/encryption-sets", tag = "encryption-sets", request_body = CreateEncryptionSet,
    responses((status = 201, body = EncryptionSet)))]
pub async fn create_encryption_set(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateEncryptionSet>,
) -> ApiResult<(StatusCode, Json<EncryptionSet>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_encryption_set(&c, req).await?),
    ))
}

/// Disk encryption sets the caller can see, a page at a time.
#[utoipa::path(get, path = "/v1/encryption-sets", tag = "encryption-sets", params(EncryptionSetQuery),
    responses((status = 200, body = Page<EncryptionSet>)))]
pub async fn list_encryption_sets(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<EncryptionSetQuery>,
) -> ApiResult<Json<Page<EncryptionSet>>> {
    Ok(Json(s.list_encryption_sets(&c, q.into()).await?))
}

/// One disk encryption set, with whether its identity can reach its key.
#[utoipa::path(get, path = "/v1/encryption-sets/{id}", tag = "encryption-sets", params(("id" = String, Path, description = "encryption set id")),
    responses((status = 200, body = EncryptionSet)))]
pub async fn get_encryption_set(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<EncryptionSet>> {
    Ok(Json(s.get_encryption_set(&c, &id).await?))
}

/// Point a set at another key of its region, or pin or unpin a version.
#[utoipa::path(patch, path = "/v1/encryption-sets/{id}", tag = "encryption-sets", params(("id" = String, Path, description = "encryption set id")), request_body = UpdateEncryptionSet,
    responses((status = 200, body = EncryptionSet)))]
pub async fn update_encryption_set(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateEncryptionSet>,
) -> ApiResult<Json<EncryptionSet>> {
    Ok(Json(s.update_encryption_set(&c, &id, req).await?))
}

/// Delete a disk encryption set and its managed identity.
#[utoipa::path(delete, path = "/v1/encryption-sets/{id}", tag = "encryption-sets", params(("id" = String, Path, description = "encryption set id")),
    responses((status = 200, body = EncryptionSet, description = "the set as it was")))]
pub async fn delete_encryption_set(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<EncryptionSet>> {
    Ok(Json(s.delete_encryption_set(&c, &id).await?))
}
