//! Forwarding between nodes. Several nodes serve one deployment and any
//! node answers any request, but a disk is open on one node at a time:
//! detaching it, or snapshotting it (whose cached writes belong in the
//! snapshot), must run on the node that holds it. The service says so with
//! [`ServiceError::elsewhere`]; this layer then replays the request, with
//! the caller's own credentials, to that node's API once, and returns its
//! answer. A request that was already forwarded is never forwarded again,
//! so two nodes that disagree about a holder cannot loop.
//!
//! Replaying needs the body, so this layer reads it, but only for a caller
//! whose bearer token is valid (checked here, once; the `Auth` extractor
//! takes the outcome from the request's extensions), within the body
//! timeout, and up to [`MAX_BODY`]. A request without a valid token cannot
//! be forwarded (it is refused before any disk is looked at), so its body
//! is never read or buffered: 100 unauthenticated 2 MiB bodies cost the
//! server nothing but their connections.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;
use coffer_service::{Caller, ErrorCode, Service, ServiceError};

/// Header set on a forwarded request.
pub const FORWARDED: &str = "x-coffer-forwarded";

/// Largest request body the API accepts (and buffers for a replay).
pub const MAX_BODY: usize = 2 << 20;

/// Set on an error response whose request another node should answer.
#[derive(Clone, Debug)]
pub(crate) struct ForwardTo(pub String);

/// What the forwarding layer needs.
#[derive(Clone)]
pub(crate) struct Forwarder {
    /// The client that replays requests to other nodes.
    pub client: reqwest::Client,
    /// The service, to authenticate before reading a body.
    pub service: Arc<Service>,
    /// Time for a body to arrive.
    pub body_timeout: Duration,
}

/// The outcome of authenticating a request's bearer token, made once here.
#[derive(Clone)]
pub(crate) struct Authenticated(pub Result<Caller, ServiceError>);

/// The middleware: authenticate, buffer the body, run the request here,
/// and replay it to the node an error response names.
pub(crate) async fn forward(
    State(fwd): State<Forwarder>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::bearer)
        .map(str::to_string);
    let Some(token) = token else {
        // No credentials: nothing to forward, and the body stays unread.
        return next.run(req).await;
    };
    let caller = fwd.service.authenticate(&token).await;
    let valid = caller.is_ok();
    req.extensions_mut().insert(Authenticated(caller));
    if !valid {
        return next.run(req).await;
    }
    let already = req.headers().contains_key(FORWARDED);
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    // A body announced over the limit is refused before any of it is read
    // (or buffered), and the connection is closed rather than drained.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        let mut resp = ApiError(ServiceError::new(
            ErrorCode::BodyTooLarge,
            format!("the request body is over {MAX_BODY} bytes"),
        ))
        .into_response();
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return resp;
    }
    let (parts, body) = req.into_parts();
    let bytes =
        match tokio::time::timeout(fwd.body_timeout, axum::body::to_bytes(body, MAX_BODY)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                return ApiError(ServiceError::new(
                    ErrorCode::BodyTooLarge,
                    format!("the request body is over {MAX_BODY} bytes"),
                ))
                .into_response();
            }
            Err(_) => {
                let mut resp = ApiError(ServiceError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s of its headers: send it at once",
                    fwd.body_timeout.as_secs()
                ),
            ))
            .into_response();
                resp.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                return resp;
            }
        };
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    let Some(ForwardTo(url)) = resp.extensions().get::<ForwardTo>().cloned() else {
        return resp;
    };
    if already {
        return resp;
    }
    match replay(&fwd.client, &url, method, &uri, &headers, bytes).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(node = %url, error = %e, "cannot forward a request to the node holding the disk");
            resp
        }
    }
}

async fn replay(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, reqwest::Error> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = client
        .request(method, format!("{}{path}", base.trim_end_matches('/')))
        .header(FORWARDED, "1")
        .body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v.clone());
        }
    }
    let r = req.send().await?;
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = r.headers().get(header::CONTENT_TYPE).cloned();
    let body = r.bytes().await?;
    let mut out = (status, body).into_response();
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    out.headers_mut()
        .insert(FORWARDED, HeaderValue::from_static("1"));
    Ok(out)
}
