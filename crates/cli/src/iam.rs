//! The organisation and IAM commands: tenants, folders, accounts,
//! principals, tokens, roles and role assignments, and `iam explain`. Each
//! maps onto one API route (`principal create --role` onto two, as
//! `az ad sp create-for-rbac --role --scopes` does). Tokens are never taken
//! on the command line; a new token's secret is printed once, or stored in
//! a profile with `--save-profile`.

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Client, Output, enc, kv, list_of, print, rows, s, table};
use crate::profile;

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant (Owners of the deployment).
    Create {
        /// Name.
        #[arg(long)]
        name: String,
    },
    /// List the tenants you may see.
    List,
    /// Show a tenant.
    Show {
        /// Tenant id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FolderCmd {
    /// Create a folder at a tenant's root or in a folder.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Tenant (default: yours, or the parent folder's).
        #[arg(long)]
        tenant: Option<String>,
        /// Parent folder (default: the tenant's root).
        #[arg(long)]
        parent: Option<String>,
    },
    /// List the folders of a tenant.
    List {
        /// Tenant (default: yours).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show a folder.
    Show {
        /// Folder id.
        id: String,
    },
    /// Delete an empty folder.
    Delete {
        /// Folder id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create an account at a tenant's root or in a folder.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Tenant (default: yours, or the folder's).
        #[arg(long)]
        tenant: Option<String>,
        /// Folder (default: the tenant's root).
        #[arg(long)]
        folder: Option<String>,
    },
    /// List the accounts you may see.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show an account.
    Show {
        /// Account id.
        id: String,
    },
    /// Move an account to another folder of its tenant, or to its root.
    #[command(group(clap::ArgGroup::new("destination").required(true).args(["folder", "root"])))]
    Move {
        /// Account id.
        id: String,
        /// Destination folder.
        #[arg(long)]
        folder: Option<String>,
        /// Move to the tenant's root.
        #[arg(long)]
        root: bool,
    },
}

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
        /// Home account (default: yours).
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
        /// Account (default: yours).
        #[arg(long)]
        account: Option<String>,
    },
    /// Show a principal.
    Show {
        /// Principal id.
        id: String,
    },
    /// Delete a principal with its tokens and role assignments.
    Delete {
        /// Principal id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an API token. Its secret is shown once (or, with
    /// --save-profile, stored in a profile and not shown).
    Create {
        /// Whose token (default: yours).
        #[arg(long)]
        principal: Option<String>,
        /// Label, e.g. ci.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. 30d, 12h or 90m (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
        /// Store the secret in this profile (with the current endpoint)
        /// instead of printing it.
        #[arg(long, value_name = "PROFILE")]
        save_profile: Option<String>,
    },
    /// List a principal's tokens (never their secrets).
    List {
        /// Whose tokens (default: yours).
        #[arg(long)]
        principal: Option<String>,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        /// Token id (tok-…, not the secret).
        id: String,
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
        /// Principal id.
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
        /// Only this principal's.
        #[arg(long)]
        principal: Option<String>,
        /// Only those at this scope (`/` or an id).
        #[arg(long)]
        scope: Option<String>,
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
        /// Principal id (default: you).
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

/// `path` with the query parameters that are set.
fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", enc(v))))
        .collect();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

fn tenant_rows(list: &[Value]) -> String {
    rows(
        list,
        &[("ID", "/id"), ("NAME", "/name"), ("CREATED", "/created_at")],
    )
}

fn folder_rows(list: &[Value]) -> String {
    rows(
        list,
        &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("TENANT", "/tenant_id"),
            ("PARENT", "/parent_id"),
            ("CREATED", "/created_at"),
        ],
    )
}

fn account_rows(list: &[Value]) -> String {
    rows(
        list,
        &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("TENANT", "/tenant_id"),
            ("FOLDER", "/folder_id"),
            ("CREATED", "/created_at"),
        ],
    )
}

fn principal_rows(list: &[Value]) -> String {
    rows(
        list,
        &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("KIND", "/kind"),
            ("ACCOUNT", "/account_id"),
            ("TENANT", "/tenant_id"),
            ("CREATED", "/created_at"),
        ],
    )
}

fn token_rows(list: &[Value]) -> String {
    rows(
        list,
        &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("PRINCIPAL", "/principal_id"),
            ("STATE", "/state"),
            ("EXPIRES", "/expires_at"),
            ("REVOKED", "/revoked_at"),
            ("CREATED", "/created_at"),
        ],
    )
}

