//! Identity and access: `coffer whoami`, `coffer principal …`,
//! `coffer role …` (built-in roles and role assignments) and
//! `coffer iam explain`. `principal create --role` maps onto two routes, as
//! `az ad sp create-for-rbac --role --scopes` does.

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use coffer_types::Kind;
use coffer_wire::{
    AssignmentQuery, CreatePrincipal, CreateRoleAssignment, ExplainRequest, Explanation, Principal,
    PrincipalQuery, RoleAssignment, RoleDefinition, Token, TokenQuery, WhoAmI,
};
use serde_json::Value;

use super::{Confirm, confirm_delete, count_of};
use crate::client::{Client, Paging, seg};
use crate::output::{Output, View, at, cell, table};
use crate::resolve;

const PRINCIPAL_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("KIND", "/kind"),
    ("ACCOUNT", "/account_id"),
    ("TENANT", "/tenant_id"),
    ("CREATED", "/created_at"),
];

const ASSIGNMENT_COLUMNS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("PRINCIPAL", "/principal_id"),
    ("ROLE", "/role"),
    ("SCOPE", "/scope"),
    ("CREATED BY", "/created_by"),
    ("CREATED", "/created_at"),
];

const ROLE_COLUMNS: &[(&str, &str)] = &[
    ("NAME", "/name"),
    ("DESCRIPTION", "/description"),
    ("ACTIONS", "/actions"),
];

