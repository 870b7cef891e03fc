//! Access: resource shares (mine and shared with me; create one, add and
//! remove its resources and principals, delete it after typing its name),
//! invitations to accept or reject, role assignments (the caller's and
//! those at a scope; assign a role, remove an assignment after ticking a
//! confirmation), the built-in roles, and a form over `iam explain` (why a
//! principal may or may not do an action on a resource).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use coffer_service::ServiceError;
use coffer_types::PrincipalScope;
use coffer_wire::{
    CreateRoleAssignment, CreateShare, ExplainRequest, ListParams, RoleAssignment, RoleDefinition,
    Share, UpdateShare,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{filled, first_page};
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// A table of shares; `own`: the caller's account's (linked to their
/// pages), else shares with the caller (their resources listed instead:
/// a share's page is its owner's).
fn share_table(shares: &[Share], caption: &str, own: bool) -> Markup {
    html! {
        @if shares.is_empty() {
            p.empty { "None." }
        } @else {
            table {
                caption.visually-hidden { (caption) }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Owner account" } th scope="col" { "Kind" } th scope="col" { "Resources" } th scope="col" { "Principals" } th scope="col" { "Created" } } }
                tbody {
                    @for sh in shares {
                        tr {
                            td { @if own { a href={ "/console/shares/" (sh.id) } { (sh.name) } } @else { (sh.name) } }
                            td { code { (sh.id) } }
                            td { code { (sh.account_id) } }
                            td { (sh.kind) }
                            td { @if own { (sh.resources.len()) } @else { @for r in &sh.resources { (resource_link(r)) " " } } }
                            td { (sh.principals.len()) }
                            td { (when(&sh.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/shares`: my account's shares, shares with me, and my
/// invitations.
pub async fn shares(State(c): State<Console>, s: Session) -> Response {
    let body = async {
        let svc = &c.service;
        let mine = svc.list_shares(&s.caller, first_page()).await?;
        let with_me = svc
            .list_shares(
                &s.caller,
                ListParams {
                    shared: Some("true".into()),
                    ..first_page()
                },
            )
            .await?;
        let invitations = svc.list_invitations(&s.caller, None).await?;
        Ok::<_, ServiceError>(html! {
            h1 { "Shares" }
            section aria-labelledby="inv-h" {
                h2 #inv-h { "Invitations to my account" }
                @if invitations.is_empty() {
                    p.empty { "No invitations." }
                } @else {
                    table {
                        caption.visually-hidden { "Invitations" }
                        thead { tr { th scope="col" { "Share" } th scope="col" { "From account" } th scope="col" { "Status" } th scope="col" { "Sent" } th scope="col" { "Answer" } } }
                        tbody {
                            @for i in &invitations {
                                tr {
                                    td { (i.share_name) " " code { (i.share_id) } }
                                    td { code { (i.sender_account_id) } }
                                    td { span.invitation-status { (i.status) } }
                                    td { (when(&i.created_at)) }
                                    td {
                                        @if i.status.to_string() == "pending" {
                                            div.actions {
                                                form method="post" action={ "/console/invitations/" (i.id) "/accept" } {
                                                    (csrf(&s))
                                                    button type="submit" aria-label={ "Accept the share " (i.share_name) } { "Accept" }
                                                }
                                                form method="post" action={ "/console/invitations/" (i.id) "/reject" } {
                                                    (csrf(&s))
                                                    button.danger type="submit" aria-label={ "Reject the share " (i.share_name) } { "Reject" }
                                                }
                                            }
                                        } @else { "—" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="mine-h" {
                h2 #mine-h { "My account's shares" }
                (share_table(&mine.items, "My account's shares", true))
            }
            section aria-labelledby="create-share-h" {
                h2 #create-share-h { "Create a share" }
                p.hint { "Share snapshots and images with accounts, folders or a tenant. Accounts of another tenant are invited, and see nothing until they accept. Add resources and principals now or on the share's page." }
                form.stack method="post" action="/console/shares" {
                    (csrf(&s))
                    label for="sh-name" { "Name" }
                    input #sh-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}" aria-describedby="sh-name-hint";
                    span.hint #sh-name-hint { "1–80 letters, digits, ., _ or -" }
                    label for="sh-scope" { "Principals allowed" }
                    select #sh-scope name="principal_scope" {
                        option value="any" { "any: accounts anywhere (other tenants' are invited)" }
                        option value="tenant" { "tenant: only my tenant, its folders and accounts" }
                    }
                    label for="sh-resources" { "Resources (optional)" }
                    input #sh-resources type="text" name="resources" placeholder="snap-… img-…" aria-describedby="ids-hint";
                    label for="sh-principals" { "Principals (optional)" }
                    input #sh-principals type="text" name="principals" placeholder="acct-… fld-… tnt-…" aria-describedby="ids-hint";
                    span.hint #ids-hint { "Ids, separated by spaces or commas." }
                    label for="sh-account" { "Owner account (optional)" }
                    input #sh-account type="text" name="account_id" placeholder=(s.caller.principal.account_id.to_string());
                    button #create-share type="submit" { "Create share" }
                }
            }
            section aria-labelledby="withme-h" {
                h2 #withme-h { "Shared with me" }
                (share_table(&with_me.items, "Shares with me", false))
            }
        })
    }
    .await;
    view::page(&s, "shares", "Shares", body)
}

/// `GET /console/shares/{id}`: its facts, its resources and principals
/// (each with a remove button), the forms that add some, and delete.
pub async fn share(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let body = async {
        let sh = c.service.get_share(&s.caller, &id).await?;
        let update = format!("/console/shares/{}/update", sh.id);
        Ok::<_, ServiceError>(html! {
            h1 { "Share " (sh.name) }
            p { a href="/console/shares" { "All shares" } }
            dl.facts {
                dt { "Id" } dd { code #share-id { (sh.id) } }
                dt { "Owner account" } dd { code { (sh.account_id) } }
                dt { "Region" } dd { (sh.region) }
                dt { "Kind" } dd { (sh.kind) }
                dt { "Principal scope" } dd { (sh.principal_scope) }
                dt { "Created" } dd { (when(&sh.created_at)) }
            }
            section aria-labelledby="sh-res-h" {
                h2 #sh-res-h { "Resources" }
                @if sh.resources.is_empty() {
                    p.empty { "None yet." }
                } @else {
                    table #share-resources {
                        caption.visually-hidden { "Resources of the share" }
                        thead { tr { th scope="col" { "Resource" } th scope="col" { "Remove" } } }
                        tbody {
                            @for r in &sh.resources {
                                tr {
                                    td { (resource_link(r)) }
                                    td {
                                        form method="post" action=(update) {
                                            (csrf(&s))
                                            input type="hidden" name="remove_resources" value=(r);
                                            button.danger type="submit" aria-label={ "Remove " (r) " from the share" } { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form.inline method="post" action=(update) {
                    (csrf(&s))
                    label for="add-resources" { "Add resources" }
                    input #add-resources type="text" name="add_resources" required placeholder="snap-… img-…" aria-describedby="add-ids-hint";
                    button #add-resources-go type="submit" { "Add" }
                }
            }
            section aria-labelledby="sh-prn-h" {
                h2 #sh-prn-h { "Principals" }
                @if sh.principals.is_empty() {
                    p.empty { "None yet." }
                } @else {
                    table #share-principals {
                        caption.visually-hidden { "Principals of the share" }
                        thead { tr { th scope="col" { "Principal" } th scope="col" { "Status" } th scope="col" { "Invitation" } th scope="col" { "Remove" } } }
                        tbody {
                            @for p in &sh.principals {
                                tr {
                                    td { code { (p.principal) } }
                                    td { span.share-status { (p.status) } }
                                    td { @if let Some(i) = &p.invitation_id { code { (i) } } @else { "—" } }
                                    td {
                                        form method="post" action=(update) {
                                            (csrf(&s))
                                            input type="hidden" name="remove_principals" value=(p.principal);
                                            button.danger type="submit" aria-label={ "Remove " (p.principal) " from the share" } { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form.inline method="post" action=(update) {
                    (csrf(&s))
                    label for="add-principals" { "Add principals" }
                    input #add-principals type="text" name="add_principals" required placeholder="acct-… fld-… tnt-…" aria-describedby="add-ids-hint";
                    button #add-principals-go type="submit" { "Add" }
                }
                p.hint #add-ids-hint { "Ids, separated by spaces or commas. An account of another tenant is invited: it sees the resources once it accepts." }
            }
            section.danger aria-labelledby="delete-sh-h" {
                h2 #delete-sh-h { "Delete this share" }
                p { "Its principals lose access to its resources (what they made from them stays). Type the share's name to confirm." }
                (view::confirm_by_name(&s, &format!("/console/shares/{}/delete", sh.id), "confirm", "Share name", Some("delete-share"), "Delete share"))
            }
        })
    }
    .await;
    view::page(&s, "shares", "Share", body)
}

/// Ids typed into one field, separated by spaces or commas.
fn ids(typed: &str) -> Vec<String> {
    typed
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// The create-share form.
#[derive(Deserialize)]
pub struct CreateShareForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    principal_scope: String,
    #[serde(default)]
    resources: String,
    #[serde(default)]
    principals: String,
    #[serde(default)]
    account_id: String,
}

/// `POST /console/shares`: then to the new share's page.
pub async fn create_share(State(c): State<Console>, p: Posted<CreateShareForm>) -> Response {
    let s = &p.session;
    let f = &p.form;
    let principal_scope = match filled(&f.principal_scope) {
        None => None,
        Some(w) => match w.parse::<PrincipalScope>() {
            Ok(ps) => Some(ps),
            Err(e) => {
                return view::refusal(
                    Some(s),
                    StatusCode::BAD_REQUEST,
                    "Not created",
                    &e.to_string(),
                );
            }
        },
    };
    let req = CreateShare {
        name: f.name.trim().to_string(),
        principal_scope,
        account_id: filled(&f.account_id),
        resources: ids(&f.resources),
        principals: ids(&f.principals),
    };
    view::go(s, c.service.create_share(&s.caller, req).await, |sh| {
        format!("/console/shares/{}", sh.id)
    })
}

/// The update form (each field: ids separated by spaces or commas).
#[derive(Deserialize)]
pub struct UpdateShareForm {
    #[serde(default)]
    add_resources: String,
    #[serde(default)]
    remove_resources: String,
    #[serde(default)]
    add_principals: String,
    #[serde(default)]
    remove_principals: String,
}

/// `POST /console/shares/{id}/update`: add or remove resources and
/// principals, then back to the share.
pub async fn update_share(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<UpdateShareForm>,
) -> Response {
    let s = &p.session;
    // A share the caller may not see is NotFound before anything else.
    if let Err(e) = c.service.get_share(&s.caller, &id).await {
        return view::error_page(Some(s), &e);
    }
    let f = &p.form;
    let req = UpdateShare {
        add_resources: ids(&f.add_resources),
        remove_resources: ids(&f.remove_resources),
        add_principals: ids(&f.add_principals),
        remove_principals: ids(&f.remove_principals),
    };
    if req.add_resources.is_empty()
        && req.remove_resources.is_empty()
        && req.add_principals.is_empty()
        && req.remove_principals.is_empty()
    {
        return view::refusal(
            Some(s),
            StatusCode::BAD_REQUEST,
            "Nothing to change",
            "Type the ids of the resources or principals to add.",
        );
    }
    view::go(s, c.service.update_share(&s.caller, &id, req).await, |sh| {
        format!("/console/shares/{}", sh.id)
    })
}

/// The delete form: the share's name, typed.
#[derive(Deserialize)]
pub struct DeleteShareForm {
    #[serde(default)]
    confirm: String,
}

/// `POST /console/shares/{id}/delete`: only when the name typed is the
/// share's.
pub async fn delete_share(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<DeleteShareForm>,
) -> Response {
    let s = &p.session;
    if let Err(refused) = view::named(
        s,
        c.service.get_share(&s.caller, &id).await,
        |sh| sh.name.as_str(),
        &p.form.confirm,
        ("Not deleted", "delete this share"),
    ) {
        return *refused;
    }
    view::go(s, c.service.delete_share(&s.caller, &id).await, |_| {
        "/console/shares".to_string()
    })
}

/// A link to a resource's page where the console has one.
fn resource_link(id: &str) -> Markup {
    let page = match id.split('-').next() {
        Some("snap") => Some("snapshots"),
        Some("img") => Some("images"),
        Some("disk") => Some("disks"),
        _ => None,
    };
    html! {
        @if let Some(p) = page { a href={ "/console/" (p) "/" (id) } { code { (id) } } } @else { code { (id) } }
    }
}

/// `POST /console/invitations/{id}/accept`.
pub async fn accept(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    answer(c, id, p, true).await
}

/// `POST /console/invitations/{id}/reject`.
pub async fn reject(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    answer(c, id, p, false).await
}

async fn answer(
    c: Console,
    id: String,
    p: Posted<BTreeMap<String, String>>,
    accept: bool,
) -> Response {
    view::go(
        &p.session,
        c.service
            .answer_invitation(&p.session.caller, &id, accept)
            .await,
        |_| "/console/shares".to_string(),
    )
}

/// The access page's query (GET forms: they change nothing): the
/// explain form's fields, and a scope whose assignments to list.
#[derive(Deserialize, Default)]
pub struct ExplainForm {
    #[serde(default)]
    principal_id: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    resource_id: String,
    /// List the role assignments made at this scope.
    #[serde(default)]
    scope: String,
}

/// Whether a checkbox confirming a change was ticked (browsers send a
/// ticked box's value, and nothing for one left empty).
pub(crate) fn confirmed(form: &BTreeMap<String, String>) -> bool {
    form.get("confirm").is_some_and(|v| !v.trim().is_empty())
}

/// A table of role assignments, each with a remove button behind a
/// confirmation to tick. `caption` names the table, `key` keeps its
/// controls' ids apart from another table's on the page, and `back` says
/// where a removal returns (see [`after`]).
pub(crate) fn assignment_table(
    s: &Session,
    items: &[RoleAssignment],
    caption: &str,
    key: &str,
    back: &str,
) -> Markup {
    let me = s.caller.principal.id.to_string();
    html! {
        @if items.is_empty() {
            p.empty { "None." }
        } @else {
            table.assignments {
                caption.visually-hidden { (caption) }
                thead { tr { th scope="col" { "Role" } th scope="col" { "Scope" } th scope="col" { "Principal" } th scope="col" { "Id" } th scope="col" { "Since" } th scope="col" { "Remove" } } }
                tbody {
                    @for a in items {
                        tr {
                            td.role { (a.role) }
                            td { code { (a.scope) } }
                            td {
                                a href={ "/console/principals/" (a.principal_id) } { code { (a.principal_id) } }
                                @if a.principal_id == me { " (me)" }
                            }
                            td { code { (a.id) } }
                            td { (when(&a.created_at)) }
                            td {
                                form.inline method="post" action={ "/console/role-assignments/" (a.id) "/delete" } {
                                    (csrf(s))
                                    input type="hidden" name="back" value=(back);
                                    input id={ (key) "-ok-" (a.id) } type="checkbox" name="confirm" value="yes" required;
                                    label for={ (key) "-ok-" (a.id) } { "Confirm" }
                                    button.danger type="submit" aria-label={ "Remove the role " (a.role) " at " (a.scope) " from " (a.principal_id) } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The form that assigns a role: to `principal` (fixed) or to a principal
/// typed in; `labelledby` is the id of the heading naming it.
pub(crate) fn role_form(
    s: &Session,
    roles: &[RoleDefinition],
    principal: Option<&str>,
    labelledby: &str,
) -> Markup {
    let pre = if principal.is_some() { "pa" } else { "ra" };
    html! {
        form.stack method="post" action="/console/role-assignments" aria-labelledby=(labelledby) {
            (csrf(s))
            @if let Some(p) = principal {
                input type="hidden" name="principal_id" value=(p);
                input type="hidden" name="back" value="principal";
            } @else {
                label for={ (pre) "-principal" } { "Principal" }
                input id={ (pre) "-principal" } type="text" name="principal_id" required placeholder="prn-…" aria-describedby={ (pre) "-principal-hint" };
                span.hint id={ (pre) "-principal-hint" } { "The principal's id: of any account or tenant." }
            }
            label for={ (pre) "-role" } { "Role" }
            select id={ (pre) "-role" } name="role" required {
                @for r in roles { option value=(r.name) { (r.name) " — " (r.description) } }
            }
            label for={ (pre) "-scope" } { "Scope" }
            input id={ (pre) "-scope" } type="text" name="scope" required placeholder="/ or tnt-… fld-… acct-… disk-… snap-… key-…" aria-describedby={ (pre) "-scope-hint" };
            span.hint id={ (pre) "-scope-hint" } { code { "/" } " (the whole deployment) or the id of a tenant, folder, account, disk, snapshot, image or key: the role applies there and below." }
            button id={ (pre) "-assign" } type="submit" { "Assign role" }
        }
    }
}

/// `GET /console/access`: my role assignments, those at a scope, the form
/// that assigns a role, the roles, and the explain form with its answer.
pub async fn access(
    State(c): State<Console>,
    s: Session,
    Query(f): Query<ExplainForm>,
) -> Response {
    let body = async {
        let svc = &c.service;
        let me = s.caller.principal.id.to_string();
        let mine = svc
            .list_role_assignments(
                &s.caller,
                ListParams {
                    principal: Some(me.clone()),
                    ..first_page()
                },
            )
            .await?;
        let at_scope = match filled(&f.scope) {
            None => None,
            Some(scope) => Some(
                svc.list_role_assignments(
                    &s.caller,
                    ListParams {
                        scope: Some(scope),
                        ..first_page()
                    },
                )
                .await,
            ),
        };
        let roles = svc.roles();
        let explained = if f.action.trim().is_empty() || f.resource_id.trim().is_empty() {
            None
        } else {
            Some(
                svc.explain(
                    &s.caller,
                    ExplainRequest {
                        principal_id: filled(&f.principal_id),
                        action: f.action.trim().to_string(),
                        resource_id: f.resource_id.trim().to_string(),
                    },
                )
                .await,
            )
        };
        Ok::<_, ServiceError>(html! {
            h1 { "Access" }
            p { a #to-principals href="/console/principals" { "Principals and their tokens" } }
            section aria-labelledby="roles-h" {
                h2 #roles-h { "My role assignments" }
                @if mine.items.is_empty() {
                    p.empty { "None: you act only where others gave you access." }
                } @else {
                    (assignment_table(&s, &mine.items, "My role assignments", "mine", ""))
                }
            }
            section #at-scope aria-labelledby="scope-h" {
                h2 #scope-h { "Role assignments at a scope" }
                form.filters method="get" action="/console/access" role="search" aria-label="Role assignments at a scope" {
                    label { "Scope " input #ra-list-scope type="text" name="scope" placeholder="/ or acct-…" value=(f.scope); }
                    button #list-scope type="submit" { "List" }
                }
                @match &at_scope {
                    None => {}
                    Some(Ok(page)) => {
                        (assignment_table(&s, &page.items, "Role assignments at the scope", "scope", "scope"))
                    }
                    Some(Err(e)) => {
                        div.alert role="alert" { p { strong { (format!("{:?}", e.code)) } ": " (e.message) } }
                    }
                }
            }
            section aria-labelledby="assign-h" {
                h2 #assign-h { "Assign a role" }
                (role_form(&s, &roles, None, "assign-h"))
            }
            section aria-labelledby="role-defs-h" {
                h2 #role-defs-h { "Roles" }
                table #roles {
                    caption.visually-hidden { "The built-in roles" }
                    thead { tr { th scope="col" { "Role" } th scope="col" { "What it is for" } th scope="col" { "Actions" } } }
                    tbody {
                        @for r in &roles {
                            tr {
                                td { (r.name) }
                                td { (r.description) }
                                td { details { summary { (r.actions.len()) " actions" } ul { @for a in &r.actions { li { code { (a) } } } } } }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="explain-h" {
                h2 #explain-h { "Explain a decision" }
                p.hint { "Why may (or may not) a principal do an action on a resource? The same answer as " code { "coffer iam explain" } "." }
                form.stack method="get" action="/console/access" {
                    label for="x-action" { "Action" }
                    input #x-action type="text" name="action" required placeholder="snapshots/use" value=(f.action);
                    label for="x-resource" { "Resource or scope" }
                    input #x-resource type="text" name="resource_id" required placeholder="snap-… or / or acct-…" value=(f.resource_id);
                    label for="x-principal" { "Principal (empty: me)" }
                    input #x-principal type="text" name="principal_id" placeholder=(me) value=(f.principal_id);
                    button #explain type="submit" { "Explain" }
                }
                @match &explained {
                    None => {}
                    Some(Ok(x)) => {
                        div #explanation class={ "explanation " (x.decision) } role="status" {
                            p { strong #decision { (x.decision) } " (HTTP " (x.status) "): " code { (x.principal_id) } " · " (x.action) " · " code { (x.resource_id) } }
                            ul { @for r in &x.reasons { li { (r) } } }
                            @if let Some(a) = &x.assignment_id { p { "Through assignment " code { (a) } "." } }
                        }
                    }
                    Some(Err(e)) => {
                        div.alert role="alert" { p { strong { (format!("{:?}", e.code)) } ": " (e.message) } }
                    }
                }
            }
        })
    }
    .await;
    view::page(&s, "access", "Access", body)
}

/// The assign-a-role form.
#[derive(Deserialize)]
pub struct AssignForm {
    #[serde(default)]
    principal_id: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    scope: String,
    /// `principal`: back to the principal's page after.
    #[serde(default)]
    back: String,
}

/// Where to go after a change to an assignment: its principal's page
/// (`back` is `principal`), the access page (empty), or the assignments
/// at its scope.
fn after(a: &RoleAssignment, back: &str) -> Response {
    match back {
        "principal" => {
            return Redirect::to(&format!("/console/principals/{}", a.principal_id))
                .into_response();
        }
        "" => return Redirect::to("/console/access").into_response(),
        _ => {}
    }
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("scope", &a.scope)
        .finish();
    Redirect::to(&format!("/console/access?{q}#at-scope")).into_response()
}

/// `POST /console/role-assignments`.
pub async fn create_assignment(State(c): State<Console>, p: Posted<AssignForm>) -> Response {
    let f = &p.form;
    let req = CreateRoleAssignment {
        principal_id: f.principal_id.trim().to_string(),
        role: f.role.trim().to_string(),
        scope: f.scope.trim().to_string(),
    };
    match c
        .service
        .create_role_assignment(&p.session.caller, req)
        .await
    {
        Ok(a) => after(&a, if f.back.is_empty() { "scope" } else { &f.back }),
        Err(e) => view::error_page(Some(&p.session), &e),
    }
}

/// `POST /console/role-assignments/{id}/delete`: only with the
/// confirmation ticked.
pub async fn delete_assignment(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    let s = &p.session;
    if !confirmed(&p.form) {
        return view::refusal(
            Some(s),
            StatusCode::BAD_REQUEST,
            "Not removed",
            "Tick Confirm beside Remove: whoever holds the role loses what it allows at once.",
        );
    }
    match c.service.delete_role_assignment(&s.caller, &id).await {
        Ok(a) => after(&a, p.form.get("back").map(String::as_str).unwrap_or("")),
        Err(e) => view::error_page(Some(s), &e),
    }
}
