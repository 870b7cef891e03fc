//! Deployment administration: consistency check, garbage collection, nodes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use coffer_service::Service;
use coffer_service::model::{FsckReport, GcReport, Node};
use serde::Deserialize;

use crate::{ApiQuery, ApiResult, Auth};

/// Query of `GET /v1/admin/fsck`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FsckParams {
    /// Also fetch and authenticate every named object (reads all data).
    #[serde(default)]
    pub deep: bool,
}

/// Check metadata and stored objects (deployment operators).
#[utoipa::path(get, path = "/v1/admin/fsck", tag = "admin", params(FsckParams),
    responses((status = 200, body = FsckReport, description = "the report; `ok` says whether anything is wrong")))]
pub async fn fsck(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<FsckParams>,
) -> ApiResult<Json<FsckReport>> {
    Ok(Json(s.fsck(&c, q.deep).await?))
}

/// Collect queued deletions and sweep orphaned objects now (deployment operators).
#[utoipa::path(post, path = "/v1/admin/gc", tag = "admin", responses((status = 200, body = GcReport)))]
pub async fn admin_gc(State(s): State<Arc<Service>>, Auth(c): Auth) -> ApiResult<Json<GcReport>> {
    Ok(Json(s.admin_gc(&c).await?))
}

/// The nodes serving this deployment and their leases (deployment operators).
#[utoipa::path(get, path = "/v1/admin/nodes", tag = "admin", responses((status = 200, body = [Node])))]
pub async fn list_nodes(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
) -> ApiResult<Json<Vec<Node>>> {
    Ok(Json(s.list_nodes(&c).await?))
}
