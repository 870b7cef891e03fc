//! The route table: the one place a route is declared. Each entry names
//! the route's policy, the error codes it may answer besides the common
//! ones, and its handler; the handler's `#[utoipa::path]` attribute gives
//! the method, the path, the parameters, the request body and the success
//! response. From this table come the router (so no route is served that is
//! not in it), the OpenAPI document (each operation lists its policy as
//! `x-coffer-policy` and its error codes per status), and `routes`, which
//! the authorization matrix test walks.
//!
//! A route cannot be added without a policy: [`RouteTable::add`] takes one.
//!
//! ```compile_fail
//! // No policy: does not compile.
//! # use coffer_api::table::RouteTable;
//! # fn f(t: RouteTable, r: coffer_api::table::Handler) -> RouteTable {
//! t.add(&[], r)
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_iam::Action;
use coffer_service::Service;
use coffer_wire::ErrorCode;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

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
    /// An export's pull token, and no principal's token: the routes that
    /// another deployment reads one export through (`/v1/pull/…`).
    PullToken,
}

impl Policy {
    /// The policy as the OpenAPI document shows it (`x-coffer-policy`).
    pub fn label(self) -> String {
        match self {
            Policy::Public => "public".into(),
            Policy::Authenticated => "authenticated".into(),
            Policy::Action(a) => a.as_str().into(),
            Policy::PullToken => "pull-token".into(),
        }
    }
}

/// One route of the API and its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// HTTP method, e.g. `GET`.
    pub method: &'static str,
    /// Path template, e.g. `/v1/disks/{id}`.
    pub path: String,
    /// Its policy.
    pub policy: Policy,
    /// The error codes it may answer.
    pub errors: Vec<ErrorCode>,
}

/// A handler with its OpenAPI operation, as `utoipa_axum::routes!` makes it.
pub type Handler = UtoipaMethodRouter<Arc<Service>>;

/// The table under construction.
pub struct RouteTable {
    router: OpenApiRouter<Arc<Service>>,
    specs: Vec<RouteSpec>,
}

/// Errors every authenticated route may answer.
const AUTHENTICATED: &[ErrorCode] = &[ErrorCode::Unauthenticated, ErrorCode::InternalError];

impl RouteTable {
    /// An empty table over the document `doc` (info, components).
    pub fn new(doc: utoipa::openapi::OpenApi) -> Self {
        Self {
            router: OpenApiRouter::with_openapi(doc),
            specs: vec![],
        }
    }

    /// Add the routes of `handler` under `policy`; `errors` are the codes
    /// it may answer beyond those that follow from its policy and inputs
    /// (401 and 500 for every authenticated route, 403 for an action, 400
    /// for a body or query that does not decode).
    pub fn add(mut self, policy: Policy, errors: &[ErrorCode], handler: Handler) -> Self {
        let (schemas, mut paths, method_router) = handler;
        for (path, item) in paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                let mut codes: Vec<ErrorCode> = errors.to_vec();
                if policy != Policy::Public {
                    codes.extend(AUTHENTICATED);
                }
                if matches!(policy, Policy::Action(_)) {
                    codes.push(ErrorCode::AuthorizationFailed);
                }
                if op.request_body.is_some() {
                    codes.extend([
                        ErrorCode::InvalidBody,
                        ErrorCode::MalformedJson,
                        ErrorCode::UnsupportedMediaType,
                        ErrorCode::BodyTooLarge,
                    ]);
                }
                let has_query =
                    op.parameters.iter().flatten().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    });
                if has_query {
                    codes.push(ErrorCode::InvalidQuery);
                }
                if path.contains('{') {
                    codes.push(ErrorCode::InvalidId);
                }
                codes.sort_by_key(|c| (c.status(), c.as_str()));
                codes.dedup();
                document_errors(op, &codes);
                op.extensions
                    .get_or_insert_with(Default::default)
                    .insert("x-coffer-policy".into(), policy.label().into());
                self.specs.push(RouteSpec {
                    method,
                    path: path.clone(),
                    policy,
                    errors: codes,
                });
            }
        }
        self.router = self.router.routes((schemas, paths, method_router));
        self
    }

    /// The router and the document, and the table's routes.
    pub fn finish(
        self,
    ) -> (
        axum::Router<Arc<Service>>,
        utoipa::openapi::OpenApi,
        Vec<RouteSpec>,
    ) {
        let (router, doc) = self.router.split_for_parts();
        (router, doc, self.specs)
    }
}

/// Each operation of a path item with its method.
fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("GET", item.get.as_mut()),
        ("PUT", item.put.as_mut()),
        ("POST", item.post.as_mut()),
        ("DELETE", item.delete.as_mut()),
        ("PATCH", item.patch.as_mut()),
        ("HEAD", item.head.as_mut()),
        ("OPTIONS", item.options.as_mut()),
        ("TRACE", item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// One response per error status, its description listing the codes.
fn document_errors(op: &mut Operation, codes: &[ErrorCode]) {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for c in codes {
        by_status.entry(c.status()).or_default().push(*c);
    }
    for (status, codes) in by_status {
        let text = codes
            .iter()
            .map(|c| format!("`{c}`: {}", c.doc()))
            .collect::<Vec<_>>()
            .join("\n\n");
        let resp = ResponseBuilder::new()
            .description(text)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build();
        op.responses
            .responses
            .insert(status.to_string(), RefOr::T(resp));
    }
}
