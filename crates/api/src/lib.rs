//! The HTTP JSON API. It owns routing, authentication of requests (bearer
//! tokens), decoding of request bodies, the one mapping from service errors
//! to HTTP statuses, and the OpenAPI document served at `/openapi.json`.
//! Every rule lives in the service layer; handlers only translate. Requests
//! about a disk another node holds are forwarded to it ([`forward`]).

mod forward;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Json, Router};
use coffer_iam::Action;
use coffer_service::model::{
    Account, Attachment, CreateAccount, CreateDisk, CreateFolder, CreatePrincipal,
    CreateRoleAssignment, CreateSnapshot, CreateTenant, CreateToken, Disk, Encryption,
    ExplainRequest, Explanation, Folder, FsckFinding, FsckReport, GcReport, MoveAccount, NewToken,
    Node, Principal, Region, ResizeDisk, RoleAssignment, RoleDefinition, Snapshot, Tenant, Token,
    WhoAmI,
};
use coffer_service::{Caller, ErrorKind, Service, ServiceError};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

/// The error body of every failed request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a human message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine code, e.g. `DiskNotFound`.
    pub code: String,
    /// What went wrong and what to do next.
    pub message: String,
}

/// A service error as an HTTP response: the only place statuses are chosen.
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

/// The HTTP status of an error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        let forward_to = self.0.forward_to.clone();
        let mut resp = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.0.code.to_string(),
                    message: self.0.message,
                },
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(url) = forward_to {
            resp.extensions_mut().insert(forward::ForwardTo(url));
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON body whose decoding errors are API errors (400 with a message).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rej) => {
                let (code, msg) = match &rej {
                    JsonRejection::MissingJsonContentType(_) => (
                        "UnsupportedMediaType",
                        "send the body as JSON with Content-Type: application/json".to_string(),
                    ),
                    JsonRejection::JsonSyntaxError(e) => (
                        "MalformedJson",
                        format!("the body is not valid JSON: {}", e.body_text()),
                    ),
                    JsonRejection::JsonDataError(e) => (
                        "InvalidBody",
                        format!(
                            "the body does not match the request schema: {}",
                            e.body_text()
                        ),
                    ),
                    other => ("InvalidBody", other.body_text()),
                };
                Err(ApiError(ServiceError::invalid(code, msg)))
            }
        }
    }
}

/// The authenticated caller of a request.
pub struct Auth(pub Caller);

impl FromRequestParts<Arc<Service>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &Arc<Service>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .trim();
        Ok(Self(service.authenticate(token).await?))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Coffer API", description = "Encrypted block storage: disks, snapshots, attachments. Authenticate with `Authorization: Bearer <token>`."),
    paths(whoami, regions, create_disk, list_disks, get_disk, delete_disk, resize_disk, attach_disk, detach_disk,
          create_snapshot, list_snapshots, get_snapshot, delete_snapshot, fsck, admin_gc, list_nodes,
          list_roles, create_tenant, list_tenants, get_tenant, create_folder, list_folders, get_folder, delete_folder,
          create_account, list_accounts, get_account, move_account, create_principal, list_principals, get_principal,
          delete_principal, create_token, list_tokens, revoke_token, create_role_assignment, list_role_assignments,
          delete_role_assignment, explain),
    components(schemas(Disk, Snapshot, Attachment, Encryption, CreateDisk, CreateSnapshot, ResizeDisk, Region, WhoAmI, FsckReport, FsckFinding, GcReport, Node, ErrorBody, ErrorDetail,
        Tenant, Folder, Account, Principal, Token, NewToken, RoleAssignment, RoleDefinition, CreateTenant, CreateFolder, CreateAccount, MoveAccount,
        CreatePrincipal, CreateToken, CreateRoleAssignment, ExplainRequest, Explanation)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// How a route is authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Anyone, without a token (health, the OpenAPI document).
    Public,
    /// Any authenticated principal; what it returns is filtered by the
    /// caller's roles (lists, whoami, explain about oneself).
    Authenticated,
    /// The named action on the route's target (the resource in the path, or
    /// the scope named in the body).
    Action(Action),
}

/// One route of the API and its policy: the router is built from this
/// table, so no route exists without a declared policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// Path template, e.g. `/v1/disks/{id}`.
    pub path: &'static str,
    /// Its policy.
    pub policy: Policy,
}