fn assignment_rows(list: &[Value]) -> String {
    rows(
        list,
        &[
            ("ID", "/id"),
            ("PRINCIPAL", "/principal_id"),
            ("ROLE", "/role"),
            ("SCOPE", "/scope"),
            ("CREATED BY", "/created_by"),
            ("CREATED", "/created_at"),
        ],
    )
}

fn role_rows(list: &[Value]) -> String {
    table(
        &["NAME", "DESCRIPTION", "ACTIONS"],
        list.iter()
            .map(|r| {
                vec![
                    s(r, "/name"),
                    s(r, "/description"),
                    list_of(&r["actions"])
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect(),
    )
}

/// `coffer whoami` for people: who, where, and the roles held.
pub fn whoami_text(v: &Value) -> String {
    let named = |id: &str, name: &str| {
        let (id, name) = (s(v, id), s(v, name));
        if name.is_empty() || name == "-" {
            id
        } else {
            format!("{id} ({name})")
        }
    };
    let mut rows = vec![
        vec!["principal".to_string(), s(v, "/principal_id")],
        vec!["name".to_string(), s(v, "/name")],
        vec!["kind".to_string(), s(v, "/kind")],
        vec!["account".to_string(), named("/account_id", "/account_name")],
        vec!["tenant".to_string(), named("/tenant_id", "/tenant_name")],
        vec!["deployment admin".to_string(), s(v, "/is_admin")],
    ];
    let assignments = list_of(&v["role_assignments"]);
    if assignments.is_empty() {
        rows.push(vec!["roles".to_string(), "(none)".to_string()]);
    }
    for (i, a) in assignments.iter().enumerate() {
        rows.push(vec![
            if i == 0 { "roles" } else { "" }.to_string(),
            format!("{} @ {}  ({})", s(a, "/role"), s(a, "/scope"), s(a, "/id")),
        ]);
    }
    table(&["FIELD", "VALUE"], rows)
}

/// `iam explain` for people: the decision, the status, each reason on a line.
fn explanation_text(v: &Value) -> String {
    let mut out = vec![
        format!("Decision:   {}", s(v, "/decision")),
        format!("Status:     {}", s(v, "/status")),
        format!("Principal:  {}", s(v, "/principal_id")),
        format!("Action:     {}", s(v, "/action")),
        format!("Resource:   {}", s(v, "/resource_id")),
    ];
    if let Some(a) = v["assignment_id"].as_str() {
        out.push(format!("Assignment: {a}"));
    }
    out.push("Reasons:".to_string());
    for r in list_of(&v["reasons"]) {
        out.push(format!(
            "  - {}",
            r.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| r.to_string())
        ));
    }
    out.join("\n")
}

/// The caller's own principal id.
async fn me(c: &Client) -> anyhow::Result<String> {
    let v = c.call(Method::GET, "/v1/whoami", None).await?;
    v["principal_id"]
        .as_str()
        .map(str::to_string)
        .context("the API's whoami answer has no principal_id")
}

/// A role name compared as the API does: case, spaces, dashes and
/// underscores ignored.
fn squash(role: &str) -> String {
    role.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

pub async fn tenant(c: &Client, out: Output, cmd: TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Create { name } => print(
            out,
            &c.call(Method::POST, "/v1/tenants", Some(json!({"name": name})))
                .await?,
            kv,
        ),
        TenantCmd::List => print(out, &c.call(Method::GET, "/v1/tenants", None).await?, |v| {
            tenant_rows(list_of(v))
        }),
        TenantCmd::Show { id } => print(
            out,
            &c.call(Method::GET, &format!("/v1/tenants/{}", enc(&id)), None)
                .await?,
            kv,
        ),
    }
    Ok(())
}

pub async fn folder(c: &Client, out: Output, cmd: FolderCmd) -> anyhow::Result<()> {
    match cmd {
        FolderCmd::Create {
            name,
            tenant,
            parent,
        } => {
            let body = json!({"name": name, "tenant_id": tenant, "parent_id": parent});
            print(
                out,
                &c.call(Method::POST, "/v1/folders", Some(body)).await?,
                kv,
            );
        }
        FolderCmd::List { tenant } => print(
            out,
            &c.call(
                Method::GET,
                &with_query("/v1/folders", &[("tenant", tenant.as_deref())]),
                None,
            )
            .await?,
            |v| folder_rows(list_of(v)),
        ),
        FolderCmd::Show { id } => print(
            out,
            &c.call(Method::GET, &format!("/v1/folders/{}", enc(&id)), None)
                .await?,
            kv,
        ),
        FolderCmd::Delete { id } => print(
            out,
            &c.call(Method::DELETE, &format!("/v1/folders/{}", enc(&id)), None)
                .await?,
            kv,
        ),
    }
    Ok(())
}

pub async fn account(c: &Client, out: Output, cmd: AccountCmd) -> anyhow::Result<()> {
    match cmd {
        AccountCmd::Create {
            name,
            tenant,
            folder,
        } => {
            let body = json!({"name": name, "tenant_id": tenant, "folder_id": folder});
            print(
                out,
                &c.call(Method::POST, "/v1/accounts", Some(body)).await?,
                kv,
            );
        }
        AccountCmd::List { tenant } => print(
            out,
            &c.call(
                Method::GET,
                &with_query("/v1/accounts", &[("tenant", tenant.as_deref())]),
                None,
            )
            .await?,
            |v| account_rows(list_of(v)),
        ),
        AccountCmd::Show { id } => print(
            out,
            &c.call(Method::GET, &format!("/v1/accounts/{}", enc(&id)), None)
                .await?,
            kv,
        ),
        AccountCmd::Move { id, folder, root } => {
            // clap's group makes exactly one of --folder and --root present.
            let folder = if root { None } else { folder };
            print(
                out,
                &c.call(
                    Method::POST,
                    &format!("/v1/accounts/{}/move", enc(&id)),
                    Some(json!({ "folder_id": folder })),
                )
                .await?,
                kv,
            );
        }
    }
    Ok(())
}

pub async fn principal(c: &Client, out: Output, cmd: PrincipalCmd) -> anyhow::Result<()> {
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
                let roles = c.call(Method::GET, "/v1/roles", None).await?;
                let names: Vec<&str> = list_of(&roles)
                    .iter()
                    .filter_map(|r| r["name"].as_str())
                    .collect();
                if !names.iter().any(|n| squash(n) == squash(r)) {
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
            let body = json!({"name": name, "account_id": account, "kind": kind});
            let p = c.call(Method::POST, "/v1/principals", Some(body)).await?;
            let Some(role) = role else {
                print(out, &p, kv);
                return Ok(());
            };
            let pid = p["id"].as_str().unwrap_or_default().to_string();
            let scope = scope.unwrap_or_else(|| s(&p, "/account_id"));
            let body = json!({"principal_id": pid, "role": role, "scope": scope});
            let ra = c
                .call(Method::POST, "/v1/role-assignments", Some(body))
                .await
                .with_context(|| {
                    format!(
                        "principal {pid} was created, but assigning it the role failed: fix the cause and run `coffer role assignment create --principal {pid} --role \"{role}\" --scope {scope}`"
                    )
                })?;
            print(out, &json!({"principal": p, "role_assignment": ra}), |v| {
                format!(
                    "Principal:\n{}\n\nRole assignment:\n{}",
                    kv(&v["principal"]),
                    kv(&v["role_assignment"])
                )
            });
        }
        PrincipalCmd::List { account } => print(
            out,
            &c.call(
                Method::GET,
                &with_query("/v1/principals", &[("account", account.as_deref())]),
                None,
            )
            .await?,
            |v| principal_rows(list_of(v)),
        ),
        PrincipalCmd::Show { id } => print(
            out,
            &c.call(Method::GET, &format!("/v1/principals/{}", enc(&id)), None)
                .await?,
            kv,
        ),
        PrincipalCmd::Delete { id } => print(
            out,
            &c.call(
                Method::DELETE,
                &format!("/v1/principals/{}", enc(&id)),
                None,
            )
            .await?,
            kv,
        ),
    }
    Ok(())
}

pub async fn token(c: &Client, out: Output, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            principal,
            name,
            expires_in,
            save_profile,
        } => {
            // Refuse before creating the token: a secret that cannot be
            // stored is lost.
            if let Some(p) = &save_profile {
                let cfg = profile::load()?;
                if cfg.profiles.get(p).is_some_and(|p| p.token.is_some()) {
                    bail!(
                        "profile '{p}' already holds a token in {}: choose another name for --save-profile (no token was created)",
                        profile::config_path().display()
                    );
                }
            }
            let principal = match principal {
                Some(p) => p,
                None => me(c).await?,
            };
            let body = json!({"name": name, "expires_in": expires_in});
            let mut v = c
                .call(
                    Method::POST,
                    &format!("/v1/principals/{}/tokens", enc(&principal)),
                    Some(body),
                )
                .await?;
            let secret = match v.as_object_mut().and_then(|o| o.remove("secret")) {
                Some(Value::String(s)) => zeroize::Zeroizing::new(s),
                _ => bail!("the API's answer holds no token secret"),
            };
            match save_profile {
                Some(name) => {
                    let mut cfg = profile::load()?;
                    let p = cfg.profiles.entry(name.clone()).or_default();
                    p.endpoint = Some(c.endpoint.clone());
                    p.token = Some(secret.to_string());
                    if let Err(e) = profile::save(&cfg) {
                        // The token exists now: do not lose its secret.
                        v["secret"] = Value::String(secret.to_string());
                        print(out, &v, kv);
                        eprintln!(
                            "warning: the profile could not be saved, so the token's secret is printed above, the only time it is shown; keep it safe or revoke the token with `coffer token revoke {}`",
                            s(&v, "/id")
                        );
                        return Err(e);
                    }
                    print(out, &v, kv);
                    eprintln!(
                        "The token's secret is saved in profile '{name}' ({}); use it with `coffer --profile {name}`.",
                        profile::config_path().display()
                    );
                }
                None => {
                    v["secret"] = Value::String(secret.to_string());
                    print(out, &v, kv);
                    eprintln!(
                        "warning: this is the only time the token's secret is shown; it cannot be shown again. Keep it safe (e.g. in a file for `coffer configure --token-file`)."
                    );
                }
            }
        }
        TokenCmd::List { principal } => {
            let principal = match principal {
                Some(p) => p,
                None => me(c).await?,
            };
            print(
                out,
                &c.call(
                    Method::GET,
                    &format!("/v1/principals/{}/tokens", enc(&principal)),
                    None,
                )
                .await?,
                |v| token_rows(list_of(v)),
            );
        }
        TokenCmd::Revoke { id } => print(
            out,
            &c.call(
                Method::POST,
                &format!("/v1/tokens/{}/revoke", enc(&id)),
                None,
            )
            .await?,
            kv,
        ),
    }
    Ok(())
}

