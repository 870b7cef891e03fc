//! The HTTP JSON API. It owns routing, authentication of requests (bearer
//! tokens), decoding of request bodies and queries, the one mapping from
//! error codes to HTTP statuses, and the OpenAPI document served at
//! `/openapi.json`. Every rule lives in the service layer; handlers only
//! translate. Requests about a disk another node holds are forwarded to it
//! (`forward`).
//!
//! Routes are declared once, in [`table`]; handlers live in [`routes`](mod@routes), one
//! module per resource kind.

mod forward;
pub mod listener;
pub mod remote;
pub mod routes;
pub mod table;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use coffer_service::{Caller, ErrorCode, Service, ServiceError};
pub use coffer_wire::{ErrorBody, ErrorDetail};
pub use listener::{Limits, serve};
pub use remote::HttpRemotes;
pub use table::{Policy, RouteSpec};
use utoipa::OpenApi;

/// A service error as an HTTP response: the status comes from the code.
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

/// The HTTP status of an error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code);
        let forward_to = self.0.forward_to.clone();
        let mut resp = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.0.code,
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

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;

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
                        ErrorCode::UnsupportedMediaType,
                        "send the body as JSON with Content-Type: application/json".to_string(),
                    ),
                    JsonRejection::JsonSyntaxError(e) => (
                        ErrorCode::MalformedJson,
                        format!("the body is not valid JSON: {}", e.body_text()),
                    ),
                    JsonRejection::JsonDataError(e) => (
                        ErrorCode::InvalidBody,
                        format!(
                            "the body does not match the request schema: {}",
                            e.body_text()
                        ),
                    ),
                    other if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => (
                        ErrorCode::BodyTooLarge,
                        "the request body is over the API's size limit: no request of this API needs that much".to_string(),
                    ),
                    other => (ErrorCode::InvalidBody, other.body_text()),
                };
                Err(ApiError(ServiceError::new(code, msg)))
            }
        }
    }
}

/// A query string whose decoding errors are API errors (400 naming the
/// parameters the route takes, from its declared type).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + utoipa::IntoParams> FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let q: Result<Query<T>, QueryRejection> = Query::from_request_parts(parts, state).await;
        q.map(|Query(v)| Self(v)).map_err(|e| {
            let takes = T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ");
            ApiError(ServiceError::new(
                ErrorCode::InvalidQuery,
                format!("{}: this route takes {takes}", e.body_text()),
            ))
        })
    }
}

/// The authenticated caller of a request.
pub struct Auth(pub Caller);

/// The token of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive (RFC 9110 §11.1).
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

impl FromRequestParts<Arc<Service>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &Arc<Service>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(forward::Authenticated(done)) = parts.extensions.remove() {
            return Ok(Self(done?));
        }
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .unwrap_or("");
        Ok(Self(service.authenticate(token).await?))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Coffer API", description = "Encrypted block storage: disks, snapshots, attachments, and the organisation and access around them. Authenticate with `Authorization: Bearer <token>`. Lists are paginated: pass a page's `next` back as `next=`. Errors are `{\"error\": {\"code\", \"message\"}}`; each operation lists its codes per status."),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
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

/// The OpenAPI document (built once).
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| routes::table(ApiDoc::openapi()).finish().1)
}

/// Every route of the API with its policy, from the table the router is
/// built from.
pub fn routes() -> Vec<RouteSpec> {
    routes::table(ApiDoc::openapi()).finish().2
}

/// The API's router over `service`; `limits` gives its body timeout (the
/// listener, [`serve`], applies the rest). Requests forwarded to other
/// nodes over TLS verify them against `peer_ca` (PEM, the deployment CA)
/// when given, else against the system's roots.
pub fn router(service: Arc<Service>, limits: &Limits, peer_ca: Option<&str>) -> Router {
    let mut client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(600));
    if let Some(ca) = peer_ca.and_then(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).ok()) {
        client = client.tls_certs_only([ca]);
    }
    let (router, _, _) = routes::table(ApiDoc::openapi()).finish();
    router
        .fallback(|| async {
            ApiError(ServiceError::new(
                ErrorCode::RouteNotFound,
                "no such API route: see /openapi.json",
            ))
        })
        .method_not_allowed_fallback(|| async {
            ApiError(ServiceError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method: see /openapi.json",
            ))
        })
        .layer(axum::middleware::from_fn_with_state(
            forward::Forwarder {
                // Callers' tokens go only to the node itself: no proxy, no
                // redirects.
                client: client.build().expect("HTTP client"),
                service: service.clone(),
                body_timeout: limits.body_timeout,
            },
            forward::forward,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }
}