struct Table {
    router: Router<Arc<Service>>,
    specs: Vec<RouteSpec>,
}

impl Table {
    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        policy: Policy,
        handler: MethodRouter<Arc<Service>>,
    ) -> Self {
        self.specs.push(RouteSpec {
            method,
            path,
            policy,
        });
        self.router = self.router.route(path, handler);
        self
    }
}

fn table() -> Table {
    use Action as A;
    use Policy::{Action as Act, Authenticated as Auth_, Public};
    let g = MethodFilter::GET;
    let p = MethodFilter::POST;
    let d = MethodFilter::DELETE;
    let t = Table {
        router: Router::new(),
        specs: vec![],
    };
    t.add(
        "GET",
        "/healthz",
        Public,
        on(g, || async { Json(serde_json::json!({"status": "ok"})) }),
    )
    .add(
        "GET",
        "/openapi.json",
        Public,
        on(g, || async { Json(openapi()) }),
    )
    .add("GET", "/v1/whoami", Auth_, on(g, whoami))
    .add("GET", "/v1/regions", Auth_, on(g, regions))
    .add("GET", "/v1/roles", Auth_, on(g, list_roles))
    .add("POST", "/v1/disks", Act(A::DisksWrite), on(p, create_disk))
    .add("GET", "/v1/disks", Auth_, on(g, list_disks))
    .add("GET", "/v1/disks/{id}", Act(A::DisksRead), on(g, get_disk))
    .add(
        "DELETE",
        "/v1/disks/{id}",
        Act(A::DisksDelete),
        on(d, delete_disk),
    )
    .add(
        "POST",
        "/v1/disks/{id}/resize",
        Act(A::DisksWrite),
        on(p, resize_disk),
    )
    .add(
        "POST",
        "/v1/disks/{id}/attach",
        Act(A::DisksAttach),
        on(p, attach_disk),
    )
    .add(
        "POST",
        "/v1/disks/{id}/detach",
        Act(A::DisksAttach),
        on(p, detach_disk),
    )
    .add(
        "POST",
        "/v1/snapshots",
        Act(A::SnapshotsWrite),
        on(p, create_snapshot),
    )
    .add("GET", "/v1/snapshots", Auth_, on(g, list_snapshots))
    .add(
        "GET",
        "/v1/snapshots/{id}",
        Act(A::SnapshotsRead),
        on(g, get_snapshot),
    )
    .add(
        "DELETE",
        "/v1/snapshots/{id}",
        Act(A::SnapshotsDelete),
        on(d, delete_snapshot),
    )
    .add(
        "POST",
        "/v1/tenants",
        Act(A::OrgWrite),
        on(p, create_tenant),
    )
    .add("GET", "/v1/tenants", Auth_, on(g, list_tenants))
    .add(
        "GET",
        "/v1/tenants/{id}",
        Act(A::OrgRead),
        on(g, get_tenant),
    )
    .add(
        "POST",
        "/v1/folders",
        Act(A::OrgWrite),
        on(p, create_folder),
    )
    .add("GET", "/v1/folders", Act(A::OrgRead), on(g, list_folders))
    .add(
        "GET",
        "/v1/folders/{id}",
        Act(A::OrgRead),
        on(g, get_folder),
    )
    .add(
        "DELETE",
        "/v1/folders/{id}",
        Act(A::OrgWrite),
        on(d, delete_folder),
    )
    .add(
        "POST",
        "/v1/accounts",
        Act(A::OrgWrite),
        on(p, create_account),
    )
    .add("GET", "/v1/accounts", Auth_, on(g, list_accounts))
    .add(
        "GET",
        "/v1/accounts/{id}",
        Act(A::OrgRead),
        on(g, get_account),
    )
    .add(
        "POST",
        "/v1/accounts/{id}/move",
        Act(A::OrgWrite),
        on(p, move_account),
    )
    .add(
        "POST",
        "/v1/principals",
        Act(A::IamWrite),
        on(p, create_principal),
    )
    .add(
        "GET",
        "/v1/principals",
        Act(A::OrgRead),
        on(g, list_principals),
    )
    .add(
        "GET",
        "/v1/principals/{id}",
        Act(A::IamRead),
        on(g, get_principal),
    )
    .add(
        "DELETE",
        "/v1/principals/{id}",
        Act(A::IamWrite),
        on(d, delete_principal),
    )
    .add(
        "POST",
        "/v1/principals/{id}/tokens",
        Act(A::TokensWrite),
        on(p, create_token),
    )
    .add(
        "GET",
        "/v1/principals/{id}/tokens",
        Act(A::IamRead),
        on(g, list_tokens),
    )
    .add(
        "POST",
        "/v1/tokens/{id}/revoke",
        Act(A::TokensWrite),
        on(p, revoke_token),
    )
    .add(
        "POST",
        "/v1/role-assignments",
        Act(A::IamWrite),
        on(p, create_role_assignment),
    )
    .add(
        "GET",
        "/v1/role-assignments",
        Auth_,
        on(g, list_role_assignments),
    )
    .add(
        "DELETE",
        "/v1/role-assignments/{id}",
        Act(A::IamWrite),
        on(d, delete_role_assignment),
    )
    .add("POST", "/v1/iam/explain", Auth_, on(p, explain))
    .add(
        "GET",
        "/v1/admin/fsck",
        Act(A::DeploymentOperate),
        on(g, fsck),
    )
    .add(
        "POST",
        "/v1/admin/gc",
        Act(A::DeploymentOperate),
        on(p, admin_gc),
    )
    .add(
        "GET",
        "/v1/admin/nodes",
        Act(A::DeploymentOperate),
        on(g, list_nodes),
    )
}

