//! Resource shares and invitations.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coffer_service::Service;
use coffer_service::model::{CreateShare, Invitation, Share, UpdateShare};
use coffer_wire::{InvitationQuery, Page, ShareQuery};

use crate::{ApiJson, ApiQuery, ApiResult, Auth};

/// Create a resource share: snapshots and images, shared with accounts,
/// folders or the tenant (accounts of other tenants are invited).
#[utoipa::path(post, path = "/v1/shares", tag = "sharing", request_body = CreateShare,
    responses((status = 201, body = Share)))]
pub async fn create_share(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateShare>,
) -> ApiResult<(StatusCode, Json<Share>)> {
    Ok((StatusCode::CREATED, Json(s.create_share(&c, req).await?)))
}

/// The caller's resource shares, or with `shared=true` the shares other
/// accounts share with the caller's (in force or invited).
#[utoipa::path(get, path = "/v1/shares", tag = "sharing", params(ShareQuery),
    responses((status = 200, body = Page<Share>)))]
pub async fn list_shares(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<ShareQuery>,
) -> ApiResult<Json<Page<Share>>> {
    Ok(Json(s.list_shares(&c, q.into()).await?))
}

/// One resource share.
#[utoipa::path(get, path = "/v1/shares/{id}", tag = "sharing", params(("id" = String, Path, description = "share id")),
    responses((status = 200, body = Share)))]
pub async fn get_share(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Share>> {
    Ok(Json(s.get_share(&c, &id).await?))
}

/// Add or remove resources and principals.
#[utoipa::path(patch, path = "/v1/shares/{id}", tag = "sharing", request_body = UpdateShare,
    params(("id" = String, Path, description = "share id")),
    responses((status = 200, body = Share)))]
pub async fn update_share(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateShare>,
) -> ApiResult<Json<Share>> {
    Ok(Json(s.update_share(&c, &id, req).await?))
}

/// Delete a resource share (its principals lose access; what they made
/// from its resources stays).
#[utoipa::path(delete, path = "/v1/shares/{id}", tag = "sharing", params(("id" = String, Path, description = "share id")),
    responses((status = 200, body = Share, description = "the share as it was")))]
pub async fn delete_share(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Share>> {
    Ok(Json(s.delete_share(&c, &id).await?))
}

/// The invitations of the caller's account (or `account`).
#[utoipa::path(get, path = "/v1/invitations", tag = "sharing", params(InvitationQuery),
    responses((status = 200, body = Page<Invitation>)))]
pub async fn list_invitations(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<InvitationQuery>,
) -> ApiResult<Json<Page<Invitation>>> {
    let items = s.list_invitations(&c, q.account.as_deref()).await?;
    Ok(Json(Page { items, next: None }))
}

/// Accept an invitation: the share's resources become visible to the
/// account, and so do those added later.
#[utoipa::path(post, path = "/v1/invitations/{id}/accept", tag = "sharing", params(("id" = String, Path, description = "invitation id")),
    responses((status = 200, body = Invitation)))]
pub async fn accept_invitation(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Invitation>> {
    Ok(Json(s.answer_invitation(&c, &id, true).await?))
}

/// Reject an invitation.
#[utoipa::path(post, path = "/v1/invitations/{id}/reject", tag = "sharing", params(("id" = String, Path, description = "invitation id")),
    responses((status = 200, body = Invitation)))]
pub async fn reject_invitation(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Invitation>> {
    Ok(Json(s.answer_invitation(&c, &id, false).await?))
}
