//! Principals and their API tokens: the principals of an account (the
//! caller's, or one chosen that the caller may read), create one, one
//! principal's page (its tokens, never their secrets, and its role
//! assignments), create a token (its secret shown once, on the page that
//! answers the form), revoke a token after ticking a confirmation, and
//! delete a principal after typing its name.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use coffer_service::ServiceError;
use coffer_types::{PrincipalKind, TokenState};
use coffer_wire::{Account, CreatePrincipal, CreateToken, ListParams, NewToken, Principal, Token};
use maud::{Markup, html};
use serde::Deserialize;

use super::access::{assignment_table, confirmed, role_form};
use super::{filled, first_page};
use crate::Console;
use crate::session::{Posted, Session};
use crate::view::{self, csrf, when};

/// The list's filter (a GET form): whose principals.
#[derive(Deserialize, Default)]
pub struct Filter {
    /// An account (empty: the caller's).
    #[serde(default)]
    account: String,
}

/// The accounts the caller may see, for the account pickers (empty when
/// it may see none beyond its own).
async fn visible_accounts(c: &Console, s: &Session) -> Vec<Account> {
    c.service
        .list_accounts(&s.caller, first_page())
        .await
        .map(|p| p.items)
        .unwrap_or_default()
}

/// An account picker: `selected` chosen, the caller's own first.
fn account_options(s: &Session, accounts: &[Account], selected: &str) -> Markup {
    let mine = s.caller.principal.account_id.to_string();
    html! {
        option value="" selected[selected.is_empty()] { "My account (" (mine) ")" }
        @for a in accounts.iter().filter(|a| a.id != mine) {
            option value=(a.id) selected[a.id == selected] { (a.name) " (" (a.id) ")" }
        }
    }
}

/// `GET /console/principals`: the principals of an account, and the
/// create form.
pub async fn list(State(c): State<Console>, s: Session, Query(f): Query<Filter>) -> Response {
    let account = f.account.trim().to_string();
    let body = async {
        let page = c
            .service
            .list_principals(
                &s.caller,
                ListParams {
                    account: filled(&account),
                    ..first_page()
                },
            )
            .await?;
        let accounts = visible_accounts(&c, &s).await;
        Ok::<_, ServiceError>(html! {
            h1 { "Principals" }
            p { a href="/console/access" { "Access" } " · role assignments and roles" }
            form.filters method="get" action="/console/principals" role="search" aria-label="Choose an account" {
                label { "Account "
                    select #p-filter name="account" { (account_options(&s, &accounts, &account)) }
                }
                button #show-account type="submit" { "Show" }
            }
            @if page.items.is_empty() {
                p.empty { "No principals you may see in this account." }
            } @else {
                table #principals {
                    caption.visually-hidden { "Principals" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Kind" } th scope="col" { "Account" } th scope="col" { "Created" } } }
                    tbody {
                        @for p in &page.items {
                            tr {
                                td { a href={ "/console/principals/" (p.id) } { (p.name) } }
                                td { code { (p.id) } }
                                td { (p.kind) }
                                td { code { (p.account_id) } }
                                td { (when(&p.created_at)) }
                            }
                        }
                    }
                }
            }
            @if page.next.is_some() { p.note { "Only the first 1,000 are shown." } }
            section aria-labelledby="create-p-h" {
                h2 #create-p-h { "Create a principal" }
                p.hint { "A new principal holds no role: assign one on its page, then give it a token." }
                form.stack method="post" action="/console/principals" {
                    (csrf(&s))
                    label for="p-name" { "Name" }
                    input #p-name type="text" name="name" required pattern="[A-Za-z0-9._-]{1,80}" aria-describedby="p-name-hint";
                    span.hint #p-name-hint { "1–80 letters, digits, ., _ or -" }
                    label for="p-kind" { "Kind" }
                    select #p-kind name="kind" aria-describedby="p-kind-hint" {
                        option value="user" { "user (a person)" }
                        option value="service" { "service (a program)" }
                    }
                    span.hint #p-kind-hint { "Managed identities are made by the platform with the encryption set that uses them." }
                    label for="p-account" { "Home account" }
                    select #p-account name="account_id" { (account_options(&s, &accounts, &account)) }
                    button #create-principal type="submit" { "Create principal" }
                }
            }
        })
    }
    .await;
    view::page(&s, "access", "Principals", body)
}

/// The create form.
#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    account_id: String,
}