/// Every route of the API with its policy, from the table the router is
/// built from.
pub fn routes() -> Vec<RouteSpec> {
    table().specs
}

/// The API's router over `service`.
pub fn router(service: Arc<Service>) -> Router {
    table()
        .router
        .fallback(|| async {
            ApiError(ServiceError::new(
                ErrorKind::NotFound,
                "RouteNotFound",
                "no such API route: see /openapi.json",
            ))
        })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(ErrorBody {
                    error: ErrorDetail {
                        code: "MethodNotAllowed".into(),
                        message: "this route does not take that method: see /openapi.json".into(),
                    },
                }),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            // Callers' tokens go only to the node itself: no proxy, no
            // redirects.
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(600))
                .build()
                .expect("HTTP client"),
            forward::forward,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(service)
}

/// The calling principal.
#[utoipa::path(get, path = "/v1/whoami", responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
async fn whoami(State(s): State<Arc<Service>>, Auth(c): Auth) -> ApiResult<Json<WhoAmI>> {
    Ok(Json(s.whoami(&c).await?))
}

/// Regions and zones of this deployment.
#[utoipa::path(get, path = "/v1/regions", responses((status = 200, body = [Region]), (status = 401, body = ErrorBody)))]
async fn regions(State(s): State<Arc<Service>>, Auth(_c): Auth) -> Json<Vec<Region>> {
    Json(s.regions())
}

/// Create a disk (empty, or from a snapshot).
#[utoipa::path(post, path = "/v1/disks", request_body = CreateDisk,
    responses((status = 201, body = Disk), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateDisk>,
) -> ApiResult<(StatusCode, Json<Disk>)> {
    Ok((StatusCode::CREATED, Json(s.create_disk(&c, req).await?)))
}

/// Disks the caller can see.
#[utoipa::path(get, path = "/v1/disks", responses((status = 200, body = [Disk]), (status = 401, body = ErrorBody)))]
async fn list_disks(State(s): State<Arc<Service>>, Auth(c): Auth) -> ApiResult<Json<Vec<Disk>>> {
    Ok(Json(s.list_disks(&c).await?))
}

/// One disk.
#[utoipa::path(get, path = "/v1/disks/{id}", params(("id" = String, Path, description = "disk id")),
    responses((status = 200, body = Disk), (status = 404, body = ErrorBody)))]
async fn get_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Disk>> {
    Ok(Json(s.get_disk(&c, &id).await?))
}

