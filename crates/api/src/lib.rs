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
use axum::routing::{get, post};
use axum::{Json, Router};
use coffer_service::model::{
    Attachment, CreateDisk, CreateSnapshot, Disk, Encryption, FsckFinding, FsckReport, GcReport,
    Node, Region, ResizeDisk, Snapshot, WhoAmI,
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
          create_snapshot, list_snapshots, get_snapshot, delete_snapshot, fsck, admin_gc, list_nodes),
    components(schemas(Disk, Snapshot, Attachment, Encryption, CreateDisk, CreateSnapshot, ResizeDisk, Region, WhoAmI, FsckReport, FsckFinding, GcReport, Node, ErrorBody, ErrorDetail)),
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

/// The API's router over `service`.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/v1/whoami", get(whoami))
        .route("/v1/regions", get(regions))
        .route("/v1/disks", post(create_disk).get(list_disks))
        .route("/v1/disks/{id}", get(get_disk).delete(delete_disk))
        .route("/v1/disks/{id}/resize", post(resize_disk))
        .route("/v1/disks/{id}/attach", post(attach_disk))
        .route("/v1/disks/{id}/detach", post(detach_disk))
        .route("/v1/snapshots", post(create_snapshot).get(list_snapshots))
        .route("/v1/admin/fsck", get(fsck))
        .route("/v1/admin/gc", post(admin_gc))
        .route("/v1/admin/nodes", get(list_nodes))
        .route(
            "/v1/snapshots/{id}",
            get(get_snapshot).delete(delete_snapshot),
        )
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
async fn whoami(State(s): State<Arc<Service>>, Auth(c): Auth) -> Json<WhoAmI> {
    Json(s.whoami(&c))
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
