//! The service itself: health, the OpenAPI document, the caller (and its
//! one-time console sign-in links), regions and the built-in roles.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use coffer_service::Service;
use coffer_service::model::{ConsoleLink, Region, RoleDefinition, WhoAmI};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ApiResult, Auth};

/// Path of the OpenAPI document.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the server answers.
    pub status: String,
}

/// Whether the server answers (no token needed).
#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// This document (no token needed).
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(crate::openapi())
}

/// The calling principal.
#[utoipa::path(get, path = "/v1/whoami", tag = "iam", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(State(s): State<Arc<Service>>, Auth(c): Auth) -> ApiResult<Json<WhoAmI>> {
    Ok(Json(s.whoami(&c).await?))
}

/// A one-time link that signs a browser in to the web console as the
/// caller: open `path` on this address within 5 minutes. It opens one
/// session (8 hours at most, never past the caller's token).
#[utoipa::path(post, path = "/v1/console/links", tag = "iam",
    responses((status = 201, body = ConsoleLink)))]
pub async fn create_console_link(
    State(s): State<Arc<Service>>,
    Auth(c): Auth,
) -> ApiResult<(StatusCode, Json<ConsoleLink>)> {
    let t = s.sign_in_link(&c).await?;
    Ok((
        StatusCode::CREATED,
        Json(ConsoleLink {
            path: format!("/console/sign-in?code={}", t.secret.as_str()),
            expires_at: t.token.expires_at.clone().unwrap_or_default(),
        }),
    ))
}

/// Regions and zones of this deployment.
#[utoipa::path(get, path = "/v1/regions", tag = "service", responses((status = 200, body = [Region])))]
pub async fn regions(State(s): State<Arc<Service>>, Auth(_c): Auth) -> Json<Vec<Region>> {
    Json(s.regions())
}

/// The built-in roles and the actions each grants.
#[utoipa::path(get, path = "/v1/roles", tag = "iam", responses((status = 200, body = [RoleDefinition])))]
pub async fn list_roles(
    State(s): State<Arc<Service>>,
    Auth(_c): Auth,
) -> Json<Vec<RoleDefinition>> {
    Json(s.roles())
}
