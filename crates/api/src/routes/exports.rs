//! Copies between two deployments: exports (the sender's side, managed by
//! principals under `/v1/exports`, read by a pull token under `/v1/pull`)
//! and imports (the receiver's side, `/v1/imports`). One prefix, one kind
//! of credential: a pull token opens `/v1/pull/{id}/…` of its one export
//! and nothing else; no principal's token opens `/v1/pull`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_service::model::{
    CreateExport, CreateImport, Export, ExportChanged, ExportHash, ExportRun, Import,
};
use coffer_service::{ErrorCode, PULL_TOKEN_PREFIX, Service, ServiceError};
use serde::Deserialize;

use crate::{ApiError, ApiJson, ApiQuery, ApiResult, Auth, bearer};

/// The pull token of a `/v1/pull` request.
pub struct PullToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PullToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .unwrap_or("");
        if token.starts_with(PULL_TOKEN_PREFIX) {
            return Ok(Self(token.to_string()));
        }
        Err(ApiError(ServiceError::new(
            ErrorCode::Unauthenticated,
            format!(
                "this route takes an export's pull token ({PULL_TOKEN_PREFIX}…) as `Authorization: Bearer`; a principal's token does not open an export"
            ),
        )))
    }
}

/// A byte range of an exported snapshot.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// First byte.
    pub offset: u64,
    /// Bytes (a map: at most 1 GiB; data: at most 8 MiB).
    pub length: u64,
}

/// The chunks changed since a generation, in a range of chunk indexes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangedParams {
    /// The earlier generation of the lineage (below the member's).
    pub after: u64,
    /// First chunk index.
    pub from: u64,
    /// Chunk index after the last (at most 65536 chunks).
    pub to: u64,
}

/// What to hash.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HashParams {
    /// First byte (a multiple of 8 MiB).
    pub offset: u64,
    /// Bytes (at most 1 GiB).
    pub length: u64,
    /// Hash only the chunks changed since this generation (default: all).
    #[serde(default)]
    pub changed_after: Option<u64>,
}

/// Export a snapshot to another deployment: a pull token (shown once)
/// that reads it, and nothing else, until it expires.
#[utoipa::path(post, path = "/v1/snapshots/{id}/exports", tag = "exports", request_body = CreateExport,
    params(("id" = String, Path, description = "snapshot id")),
    responses((status = 201, body = Export, description = "the export, with its pull token")))]
pub async fn export_snapshot(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateExport>,
) -> ApiResult<(StatusCode, Json<Export>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.export_snapshot(&c, &id, req).await?),
    ))
}

/// Export an image (its snapshots) to another deployment.
#[utoipa::path(post, path = "/v1/images/{id}/exports", tag = "exports", request_body = CreateExport,
    params(("id" = String, Path, description = "image id")),
    responses((status = 201, body = Export, description = "the export, with its pull token")))]
pub async fn export_image(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateExport>,
) -> ApiResult<(StatusCode, Json<Export>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.export_image(&c, &id, req).await?),
    ))
}

/// The exports of the caller's account, newest first.
#[utoipa::path(get, path = "/v1/exports", tag = "exports",
    responses((status = 200, body = Vec<Export>)))]
pub async fn list_exports(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
) -> ApiResult<Json<Vec<Export>>> {
    Ok(Json(s.list_exports(&c).await?))
}

/// One export (its token is never shown again).
#[utoipa::path(get, path = "/v1/exports/{id}", tag = "exports",
    params(("id" = String, Path, description = "export id")),
    responses((status = 200, body = Export)))]
pub async fn get_export(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Export>> {
    Ok(Json(s.get_export(&c, &id).await?))
}

/// Revoke an export: its pull token reads nothing more.
#[utoipa::path(delete, path = "/v1/exports/{id}", tag = "exports",
    params(("id" = String, Path, description = "export id")),
    responses((status = 200, body = Export)))]
pub async fn revoke_export(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Export>> {
    Ok(Json(s.revoke_export(&c, &id).await?))
}

/// The export, to its pull token's holder.
#[utoipa::path(get, path = "/v1/pull/{id}", tag = "exports",
    params(("id" = String, Path, description = "export id")),
    responses((status = 200, body = Export)))]
pub async fn pull_export(
    State(s): State<Arc<Service>>,
    PullToken(t): PullToken,
    Path(id): Path<String>,
) -> ApiResult<Json<Export>> {
    Ok(Json(s.pull_describe(&id, &t).await?))
}

/// Where an exported snapshot holds data, and where it reads as zeroes.
#[utoipa::path(get, path = "/v1/pull/{id}/members/{role}/map", tag = "exports",
    params(("id" = String, Path, description = "export id"), ("role" = String, Path, description = "member role"), RangeParams),
    responses((status = 200, body = Vec<ExportRun>)))]
pub async fn pull_map(
    State(s): State<Arc<Service>>,
    PullToken(t): PullToken,
    Path((id, role)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<RangeParams>,
) -> ApiResult<Json<Vec<ExportRun>>> {
    Ok(Json(s.pull_map(&id, &t, &role, q.offset, q.length).await?))
}

/// The plaintext of a range of an exported snapshot (inside TLS).
#[utoipa::path(get, path = "/v1/pull/{id}/members/{role}/data", tag = "exports",
    params(("id" = String, Path, description = "export id"), ("role" = String, Path, description = "member role"), RangeParams),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>)))]
pub async fn pull_data(
    State(s): State<Arc<Service>>,
    PullToken(t): PullToken,
    Path((id, role)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<RangeParams>,
) -> ApiResult<Response> {
    let data = s.pull_data(&id, &t, &role, q.offset, q.length).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

/// The chunks of an exported snapshot changed since an earlier view of its
/// lineage.
#[utoipa::path(get, path = "/v1/pull/{id}/members/{role}/changed", tag = "exports",
    params(("id" = String, Path, description = "export id"), ("role" = String, Path, description = "member role"), ChangedParams),
    responses((status = 200, body = ExportChanged)))]
pub async fn pull_changed(
    State(s): State<Arc<Service>>,
    PullToken(t): PullToken,
    Path((id, role)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ChangedParams>,
) -> ApiResult<Json<ExportChanged>> {
    Ok(Json(
        s.pull_changed(&id, &t, &role, q.after, (q.from, q.to))
            .await?,
    ))
}

/// The sender's hash of an exported snapshot, for the receiver's check.
#[utoipa::path(get, path = "/v1/pull/{id}/members/{role}/hash", tag = "exports",
    params(("id" = String, Path, description = "export id"), ("role" = String, Path, description = "member role"), HashParams),
    responses((status = 200, body = ExportHash)))]
pub async fn pull_hash(
    State(s): State<Arc<Service>>,
    PullToken(t): PullToken,
    Path((id, role)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<HashParams>,
) -> ApiResult<Json<ExportHash>> {
    Ok(Json(
        s.pull_hash(&id, &t, &role, q.changed_after, (q.offset, q.length))
            .await?,
    ))
}

/// Import another deployment's export: copy jobs here read it and write it
/// under this deployment's keys.
#[utoipa::path(post, path = "/v1/imports", tag = "exports", request_body = CreateImport,
    responses((status = 201, body = Import)))]
pub async fn create_import(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateImport>,
) -> ApiResult<(StatusCode, Json<Import>)> {
    Ok((StatusCode::CREATED, Json(s.create_import(&c, req).await?)))
}