/// Kinds of principal the API creates.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A program.
    Service,
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCmd {
    /// Create a user or service principal; with --role, also assign it a
    /// role (at --scope, default its home account).
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Home account, id or name (default: yours).
        #[arg(long)]
        account: Option<String>,
        /// Kind.
        #[arg(long, value_enum, default_value = "user")]
        kind: PrincipalKind,
        /// Assign this role to the new principal, e.g. Reader.
        #[arg(long)]
        role: Option<String>,
        /// Where the role applies: `/` or a tenant, folder, account, disk or
        /// snapshot id (default: the principal's home account).
        #[arg(long, requires = "role")]
        scope: Option<String>,
    },
    /// List the principals of an account.
    List {
        /// Account, id or name (default: yours).
        #[arg(long)]
        account: Option<String>,
        /// Only principals with this exact name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a principal.
    Show {
        /// Principal id or name.
        principal: String,
    },
    /// Delete a principal with its tokens and role assignments (asks first,
    /// unless --yes).
    Delete {
        /// Principal id or name.
        principal: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCmd {
    /// List the built-in roles and the actions each grants.
    List,
    /// Role assignments: create, list, delete.
    #[command(subcommand)]
    Assignment(AssignmentCmd),
}

#[derive(Debug, Subcommand)]
pub enum AssignmentCmd {
    /// Give a principal (of any account or tenant) a role at a scope.
    Create {
        /// Principal id (or name, in your account).
        #[arg(long)]
        principal: String,
        /// Role, e.g. Reader.
        #[arg(long)]
        role: String,
        /// `/` (the deployment) or a tenant, folder, account, disk or
        /// snapshot id.
        #[arg(long)]
        scope: String,
    },
    /// List role assignments: of a principal, at a scope, or (neither) yours.
    List {
        /// Only this principal's (id or name).
        #[arg(long)]
        principal: Option<String>,
        /// Only those at this scope (`/` or an id).
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Delete a role assignment.
    Delete {
        /// Role assignment id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IamCmd {
    /// Explain whether a principal may do an action on a resource, and why.
    /// Exits 0 whatever the decision.
    Explain {
        /// Principal id or name (default: you).
        #[arg(long)]
        principal: Option<String>,
        /// Action, e.g. disks/delete (see `coffer role list`).
        #[arg(long)]
        action: String,
        /// `/` or the id of a tenant, folder, account, disk, snapshot,
        /// principal or role assignment.
        #[arg(long)]
        resource: String,
    },
}

/// `coffer whoami` for people: who, where, and the roles held.
fn whoami_text(v: &Value) -> String {
    let named = |id: &str, name: &str| {
        let (id, name) = (at(v, id), at(v, name));
        if name.is_empty() || name == "-" {
            id
        } else {
            format!("{id} ({name})")
        }
    };
    let mut rows = vec![
        vec!["principal".to_string(), at(v, "/principal_id")],
        vec!["name".to_string(), at(v, "/name")],
        vec!["kind".to_string(), at(v, "/kind")],
        vec!["account".to_string(), named("/account_id", "/account_name")],
        vec!["tenant".to_string(), named("/tenant_id", "/tenant_name")],
        vec!["deployment admin".to_string(), at(v, "/is_admin")],
    ];
    let assignments = v["role_assignments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if assignments.is_empty() {
        rows.push(vec!["roles".to_string(), "(none)".to_string()]);
    }
    for (i, a) in assignments.iter().enumerate() {
        rows.push(vec![
            if i == 0 { "roles" } else { "" }.to_string(),
            format!(
                "{} @ {}  ({})",
                at(a, "/role"),
                at(a, "/scope"),
                at(a, "/id")
            ),
        ]);
    }
    table(&["FIELD", "VALUE"], rows)
}

/// `iam explain` for people: the decision, the status, each reason on a line.
fn explanation_text(v: &Value) -> String {
    let mut out = vec![
        format!("Decision:   {}", at(v, "/decision")),
        format!("Status:     {}", at(v, "/status")),
        format!("Principal:  {}", at(v, "/principal_id")),
        format!("Action:     {}", at(v, "/action")),
        format!("Resource:   {}", at(v, "/resource_id")),
    ];
    if let Some(a) = v["assignment_id"].as_str() {
        out.push(format!("Assignment: {a}"));
    }
    out.push("Reasons:".to_string());
    for r in v["reasons"].as_array().into_iter().flatten() {
        out.push(format!("  - {}", cell(r)));
    }
    out.join("\n")
}

/// A role name compared as the API does: case, spaces, dashes and
/// underscores ignored.
fn squash(role: &str) -> String {
    role.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// `coffer whoami`.
pub async fn whoami(c: &Client, out: &Output) -> anyhow::Result<()> {
    let w: WhoAmI = c.get("/v1/whoami").await?;
    out.show(&w, View::Text(&whoami_text))
}

/// The caller's own principal id.
pub async fn me(c: &Client) -> anyhow::Result<String> {
    let w: WhoAmI = c.get("/v1/whoami").await?;
    Ok(w.principal_id)
}

/// Run a principal command.
pub async fn principal(c: &Client, out: &Output, cmd: PrincipalCmd) -> anyhow::Result<()> {
    match cmd {
        PrincipalCmd::Create {
            name,
            account,
            kind,
            role,
            scope,
        } => {
            // Check the role before creating anything, so a misspelt role
            // leaves no principal behind.
            if let Some(r) = &role {
                let roles: Vec<RoleDefinition> = c.get("/v1/roles").await?;
                if !roles.iter().any(|d| squash(&d.name) == squash(r)) {
                    let names: Vec<&str> = roles.iter().map(|d| d.name.as_str()).collect();
                    bail!(
                        "unknown role '{r}': the built-in roles are {} (see `coffer role list`); no principal was created",
                        names.join(", ")
                    );
                }
            }
            let kind = match kind {
                PrincipalKind::User => "user",
                PrincipalKind::Service => "service",
            };
            let body = CreatePrincipal {
                name,
                account_id: resolve::opt(c, Kind::Account, account.as_deref()).await?,
                kind: Some(kind.to_string()),
            };
            let p: Principal = c.post("/v1/principals", &body).await?;
            let Some(role) = role else {
                return out.show(&p, View::Fields);
            };
            let scope = scope.unwrap_or_else(|| p.account_id.clone());
            let body = CreateRoleAssignment {
                principal_id: p.id.clone(),
                role: role.clone(),
                scope: scope.clone(),
            };
            let ra: RoleAssignment = c
                .post("/v1/role-assignments", &body)
                .await
                .with_context(|| {
                    format!(
                        "principal {} was created, but assigning it the role failed: fix the cause and run `coffer role assignment create --principal {} --role \"{role}\" --scope {scope}`",
                        p.id, p.id
                    )
                })?;
            let text = |v: &Value| {
                format!(
                    "Principal:\n{}\n\nRole assignment:\n{}",
                    crate::output::fields_table(&v["principal"]),
                    crate::output::fields_table(&v["role_assignment"])
                )
            };
            out.show(
                &serde_json::json!({"principal": p, "role_assignment": ra}),
                View::Text(&text),
            )
        }
        PrincipalCmd::List {
            account,
            name,
            paging,
        } => {
            let q = PrincipalQuery {
                account: resolve::opt(c, Kind::Account, account.as_deref()).await?,
                name,
                ..PrincipalQuery::default()
            };
            let l = c
                .list::<_, Principal>("/v1/principals", &q, &paging)
                .await?;
            out.show_list(&l, View::Columns(PRINCIPAL_COLUMNS))
        }
        PrincipalCmd::Show { principal } => {
            let id = resolve::id(c, Kind::Principal, &principal).await?;
            let p: Principal = c.get(&format!("/v1/principals/{}", seg(&id))).await?;
            out.show(&p, View::Fields)
        }
        PrincipalCmd::Delete { principal, confirm } => {
            let id = resolve::id(c, Kind::Principal, &principal).await?;
            if !confirm.yes {
                let p: Principal = c.get(&format!("/v1/principals/{}", seg(&id))).await?;
                let deps = principal_dependants(c, &id).await;
                confirm_delete(
                    c,
                    confirm,
                    "iam/write",
                    &id,
                    &format!("principal {} ({id})", p.name),
                    deps,
                )
                .await?;
            }
            let p: Principal = c.delete(&format!("/v1/principals/{}", seg(&id))).await?;
            out.show(&p, View::Fields)
        }
    }
}

/// A principal's tokens and role assignments (deleted with it), as far as
/// the caller may list them.
async fn principal_dependants(c: &Client, id: &str) -> Vec<String> {
    let mut deps = vec![];
    if let Ok(l) = c
        .list::<_, Token>(
            &format!("/v1/principals/{}/tokens", seg(id)),
            &TokenQuery::default(),
            &Paging::default(),
        )
        .await
    {
        let live: Vec<&Token> = l
            .items
            .iter()
            .filter(|t| t.state == coffer_types::TokenState::Active)
            .collect();
        if !live.is_empty() {
            deps.push(count_of(
                live.len(),
                "active token",
                "(they stop working)",
                live.iter().map(|t| format!("{} ({})", t.id, t.name)),
            ));
        }
    }
    let q = AssignmentQuery {
        principal: Some(id.to_string()),
        ..AssignmentQuery::default()
    };
    if let Ok(l) = c
        .list::<_, RoleAssignment>("/v1/role-assignments", &q, &Paging::default())
        .await
        && !l.items.is_empty()
    {
        deps.push(count_of(
            l.items.len(),
            "role assignment",
            "(deleted with it)",
            l.items
                .iter()
                .map(|r| format!("{} at {} ({})", r.role, r.scope, r.id)),
        ));
    }
    deps
}

/// Run a role command.
pub async fn role(c: &Client, out: &Output, cmd: RoleCmd) -> anyhow::Result<()> {
    match cmd {
        RoleCmd::List => {
            let roles: Vec<RoleDefinition> = c.get("/v1/roles").await?;
            out.show(&roles, View::Columns(ROLE_COLUMNS))
        }
        RoleCmd::Assignment(AssignmentCmd::Create {
            principal,
            role,
            scope,
        }) => {
            let body = CreateRoleAssignment {
                principal_id: resolve::id(c, Kind::Principal, &principal).await?,
                role,
                scope,
            };
            let ra: RoleAssignment = c.post("/v1/role-assignments", &body).await?;
            out.show(&ra, View::Fields)
        }
        RoleCmd::Assignment(AssignmentCmd::List {
            principal,
            scope,
            paging,
        }) => {
            let q = AssignmentQuery {
                principal: resolve::opt(c, Kind::Principal, principal.as_deref()).await?,
                scope,
                ..AssignmentQuery::default()
            };
            let l = c
                .list::<_, RoleAssignment>("/v1/role-assignments", &q, &paging)
                .await?;
            out.show_list(&l, View::Columns(ASSIGNMENT_COLUMNS))
        }
        RoleCmd::Assignment(AssignmentCmd::Delete { id }) => {
            let ra: RoleAssignment = c
                .delete(&format!("/v1/role-assignments/{}", seg(&id)))
                .await?;
            out.show(&ra, View::Fields)
        }
    }
}

/// Run `coffer iam …`.
pub async fn iam(c: &Client, out: &Output, cmd: IamCmd) -> anyhow::Result<()> {
    match cmd {
        IamCmd::Explain {
            principal,
            action,
            resource,
        } => {
            let body = ExplainRequest {
                principal_id: resolve::opt(c, Kind::Principal, principal.as_deref()).await?,
                action,
                resource_id: resource,
            };
            let e: Explanation = c.post("/v1/iam/explain", &body).await?;
            out.show(&e, View::Text(&explanation_text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn role_names_compare_as_the_api_does() {
        assert_eq!(
            squash("Key Vault Crypto User"),
            squash("key-vault_cryptouser")
        );
        assert_ne!(squash("Reader"), squash("Owner"));
    }

    #[test]
    fn explanation_puts_each_reason_on_its_own_line() {
        let v = json!({"decision": "deny", "status": 403, "principal_id": "p",
            "action": "snapshots/delete", "resource_id": "r", "assignment_id": null,
            "reasons": ["first", "second"]});
        let t = explanation_text(&v);
        assert!(t.contains("Decision:   deny"), "{t}");
        assert!(t.contains("Status:     403"), "{t}");
        assert!(t.contains("\n  - first\n  - second"), "{t}");
    }
}
