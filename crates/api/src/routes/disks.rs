//! Disks and their attachments.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coffer_service::Service;
use coffer_service::model::{Attachment, CreateDisk, Disk, ResizeDisk};
use coffer_wire::{DiskQuery, Page};

use crate::{ApiJson, ApiQuery, ApiResult, Auth};

/// Create a disk, empty or from a snapshot.
#[utoipa::path(post, path = "/v1/disks", tag = "disks", request_body = CreateDisk,
    responses((status = 201, body = Disk)))]
pub async fn create_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateDisk>,
) -> ApiResult<(StatusCode, Json<Disk>)> {
    Ok((StatusCode::CREATED, Json(s.create_disk(&c, req).await?)))
}

/// Disks the caller may read, a page at a time.
#[utoipa::path(get, path = "/v1/disks", tag = "disks", params(DiskQuery),
    responses((status = 200, body = Page<Disk>)))]
pub async fn list_disks(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<DiskQuery>,
) -> ApiResult<Json<Page<Disk>>> {
    Ok(Json(s.list_disks(&c, q.into()).await?))
}

/// One disk.
#[utoipa::path(get, path = "/v1/disks/{id}", tag = "disks", params(("id" = String, Path, description = "disk id")),
    responses((status = 200, body = Disk)))]
pub async fn get_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Disk>> {
    Ok(Json(s.get_disk(&c, &id).await?))
}

/// Delete a detached disk (its snapshots stay).
#[utoipa::path(delete, path = "/v1/disks/{id}", tag = "disks", params(("id" = String, Path, description = "disk id")),
    responses((status = 200, body = Disk, description = "the disk as it was")))]
pub async fn delete_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Disk>> {
    Ok(Json(s.delete_disk(&c, &id).await?))
}

/// Grow a detached disk.
#[utoipa::path(post, path = "/v1/disks/{id}/resize", tag = "disks", params(("id" = String, Path, description = "disk id")), request_body = ResizeDisk,
    responses((status = 200, body = Disk)))]
pub async fn resize_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ResizeDisk>,
) -> ApiResult<Json<Disk>> {
    Ok(Json(s.resize_disk(&c, &id, req.size).await?))
}

/// Attach a disk: an NBD URI whose export name is a secret.
#[utoipa::path(post, path = "/v1/disks/{id}/attach", tag = "disks", params(("id" = String, Path, description = "disk id")),
    responses((status = 201, body = Attachment)))]
pub async fn attach_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Attachment>)> {
    Ok((StatusCode::CREATED, Json(s.attach_disk(&c, &id).await?)))
}

/// Detach a disk: flush, close its connections, revoke its URI.
#[utoipa::path(post, path = "/v1/disks/{id}/detach", tag = "disks", params(("id" = String, Path, description = "disk id")),
    responses((status = 200, body = Disk)))]
pub async fn detach_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Disk>> {
    Ok(Json(s.detach_disk(&c, &id).await?))
}
