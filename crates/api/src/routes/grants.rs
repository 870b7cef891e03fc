//! Grants on keys (AWS KMS grants).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coffer_service::Service;
use coffer_service::model::{CreateGrant, KeyGrant};
use coffer_wire::Page;

use crate::{ApiJson, ApiResult, Auth};

/// Let a principal of the key's tenant use the key for some operations.
/// Needs `keys/grant` on the key (or a grant with `CreateGrant` covering the
/// operations passed on).
#[utoipa::path(post, path = "/v1/keys/{id}/grants", tag = "keys", params(("id" = String, Path, description = "key id")), request_body = CreateGrant,
    responses((status = 201, body = KeyGrant)))]
pub async fn create_grant(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateGrant>,
) -> ApiResult<(StatusCode, Json<KeyGrant>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_grant(&c, &id, req).await?),
    ))
}

/// The active grants on a key.
#[utoipa::path(get, path = "/v1/keys/{id}/grants", tag = "keys", params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = Page<KeyGrant>)))]
pub async fn list_grants(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Page<KeyGrant>>> {
    Ok(Json(s.list_grants(&c, &id).await?))
}

/// Revoke a grant (a key administrator): its grantee loses the key at once.
#[utoipa::path(delete, path = "/v1/grants/{id}", tag = "keys", params(("id" = String, Path, description = "grant id")),
    responses((status = 200, body = KeyGrant)))]
pub async fn revoke_grant(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<KeyGrant>> {
    Ok(Json(s.revoke_grant(&c, &id).await?))
}

/// Retire a grant: its grantee, its retiring principal or a key
/// administrator.
#[utoipa::path(post, path = "/v1/grants/{id}/retire", tag = "keys", params(("id" = String, Path, description = "grant id")),
    responses((status = 200, body = KeyGrant)))]
pub async fn retire_grant(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<KeyGrant>> {
    Ok(Json(s.retire_grant(&c, &id).await?))
}
