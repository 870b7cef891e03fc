//! Images: create, list, show, delete, launch, copy.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coffer_service::Service;
use coffer_service::model::{CopyRequest, CreateImage, Disk, Image, LaunchImage};
use coffer_wire::{ImageQuery, Page};

use crate::{ApiJson, ApiQuery, ApiResult, Auth};

/// Create an image from disks (crash-consistent snapshots of each are
/// taken) or from snapshots (copied, O(1)); the first is the root.
#[utoipa::path(post, path = "/v1/images", tag = "images", request_body = CreateImage,
    responses((status = 201, body = Image)))]
pub async fn create_image(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateImage>,
) -> ApiResult<(StatusCode, Json<Image>)> {
    Ok((StatusCode::CREATED, Json(s.create_image(&c, req).await?)))
}

/// Images the caller can see (shared ones too), a page at a time.
#[utoipa::path(get, path = "/v1/images", tag = "images", params(ImageQuery),
    responses((status = 200, body = Page<Image>)))]
pub async fn list_images(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<ImageQuery>,
) -> ApiResult<Json<Page<Image>>> {
    Ok(Json(s.list_images(&c, q.into()).await?))
}

/// One image.
#[utoipa::path(get, path = "/v1/images/{id}", tag = "images", params(("id" = String, Path, description = "image id")),
    responses((status = 200, body = Image)))]
pub async fn get_image(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Image>> {
    Ok(Json(s.get_image(&c, &id).await?))
}

/// Delete an image and its snapshots (disks launched from it and copies
/// of it are unaffected).
#[utoipa::path(delete, path = "/v1/images/{id}", tag = "images", params(("id" = String, Path, description = "image id")),
    responses((status = 200, body = Image, description = "the image as it was")))]
pub async fn delete_image(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Image>> {
    Ok(Json(s.delete_image(&c, &id).await?))
}

/// Launch an image: one disk per snapshot, in one zone of its region.
#[utoipa::path(post, path = "/v1/images/{id}/disks", tag = "images", request_body = LaunchImage,
    params(("id" = String, Path, description = "image id")),
    responses((status = 201, body = Vec<Disk>)))]
pub async fn launch_image(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LaunchImage>,
) -> ApiResult<(StatusCode, Json<Vec<Disk>>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.launch_image(&c, &id, req).await?),
    ))
}

/// Copy an image (and its snapshots) into an account (the caller's by
/// default).
#[utoipa::path(post, path = "/v1/images/{id}/copy", tag = "images", request_body = CopyRequest,
    params(("id" = String, Path, description = "image id")),
    responses((status = 201, body = Image)))]
pub async fn copy_image(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CopyRequest>,
) -> ApiResult<(StatusCode, Json<Image>)> {
    Ok((StatusCode::CREATED, Json(s.copy_image(&c, &id, req).await?)))
}