pub async fn role(c: &Client, out: Output, cmd: RoleCmd) -> anyhow::Result<()> {
    match cmd {
        RoleCmd::List => print(out, &c.call(Method::GET, "/v1/roles", None).await?, |v| {
            role_rows(list_of(v))
        }),
        RoleCmd::Assignment(AssignmentCmd::Create {
            principal,
            role,
            scope,
        }) => {
            let body = json!({"principal_id": principal, "role": role, "scope": scope});
            print(
                out,
                &c.call(Method::POST, "/v1/role-assignments", Some(body))
                    .await?,
                kv,
            );
        }
        RoleCmd::Assignment(AssignmentCmd::List { principal, scope }) => print(
            out,
            &c.call(
                Method::GET,
                &with_query(
                    "/v1/role-assignments",
                    &[
                        ("principal", principal.as_deref()),
                        ("scope", scope.as_deref()),
                    ],
                ),
                None,
            )
            .await?,
            |v| assignment_rows(list_of(v)),
        ),
        RoleCmd::Assignment(AssignmentCmd::Delete { id }) => print(
            out,
            &c.call(
                Method::DELETE,
                &format!("/v1/role-assignments/{}", enc(&id)),
                None,
            )
            .await?,
            kv,
        ),
    }
    Ok(())
}

pub async fn iam(c: &Client, out: Output, cmd: IamCmd) -> anyhow::Result<()> {
    match cmd {
        IamCmd::Explain {
            principal,
            action,
            resource,
        } => {
            let body =
                json!({"principal_id": principal, "action": action, "resource_id": resource});
            print(
                out,
                &c.call(Method::POST, "/v1/iam/explain", Some(body)).await?,
                explanation_text,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_encode_values_and_skip_unset_ones() {
        assert_eq!(with_query("/v1/x", &[("a", None)]), "/v1/x");
        assert_eq!(
            with_query(
                "/v1/x",
                &[("a", Some("tnt-1")), ("b", None), ("c", Some("/"))]
            ),
            "/v1/x?a=tnt-1&c=%2F"
        );
    }

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
