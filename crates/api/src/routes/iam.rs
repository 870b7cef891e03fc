//! Identity and access: principals, tokens, role assignments, explain.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coffer_service::Service;
use coffer_service::model::{
    CreatePrincipal, CreateRoleAssignment, CreateToken, ExplainRequest, Explanation, NewToken,
    Principal, RoleAssignment, Token,
};
use coffer_wire::{AssignmentQuery, Page, PrincipalQuery, TokenQuery};

use crate::{ApiJson, ApiQuery, ApiResult, Auth};

/// Create a user or service principal.
#[utoipa::path(post, path = "/v1/principals", tag = "iam", request_body = CreatePrincipal,
    responses((status = 201, body = Principal)))]
pub async fn create_principal(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreatePrincipal>,
) -> ApiResult<(StatusCode, Json<Principal>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_principal(&c, req).await?),
    ))
}

/// Principals of an account the caller may see.
#[utoipa::path(get, path = "/v1/principals", tag = "iam", params(PrincipalQuery),
    responses((status = 200, body = Page<Principal>)))]
pub async fn list_principals(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<PrincipalQuery>,
) -> ApiResult<Json<Page<Principal>>> {
    Ok(Json(s.list_principals(&c, q.into()).await?))
}

/// One principal.
#[utoipa::path(get, path = "/v1/principals/{id}", tag = "iam", params(("id" = String, Path, description = "principal id")),
    responses((status = 200, body = Principal)))]
pub async fn get_principal(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Principal>> {
    Ok(Json(s.get_principal(&c, &id).await?))
}

/// Delete a principal with its tokens and role assignments.
#[utoipa::path(delete, path = "/v1/principals/{id}", tag = "iam", params(("id" = String, Path, description = "principal id")),
    responses((status = 200, body = Principal, description = "the principal as it was")))]
pub async fn delete_principal(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Principal>> {
    Ok(Json(s.delete_principal(&c, &id).await?))
}

/// Create an API token; its secret is in this response only.
#[utoipa::path(post, path = "/v1/principals/{id}/tokens", tag = "iam", params(("id" = String, Path, description = "principal id")), request_body = CreateToken,
    responses((status = 201, body = NewToken)))]
pub async fn create_token(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_token(&c, &id, req).await?),
    ))
}

/// A principal's tokens (never their secrets).
#[utoipa::path(get, path = "/v1/principals/{id}/tokens", tag = "iam", params(("id" = String, Path, description = "principal id"), TokenQuery),
    responses((status = 200, body = Page<Token>)))]
pub async fn list_tokens(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> ApiResult<Json<Page<Token>>> {
    Ok(Json(s.list_tokens(&c, &id, q.into()).await?))
}

/// Revoke a token: it stops working at once.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "iam", params(("id" = String, Path, description = "token id")),
    responses((status = 200, body = Token)))]
pub async fn revoke_token(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Token>> {
    Ok(Json(s.revoke_token(&c, &id).await?))
}

/// Assign a role at a scope to a principal of any account or tenant.
#[utoipa::path(post, path = "/v1/role-assignments", tag = "iam", request_body = CreateRoleAssignment,
    responses((status = 201, body = RoleAssignment)))]
pub async fn create_role_assignment(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateRoleAssignment>,
) -> ApiResult<(StatusCode, Json<RoleAssignment>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_role_assignment(&c, req).await?),
    ))
}

/// Role assignments at a scope, of a principal, or (neither) the caller's.
#[utoipa::path(get, path = "/v1/role-assignments", tag = "iam", params(AssignmentQuery),
    responses((status = 200, body = Page<RoleAssignment>)))]
pub async fn list_role_assignments(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<AssignmentQuery>,
) -> ApiResult<Json<Page<RoleAssignment>>> {
    Ok(Json(s.list_role_assignments(&c, q.into()).await?))
}

/// Delete a role assignment.
#[utoipa::path(delete, path = "/v1/role-assignments/{id}", tag = "iam", params(("id" = String, Path, description = "role assignment id")),
    responses((status = 200, body = RoleAssignment, description = "the assignment as it was")))]
pub async fn delete_role_assignment(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<RoleAssignment>> {
    Ok(Json(s.delete_role_assignment(&c, &id).await?))
}

/// Why a principal may or may not do an action on a resource.
#[utoipa::path(post, path = "/v1/iam/explain", tag = "iam", request_body = ExplainRequest,
    responses((status = 200, body = Explanation)))]
pub async fn explain(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<ExplainRequest>,
) -> ApiResult<Json<Explanation>> {
    Ok(Json(s.explain(&c, req).await?))
}