/// Delete a detached disk.
#[utoipa::path(delete, path = "/v1/disks/{id}", params(("id" = String, Path, description = "disk id")),
    responses((status = 200, body = Disk), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Disk>> {
    Ok(Json(s.delete_disk(&c, &id).await?))
}

/// Grow a detached disk.
#[utoipa::path(post, path = "/v1/disks/{id}/resize", params(("id" = String, Path, description = "disk id")), request_body = ResizeDisk,
    responses((status = 200, body = Disk), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resize_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ResizeDisk>,
) -> ApiResult<Json<Disk>> {
    Ok(Json(s.resize_disk(&c, &id, req.size).await?))
}

/// Attach a disk: returns an NBD URI whose export name is a secret token.
#[utoipa::path(post, path = "/v1/disks/{id}/attach", params(("id" = String, Path, description = "disk id")),
    responses((status = 201, body = Attachment), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn attach_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Attachment>)> {
    Ok((StatusCode::CREATED, Json(s.attach_disk(&c, &id).await?)))
}

/// Detach a disk: flushes it and revokes its export token.
#[utoipa::path(post, path = "/v1/disks/{id}/detach", params(("id" = String, Path, description = "disk id")),
    responses((status = 200, body = Disk), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn detach_disk(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Disk>> {
    Ok(Json(s.detach_disk(&c, &id).await?))
}

/// Take a crash-consistent snapshot of a disk (attached or not).
#[utoipa::path(post, path = "/v1/snapshots", request_body = CreateSnapshot,
    responses((status = 201, body = Snapshot), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_snapshot(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateSnapshot>,
) -> ApiResult<(StatusCode, Json<Snapshot>)> {
    Ok((StatusCode::CREATED, Json(s.create_snapshot(&c, req).await?)))
}

/// Snapshots the caller can see.
#[utoipa::path(get, path = "/v1/snapshots", responses((status = 200, body = [Snapshot]), (status = 401, body = ErrorBody)))]
async fn list_snapshots(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
) -> ApiResult<Json<Vec<Snapshot>>> {
    Ok(Json(s.list_snapshots(&c).await?))
}

/// One snapshot.
#[utoipa::path(get, path = "/v1/snapshots/{id}", params(("id" = String, Path, description = "snapshot id")),
    responses((status = 200, body = Snapshot), (status = 404, body = ErrorBody)))]
async fn get_snapshot(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Snapshot>> {
    Ok(Json(s.get_snapshot(&c, &id).await?))
}

/// Delete a snapshot (disks created from it are unaffected).
#[utoipa::path(delete, path = "/v1/snapshots/{id}", params(("id" = String, Path, description = "snapshot id")),
    responses((status = 200, body = Snapshot), (status = 404, body = ErrorBody)))]
async fn delete_snapshot(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Snapshot>> {
    Ok(Json(s.delete_snapshot(&c, &id).await?))
}

/// Query of `GET /v1/admin/fsck`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct FsckParams {
    /// Also fetch and authenticate every named object (reads all data).
    #[serde(default)]
    deep: bool,
}

#[utoipa::path(get, path = "/v1/admin/fsck", params(FsckParams),
    responses((status = 200, body = FsckReport, description = "the report; `ok` says whether anything is wrong"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "not a deployment admin")))]
async fn fsck(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    q: Result<Query<FsckParams>, QueryRejection>,
) -> ApiResult<Json<FsckReport>> {
    let Query(q) = q.map_err(|e| {
        ApiError(ServiceError::invalid(
            "InvalidQuery",
            format!("{}: the only parameter is deep=true|false", e.body_text()),
        ))
    })?;
    Ok(Json(s.fsck(&c, q.deep).await?))
}

