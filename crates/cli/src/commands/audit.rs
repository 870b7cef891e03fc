//! `coffer audit …`: the audit log of key use (list, verify).

use anyhow::bail;
use clap::Subcommand;
use coffer_types::Kind;
use coffer_wire::{AuditEntry, AuditQuery, AuditVerification};

use crate::client::{Client, Paging};
use crate::output::{Output, View};
use crate::resolve;

/// An audit entry's table columns.
pub const COLUMNS: &[(&str, &str)] = &[
    ("SEQ", "/seq"),
    ("AT", "/at"),
    ("PRINCIPAL", "/principal_id"),
    ("ACTION", "/action"),
    ("KEY", "/key_id"),
    ("VERSION", "/key_version"),
    ("RESOURCE", "/resource"),
    ("OUTCOME", "/outcome"),
];

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// List audit entries, oldest first. Without --key, the whole log
    /// (deployment operators only).
    List {
        /// Only entries about this key (id).
        #[arg(long)]
        key: Option<String>,
        /// Only entries by, or on behalf of, this principal (id or name).
        #[arg(long)]
        principal: Option<String>,
        /// Only entries about this resource (id).
        #[arg(long)]
        resource: Option<String>,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only entries before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Recompute the log's hash chain and check its head: fails (exit
    /// status 1) naming the first edited, removed, reordered or cut entry.
    Verify,
}

/// Run an audit command.
pub async fn run(c: &Client, out: &Output, cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::List {
            key,
            principal,
            resource,
            since,
            until,
            paging,
        } => {
            let q = AuditQuery {
                key,
                principal: resolve::opt(c, Kind::Principal, principal.as_deref()).await?,
                resource,
                since,
                until,
                ..AuditQuery::default()
            };
            let l = c.list::<_, AuditEntry>("/v1/audit", &q, &paging).await?;
            out.show_list(&l, View::Columns(COLUMNS))
        }
        AuditCmd::Verify => {
            let v: AuditVerification = c.action("/v1/audit/verify").await?;
            out.show(&v, View::Fields)?;
            if let Some(p) = &v.problem {
                bail!("the audit log does not verify: {p}");
            }
            Ok(())
        }
    }
}