/// `POST /console/principals`: then to its page.
pub async fn create(State(c): State<Console>, p: Posted<CreateForm>) -> Response {
    let f = p.form;
    let req = CreatePrincipal {
        name: f.name.trim().to_string(),
        account_id: filled(&f.account_id),
        kind: filled(&f.kind),
    };
    view::go(
        &p.session,
        c.service.create_principal(&p.session.caller, req).await,
        |pr| format!("/console/principals/{}", pr.id),
    )
}

/// The facts of a principal.
fn facts(p: &Principal) -> Markup {
    html! {
        dl.facts {
            dt { "Id" } dd { code #principal-id { (p.id) } }
            dt { "Name" } dd { (p.name) }
            dt { "Kind" } dd { (p.kind) }
            dt { "Home account" } dd { code { (p.account_id) } }
            dt { "Home tenant" } dd { code { (p.tenant_id) } }
            dt { "Created" } dd { (when(&p.created_at)) }
        }
    }
}

/// A token's state as shown, with its class.
fn token_state(t: &Token) -> Markup {
    html! { span class={ "state " (t.state) } { (t.state) } }
}

/// When the tokens the session makes expire at the latest.
fn cap_note(s: &Session) -> Markup {
    html! {
        @if let Some(cap) = &s.caller.token_expires_at {
            p.hint #token-cap {
                "A token never outlives the one that made it: made here, it expires with your console session, at "
                (when(cap)) " at the latest. For a longer-lived token, use "
                code { "coffer token create --principal ID --expires-in 30d" } "."
            }
        }
    }
}

/// `GET /console/principals/{id}`: its facts, tokens and role
/// assignments, and the forms that change them.
pub async fn show(State(c): State<Console>, s: Session, Path(id): Path<String>) -> Response {
    let body = async {
        let svc = &c.service;
        let p = svc.get_principal(&s.caller, &id).await?;
        let tokens = svc.list_tokens(&s.caller, &p.id, first_page()).await?;
        let assignments = svc
            .list_role_assignments(
                &s.caller,
                ListParams {
                    principal: Some(p.id.clone()),
                    ..first_page()
                },
            )
            .await?;
        let managed = p.kind == PrincipalKind::Managed;
        let myself = p.id == s.caller.principal.id.to_string();
        Ok::<_, ServiceError>(html! {
            h1 { "Principal " (p.name) }
            p { a href={ "/console/principals?account=" (p.account_id) } { "The principals of its account" } }
            (facts(&p))
            section aria-labelledby="tokens-h" {
                h2 #tokens-h { "API tokens" }
                p.hint { "Coffer keeps only a hash of each token: a token's secret is shown once, when it is made." }
                @if tokens.items.is_empty() {
                    p.empty { "No tokens." }
                } @else {
                    table #tokens {
                        caption.visually-hidden { "API tokens" }
                        thead { tr { th scope="col" { "Id" } th scope="col" { "Name" } th scope="col" { "State" } th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "Revoked" } th scope="col" { "Revoke" } } }
                        tbody {
                            @for t in &tokens.items {
                                tr id={ "token-" (t.id) } {
                                    td { code { (t.id) } }
                                    td { @if t.name.is_empty() { "—" } @else { (t.name) } }
                                    td.token-state { (token_state(t)) }
                                    td { (when(&t.created_at)) }
                                    td { @if let Some(e) = &t.expires_at { (when(e)) } @else { "never" } }
                                    td { @if let Some(r) = &t.revoked_at { (when(r)) } @else { "—" } }
                                    td {
                                        @if t.state == TokenState::Active {
                                            form.inline method="post" action={ "/console/tokens/" (t.id) "/revoke" } {
                                                (csrf(&s))
                                                input id={ "revoke-ok-" (t.id) } type="checkbox" name="confirm" value="yes" required;
                                                label for={ "revoke-ok-" (t.id) } { "It stops working at once" }
                                                button.danger id={ "revoke-" (t.id) } type="submit" aria-label={ "Revoke token " (t.id) } { "Revoke" }
                                            }
                                        } @else { "—" }
                                    }
                                }
                            }
                        }
                    }
                }
                @if tokens.next.is_some() { p.note { "Only the first 1,000 are shown." } }
                @if !managed {
                    h3 #new-token-h { "Create a token" }
                    form.stack method="post" action={ "/console/principals/" (p.id) "/tokens" } aria-labelledby="new-token-h" {
                        (csrf(&s))
                        label for="t-name" { "Name (optional)" }
                        input #t-name type="text" name="name" pattern="[A-Za-z0-9._-]{1,80}" placeholder="ci";
                        label for="t-expires" { "Expires in (optional)" }
                        input #t-expires type="text" name="expires_in" placeholder="1h" aria-describedby="t-expires-hint";
                        span.hint #t-expires-hint { "A duration such as 90m or 4h (at least 1 minute). Empty: none of its own (see below)." }
                        button #create-token type="submit" { "Create token" }
                    }
                    (cap_note(&s))
                } @else {
                    p.note { "A managed identity has no API tokens: the platform authenticates it." }
                }
            }
            section aria-labelledby="p-roles-h" {
                h2 #p-roles-h { "Its role assignments" }
                (assignment_table(&s, &assignments.items, "Its role assignments", "prn", "principal"))
                h3 #p-assign-h { "Assign it a role" }
                (role_form(&s, &c.service.roles(), Some(&p.id), "p-assign-h"))
            }
            @if !managed && !myself {
                section.danger aria-labelledby="delete-p-h" {
                    h2 #delete-p-h { "Delete this principal" }
                    p { "Its tokens stop working and its role assignments go with it. Type the principal's name to confirm." }
                    (view::confirm_by_name(&s, &format!("/console/principals/{}/delete", p.id), "confirm", "Principal name", Some("delete-principal"), "Delete principal"))
                }
            }
        })
    }
    .await;
    view::page(&s, "access", "Principal", body)
}