/// Collect queued deletions and sweep orphaned objects now (deployment admins).
#[utoipa::path(post, path = "/v1/admin/gc",
    responses((status = 200, body = GcReport), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn admin_gc(State(s): State<Arc<Service>>, Auth(c): Auth) -> ApiResult<Json<GcReport>> {
    Ok(Json(s.admin_gc(&c).await?))
}

/// The nodes serving this deployment and their leases (deployment admins).
#[utoipa::path(get, path = "/v1/admin/nodes",
    responses((status = 200, body = [Node]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_nodes(State(s): State<Arc<Service>>, Auth(c): Auth) -> ApiResult<Json<Vec<Node>>> {
    Ok(Json(s.list_nodes(&c).await?))
}

/// A query string decoded, or 400 naming the parameters the route takes.
fn query<T>(q: Result<Query<T>, QueryRejection>, takes: &str) -> ApiResult<T> {
    q.map(|Query(v)| v).map_err(|e| {
        ApiError(ServiceError::invalid(
            "InvalidQuery",
            format!("{}: this route takes {takes}", e.body_text()),
        ))
    })
}

/// The built-in roles and the actions each grants.
#[utoipa::path(get, path = "/v1/roles", responses((status = 200, body = [RoleDefinition]), (status = 401, body = ErrorBody)))]
async fn list_roles(State(s): State<Arc<Service>>, Auth(_c): Auth) -> Json<Vec<RoleDefinition>> {
    Json(s.roles())
}

/// Create a tenant (Owners of the deployment).
#[utoipa::path(post, path = "/v1/tenants", request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_tenant(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    Ok((StatusCode::CREATED, Json(s.create_tenant(&c, req).await?)))
}

/// Tenants the caller may see.
#[utoipa::path(get, path = "/v1/tenants", responses((status = 200, body = [Tenant]), (status = 401, body = ErrorBody)))]
async fn list_tenants(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
) -> ApiResult<Json<Vec<Tenant>>> {
    Ok(Json(s.list_tenants(&c).await?))
}

/// One tenant.
#[utoipa::path(get, path = "/v1/tenants/{id}", params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody)))]
async fn get_tenant(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(s.get_tenant(&c, &id).await?))
}

/// Create a folder at a tenant's root or in a folder.
#[utoipa::path(post, path = "/v1/folders", request_body = CreateFolder,
    responses((status = 201, body = Folder), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_folder(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateFolder>,
) -> ApiResult<(StatusCode, Json<Folder>)> {
    Ok((StatusCode::CREATED, Json(s.create_folder(&c, req).await?)))
}

/// Query of `GET /v1/folders` and `GET /v1/accounts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct TenantParams {
    /// The tenant (default: the caller's for folders, all for accounts).
    tenant: Option<String>,
}

/// Folders of a tenant the caller may see.
#[utoipa::path(get, path = "/v1/folders", params(TenantParams),
    responses((status = 200, body = [Folder]), (status = 404, body = ErrorBody)))]
async fn list_folders(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    q: Result<Query<TenantParams>, QueryRejection>,
) -> ApiResult<Json<Vec<Folder>>> {
    let q = query(q, "tenant=ID")?;
    Ok(Json(s.list_folders(&c, q.tenant.as_deref()).await?))
}

/// One folder.
#[utoipa::path(get, path = "/v1/folders/{id}", params(("id" = String, Path, description = "folder id")),
    responses((status = 200, body = Folder), (status = 404, body = ErrorBody)))]
async fn get_folder(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Folder>> {
    Ok(Json(s.get_folder(&c, &id).await?))
}

/// Delete an empty folder.
#[utoipa::path(delete, path = "/v1/folders/{id}", params(("id" = String, Path, description = "folder id")),
    responses((status = 200, body = Folder), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_folder(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Folder>> {
    Ok(Json(s.delete_folder(&c, &id).await?))
}

/// Create an account at a tenant's root or in a folder.
#[utoipa::path(post, path = "/v1/accounts", request_body = CreateAccount,
    responses((status = 201, body = Account), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_account(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateAccount>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    Ok((StatusCode::CREATED, Json(s.create_account(&c, req).await?)))
}

/// Accounts the caller may see.
#[utoipa::path(get, path = "/v1/accounts", params(TenantParams),
    responses((status = 200, body = [Account]), (status = 401, body = ErrorBody)))]
async fn list_accounts(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    q: Result<Query<TenantParams>, QueryRejection>,
) -> ApiResult<Json<Vec<Account>>> {
    let q = query(q, "tenant=ID")?;
    Ok(Json(s.list_accounts(&c, q.tenant.as_deref()).await?))
}

/// One account.
#[utoipa::path(get, path = "/v1/accounts/{id}", params(("id" = String, Path, description = "account id")),
    responses((status = 200, body = Account), (status = 404, body = ErrorBody)))]
async fn get_account(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Account>> {
    Ok(Json(s.get_account(&c, &id).await?))
}

/// Move an account to another folder of its tenant, or its root.
#[utoipa::path(post, path = "/v1/accounts/{id}/move", params(("id" = String, Path, description = "account id")), request_body = MoveAccount,
    responses((status = 200, body = Account), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn move_account(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MoveAccount>,
) -> ApiResult<Json<Account>> {
    Ok(Json(
        s.move_account(&c, &id, req.folder_id.as_deref()).await?,
    ))
}

/// Create a user or service principal.
#[utoipa::path(post, path = "/v1/principals", request_body = CreatePrincipal,
    responses((status = 201, body = Principal), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_principal(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreatePrincipal>,
) -> ApiResult<(StatusCode, Json<Principal>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_principal(&c, req).await?),
    ))
}

