//! The organisation: tenants, folders, accounts.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use coffer_service::Service;
use coffer_service::model::{
    Account, AccountUsage, CreateAccount, CreateFolder, CreateTenant, Folder, MoveAccount, Tenant,
    UpdateTenant,
};
use coffer_wire::{AccountQuery, FolderQuery, Page, TenantQuery, UsageQuery};

use crate::{ApiJson, ApiQuery, ApiResult, Auth};

/// Create a tenant (Owners of the deployment).
#[utoipa::path(post, path = "/v1/tenants", tag = "organisation", request_body = CreateTenant,
    responses((status = 201, body = Tenant)))]
pub async fn create_tenant(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    Ok((StatusCode::CREATED, Json(s.create_tenant(&c, req).await?)))
}

/// Tenants the caller may see.
#[utoipa::path(get, path = "/v1/tenants", tag = "organisation", params(TenantQuery),
    responses((status = 200, body = Page<Tenant>)))]
pub async fn list_tenants(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> ApiResult<Json<Page<Tenant>>> {
    Ok(Json(s.list_tenants(&c, q.into()).await?))
}

/// One tenant.
#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "organisation", params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, body = Tenant)))]
pub async fn get_tenant(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(s.get_tenant(&c, &id).await?))
}

/// Change a tenant's policy: whether its customer keys may be granted to
/// principals of other tenants.
#[utoipa::path(patch, path = "/v1/tenants/{id}", tag = "organisation", params(("id" = String, Path, description = "tenant id")),
    request_body = UpdateTenant, responses((status = 200, body = Tenant)))]
pub async fn update_tenant(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateTenant>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(s.update_tenant(&c, &id, req).await?))
}

/// Create a folder at a tenant's root or in a folder.
#[utoipa::path(post, path = "/v1/folders", tag = "organisation", request_body = CreateFolder,
    responses((status = 201, body = Folder)))]
pub async fn create_folder(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateFolder>,
) -> ApiResult<(StatusCode, Json<Folder>)> {
    Ok((StatusCode::CREATED, Json(s.create_folder(&c, req).await?)))
}

/// Folders of a tenant the caller may see.
#[utoipa::path(get, path = "/v1/folders", tag = "organisation", params(FolderQuery),
    responses((status = 200, body = Page<Folder>)))]
pub async fn list_folders(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<FolderQuery>,
) -> ApiResult<Json<Page<Folder>>> {
    Ok(Json(s.list_folders(&c, q.into()).await?))
}

/// One folder.
#[utoipa::path(get, path = "/v1/folders/{id}", tag = "organisation", params(("id" = String, Path, description = "folder id")),
    responses((status = 200, body = Folder)))]
pub async fn get_folder(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Folder>> {
    Ok(Json(s.get_folder(&c, &id).await?))
}

/// Delete an empty folder.
#[utoipa::path(delete, path = "/v1/folders/{id}", tag = "organisation", params(("id" = String, Path, description = "folder id")),
    responses((status = 200, body = Folder, description = "the folder as it was")))]
pub async fn delete_folder(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Folder>> {
    Ok(Json(s.delete_folder(&c, &id).await?))
}

/// Create an account at a tenant's root or in a folder.
#[utoipa::path(post, path = "/v1/accounts", tag = "organisation", request_body = CreateAccount,
    responses((status = 201, body = Account)))]
pub async fn create_account(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateAccount>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    Ok((StatusCode::CREATED, Json(s.create_account(&c, req).await?)))
}

/// Accounts the caller may see.
#[utoipa::path(get, path = "/v1/accounts", tag = "organisation", params(AccountQuery),
    responses((status = 200, body = Page<Account>)))]
pub async fn list_accounts(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiQuery(q): ApiQuery<AccountQuery>,
) -> ApiResult<Json<Page<Account>>> {
    Ok(Json(s.list_accounts(&c, q.into()).await?))
}

/// One account.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "organisation", params(("id" = String, Path, description = "account id")),
    responses((status = 200, body = Account)))]
pub async fn get_account(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Account>> {
    Ok(Json(s.get_account(&c, &id).await?))
}

/// Storage the account uses: the figures now, and the samples the server
/// records once per interval (`usage_interval`, default an hour).
#[utoipa::path(get, path = "/v1/accounts/{id}/usage", tag = "organisation", params(("id" = String, Path, description = "account id"), UsageQuery),
    responses((status = 200, body = AccountUsage)))]
pub async fn account_usage(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Json<AccountUsage>> {
    Ok(Json(s.account_usage(&c, &id, q.since.as_deref()).await?))
}

/// Move an account to another folder of its tenant, or its root.
#[utoipa::path(post, path = "/v1/accounts/{id}/move", tag = "organisation", params(("id" = String, Path, description = "account id")), request_body = MoveAccount,
    responses((status = 200, body = Account)))]
pub async fn move_account(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MoveAccount>,
) -> ApiResult<Json<Account>> {
    Ok(Json(
        s.move_account(&c, &id, req.folder_id.as_deref()).await?,
    ))
}
