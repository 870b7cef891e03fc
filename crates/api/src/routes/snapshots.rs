//! Snapshots.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coffer_service::Service;
use coffer_service::model::{
    CopyRequest, CreateSnapshot, Job, ResourceTags, Share, Snapshot, TagRequest, UpdateShare,
};
use coffer_wire::{JobQuery, JobWaitQuery, Page, SnapshotQuery};

use crate::{ApiJson, ApiQuery, ApiResult, Auth};

/// Take a crash-consistent snapshot of a disk (attached or not).
#[utoipa::path(post, path = "/v1/snapshots", tag = "snapshots", request_body = CreateSnapshot,
    responses((status = 201, body = Snapshot)))]
pub async fn create_snapshot(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateSnapshot>,
) -> ApiResult<(StatusCode, Json<Snapshot>)> {
    Ok((StatusCode::CREATED, Json(s.create_snapshot(&c, req).await?)))
}

/// Snapshots the caller can see (shared ones too), a page at a time.
#[utoipa::path(get, path = "/v1/snapshots", tag = "snapshots", params(SnapshotQuery),
    responses((status = 200, body = Page<Snapshot>)))]
pub async fn list_snapshots(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<SnapshotQuery>,
) -> ApiResult<Json<Page<Snapshot>>> {
    Ok(Json(s.list_snapshots(&c, q.into()).await?))
}

/// One snapshot.
#[utoipa::path(get, path = "/v1/snapshots/{id}", tag = "snapshots", params(("id" = String, Path, description = "snapshot id")),
    responses((status = 200, body = Snapshot)))]
pub async fn get_snapshot(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Snapshot>> {
    Ok(Json(s.get_snapshot(&c, &id).await?))
}

/// Delete a snapshot (disks created from it are unaffected).
#[utoipa::path(delete, path = "/v1/snapshots/{id}", tag = "snapshots", params(("id" = String, Path, description = "snapshot id")),
    responses((status = 200, body = Snapshot, description = "the snapshot as it was")))]
pub async fn delete_snapshot(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Snapshot>> {
    Ok(Json(s.delete_snapshot(&c, &id).await?))
}

/// Copy a snapshot into an account (the caller's by default): ownership
/// moves to that account. Under the same key the copy shares the source's
/// ciphertext and is done at once (the job answered has succeeded, its
/// `target_id` is the copy); under another key it is a re-encrypting job
/// (poll `GET /v1/jobs/{id}`; the snapshot appears when it succeeded).
#[utoipa::path(post, path = "/v1/snapshots/{id}/copy", tag = "snapshots", request_body = CopyRequest,
    params(("id" = String, Path, description = "snapshot id")),
    responses((status = 201, body = Job)))]
pub async fn copy_snapshot(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CopyRequest>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.copy_snapshot(&c, &id, req).await?),
    ))
}

/// Copy jobs of the accounts whose snapshots the caller may see, a page at
/// a time, in creation order.
#[utoipa::path(get, path = "/v1/jobs", tag = "snapshots", params(JobQuery),
    responses((status = 200, body = Page<Job>)))]
pub async fn list_jobs(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> ApiResult<Json<Page<Job>>> {
    Ok(Json(s.list_jobs(&c, q.into()).await?))
}

/// One job: state and progress; with `wait_ms`, answered as soon as the
/// job is no longer running (or when that time is up).
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "snapshots",
    params(("id" = String, Path, description = "job id"), JobWaitQuery),
    responses((status = 200, body = Job)))]
pub async fn get_job(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<JobWaitQuery>,
) -> ApiResult<Json<Job>> {
    Ok(Json(s.get_job(&c, &id, q.wait_ms.unwrap_or(0)).await?))
}

/// Cancel a running job: nothing of the copy stays.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "snapshots", params(("id" = String, Path, description = "job id")),
    responses((status = 200, body = Job)))]
pub async fn cancel_job(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    Ok(Json(s.cancel_job(&c, &id).await?))
}

/// A snapshot's or image's permissions (AWS's create-volume and launch
/// permissions): the accounts it is shared with, `*` for every account.
#[utoipa::path(get, path = "/v1/permissions/{id}", tag = "sharing",
    params(("id" = String, Path, description = "snapshot or image id")),
    responses((status = 200, body = Share)))]
pub async fn get_permissions(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Share>> {
    Ok(Json(s.permissions(&c, &id).await?))
}

/// Add or remove accounts (or `*`, every account) in a snapshot's or
/// image's permissions.
#[utoipa::path(patch, path = "/v1/permissions/{id}", tag = "sharing", request_body = UpdateShare,
    params(("id" = String, Path, description = "snapshot or image id")),
    responses((status = 200, body = Share)))]
pub async fn update_permissions(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateShare>,
) -> ApiResult<Json<Share>> {
    Ok(Json(s.update_permissions(&c, &id, req).await?))
}

/// Add, replace or remove tags of a disk, snapshot or image (its owner's
/// `*/write`): `remove` first, then `set`, in one transaction; at most 50
/// tags, `coffer:` keys reserved.
#[utoipa::path(patch, path = "/v1/tags/{id}", tag = "tags", request_body = TagRequest,
    params(("id" = String, Path, description = "disk, snapshot or image id")),
    responses((status = 200, body = ResourceTags)))]
pub async fn update_tags(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TagRequest>,
) -> ApiResult<Json<ResourceTags>> {
    Ok(Json(s.update_tags(&c, &id, req).await?))
}