/// Query of `GET /v1/principals`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct AccountParams {
    /// The account (default: the caller's).
    account: Option<String>,
}

/// Principals of an account the caller may see.
#[utoipa::path(get, path = "/v1/principals", params(AccountParams),
    responses((status = 200, body = [Principal]), (status = 404, body = ErrorBody)))]
async fn list_principals(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    q: Result<Query<AccountParams>, QueryRejection>,
) -> ApiResult<Json<Vec<Principal>>> {
    let q = query(q, "account=ID")?;
    Ok(Json(s.list_principals(&c, q.account.as_deref()).await?))
}

/// One principal.
#[utoipa::path(get, path = "/v1/principals/{id}", params(("id" = String, Path, description = "principal id")),
    responses((status = 200, body = Principal), (status = 404, body = ErrorBody)))]
async fn get_principal(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Principal>> {
    Ok(Json(s.get_principal(&c, &id).await?))
}

/// Delete a principal with its tokens and role assignments.
#[utoipa::path(delete, path = "/v1/principals/{id}", params(("id" = String, Path, description = "principal id")),
    responses((status = 200, body = Principal), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_principal(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Principal>> {
    Ok(Json(s.delete_principal(&c, &id).await?))
}

/// Create an API token; its secret is in this response only.
#[utoipa::path(post, path = "/v1/principals/{id}/tokens", params(("id" = String, Path, description = "principal id")), request_body = CreateToken,
    responses((status = 201, body = NewToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_token(
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
#[utoipa::path(get, path = "/v1/principals/{id}/tokens", params(("id" = String, Path, description = "principal id")),
    responses((status = 200, body = [Token]), (status = 404, body = ErrorBody)))]
async fn list_tokens(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Token>>> {
    Ok(Json(s.list_tokens(&c, &id).await?))
}

/// Revoke a token: it stops working at once.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", params(("id" = String, Path, description = "token id")),
    responses((status = 200, body = Token), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Token>> {
    Ok(Json(s.revoke_token(&c, &id).await?))
}

/// Assign a role at a scope to a principal of any account or tenant.
#[utoipa::path(post, path = "/v1/role-assignments", request_body = CreateRoleAssignment,
    responses((status = 201, body = RoleAssignment), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_role_assignment(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<CreateRoleAssignment>,
) -> ApiResult<(StatusCode, Json<RoleAssignment>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_role_assignment(&c, req).await?),
    ))
}

/// Query of `GET /v1/role-assignments`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct AssignmentParams {
    /// Only this principal's.
    principal: Option<String>,
    /// Only those made at this scope (`/` or an id).
    scope: Option<String>,
}

/// Role assignments at a scope, of a principal, or (neither) the caller's.
#[utoipa::path(get, path = "/v1/role-assignments", params(AssignmentParams),
    responses((status = 200, body = [RoleAssignment]), (status = 404, body = ErrorBody)))]
async fn list_role_assignments(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    q: Result<Query<AssignmentParams>, QueryRejection>,
) -> ApiResult<Json<Vec<RoleAssignment>>> {
    let q = query(q, "principal=ID and scope=ID|/")?;
    Ok(Json(
        s.list_role_assignments(&c, q.principal.as_deref(), q.scope.as_deref())
            .await?,
    ))
}

/// Delete a role assignment.
#[utoipa::path(delete, path = "/v1/role-assignments/{id}", params(("id" = String, Path, description = "role assignment id")),
    responses((status = 200, body = RoleAssignment), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_role_assignment(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<RoleAssignment>> {
    Ok(Json(s.delete_role_assignment(&c, &id).await?))
}

/// Why a principal may or may not do an action on a resource.
#[utoipa::path(post, path = "/v1/iam/explain", request_body = ExplainRequest,
    responses((status = 200, body = Explanation), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn explain(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
    ApiJson(req): ApiJson<ExplainRequest>,
) -> ApiResult<Json<Explanation>> {
    Ok(Json(s.explain(&c, req).await?))
}