/// The token form.
#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_in: String,
}

/// `POST /console/principals/{id}/tokens`: the new token's secret is
/// shown in this answer only (never cached, like every console page).
pub async fn create_token(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<TokenForm>,
) -> Response {
    let s = &p.session;
    let req = CreateToken {
        name: filled(&p.form.name),
        expires_in: filled(&p.form.expires_in),
    };
    match c.service.create_token(&s.caller, &id, req).await {
        Ok(t) => view::page(s, "access", "Token created", Ok(new_token(&t))),
        Err(e) => view::error_page(Some(s), &e),
    }
}

/// The page after making a token: its secret, once.
fn new_token(t: &NewToken) -> Markup {
    let tok = &t.token;
    html! {
        h1 { "Token created" }
        div.alert.secret role="status" {
            p { strong { "Copy the token now: it will not be shown again." } " Coffer keeps only its hash. Whoever has it acts as the principal until it expires or is revoked." }
        }
        dl.facts {
            dt { "Token" } dd { code #new-token { (t.secret.as_str()) } }
            dt { "Id" } dd { code #new-token-id { (tok.id) } }
            dt { "Principal" } dd { code { (tok.principal_id) } }
            dt { "Name" } dd { @if tok.name.is_empty() { "—" } @else { (tok.name) } }
            dt { "Expires" } dd { @if let Some(e) = &tok.expires_at { (when(e)) } @else { "never" } }
        }
        h2 { "Use it" }
        pre { code { "curl -H 'Authorization: Bearer " (t.secret.as_str()) "' https://HOST/v1/whoami" } }
        p { "or for the CLI: save it in a file and run " code { "coffer configure --profile NAME --endpoint URL --token-file FILE" } ", or set " code { "COFFER_TOKEN" } "." }
        p { a href={ "/console/principals/" (tok.principal_id) } { "Back to the principal" } }
    }
}

/// The delete form: the principal's name, typed.
#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

/// `POST /console/principals/{id}/delete`: only when the name typed is
/// the principal's.
pub async fn delete(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<DeleteForm>,
) -> Response {
    let s = &p.session;
    if let Err(refused) = view::named(
        s,
        c.service.get_principal(&s.caller, &id).await,
        |pr| pr.name.as_str(),
        &p.form.confirm,
        ("Not deleted", "delete this principal"),
    ) {
        return *refused;
    }
    match c.service.delete_principal(&s.caller, &id).await {
        Ok(pr) => {
            Redirect::to(&format!("/console/principals?account={}", pr.account_id)).into_response()
        }
        Err(e) => view::error_page(Some(s), &e),
    }
}

/// `POST /console/tokens/{id}/revoke`: only with the confirmation
/// ticked; then back to its principal.
pub async fn revoke(
    State(c): State<Console>,
    Path(id): Path<String>,
    p: Posted<BTreeMap<String, String>>,
) -> Response {
    let s = &p.session;
    if !confirmed(&p.form) {
        return view::refusal(
            Some(s),
            StatusCode::BAD_REQUEST,
            "Not revoked",
            "Tick the confirmation beside Revoke: a revoked token stops working at once, for good.",
        );
    }
    view::go(s, c.service.revoke_token(&s.caller, &id).await, |t| {
        format!("/console/principals/{}", t.principal_id)
    })
}
