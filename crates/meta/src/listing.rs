//! One page of a resource list in one query: the rows a caller may see
//! (every row, or those of some accounts plus some single resources), the
//! filters the API offers, and keyset pagination on (created_at, id), the
//! order every list uses. A list of 1,000 disks is one `SELECT` (the
//! attached flag is a sub-select, not a query per disk).

use coffer_types::Id;
use sqlx::any::AnyArguments;
use sqlx::query::QueryAs;
use sqlx::{Any, AssertSqlSafe};

use crate::resources::{DISK_FROM, DISK_SELECT, DiskRec, SNAP_FROM, SNAP_SELECT, SnapRec};
use crate::{DiskRow, Meta, Result, SnapshotRow};

/// Which rows a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    /// Every row (a grant at the deployment).
    All,
    /// Rows of these accounts, and these single resources.
    Some {
        /// Accounts whose every resource is visible.
        accounts: Vec<Id>,
        /// Single resources visible (of any account).
        ids: Vec<Id>,
    },
}

/// One page's worth of a list: who sees what, the filters, the position.
#[derive(Debug, Clone)]
pub struct ListFilter {
    /// What the caller may see.
    pub visible: Visible,
    /// Only rows with this name.
    pub name: Option<String>,
    /// Only rows of this account.
    pub account: Option<Id>,
    /// Only disks in this zone.
    pub zone: Option<String>,
    /// Only disks that are (or are not) attached.
    pub attached: Option<bool>,
    /// Only disks made from this snapshot, or snapshots taken from this disk.
    pub source: Option<Id>,
    /// Only rows tagged with this key and value.
    pub tag: Option<(String, String)>,
    /// Only rows in this state (jobs).
    pub state: Option<String>,
    /// Only rows after this (created_at, id) key.
    pub after: Option<(String, String)>,
    /// At most this many rows.
    pub limit: u32,
}

/// The WHERE clause for `f` over a table aliased `t`, pushing its binds.
pub(crate) fn clause(f: &ListFilter, binds: &mut Vec<String>) -> Option<String> {
    let bind = |v: String, binds: &mut Vec<String>| {
        binds.push(v);
        format!("${}", binds.len())
    };
    let mut terms = vec![];
    if let Visible::Some { accounts, ids } = &f.visible {
        if accounts.is_empty() && ids.is_empty() {
            return None;
        }
        let mut any = vec![];
        if !accounts.is_empty() {
            let list: Vec<String> = accounts
                .iter()
                .map(|a| bind(a.to_string(), binds))
                .collect();
            any.push(format!("t.account_id IN ({})", list.join(", ")));
        }
        if !ids.is_empty() {
            let list: Vec<String> = ids.iter().map(|i| bind(i.to_string(), binds)).collect();
            any.push(format!("t.id IN ({})", list.join(", ")));
        }
        terms.push(format!("({})", any.join(" OR ")));
    }
    if let Some(n) = &f.name {
        terms.push(format!("t.name = {}", bind(n.clone(), binds)));
    }
    if let Some(a) = f.account {
        terms.push(format!("t.account_id = {}", bind(a.to_string(), binds)));
    }
    if let Some(z) = &f.zone {
        terms.push(format!("t.zone = {}", bind(z.clone(), binds)));
    }
    if let Some(src) = f.source {
        let col = match src.kind() {
            coffer_types::Kind::Snapshot => "t.source_snapshot_id",
            coffer_types::Kind::Image => "t.source_image_id",
            _ => "t.source_disk_id",
        };
        terms.push(format!("{col} = {}", bind(src.to_string(), binds)));
    }
    if let Some(att) = f.attached {
        let not = if att { "" } else { "NOT " };
        terms.push(format!(
            "{not}EXISTS (SELECT 1 FROM attachments a WHERE a.disk_id = t.id)"
        ));
    }
    if let Some((k, v)) = &f.tag {
        let k = bind(k.clone(), binds);
        let v = bind(v.clone(), binds);
        terms.push(format!(
            "t.id IN (SELECT g.resource_id FROM tags g WHERE g.tag_key = {k} AND g.tag_value = {v})"
        ));
    }
    if let Some(st) = &f.state {
        terms.push(format!("t.state = {}", bind(st.clone(), binds)));
    }
    if let Some((at, id)) = &f.after {
        let at = bind(at.clone(), binds);
        let id = bind(id.clone(), binds);
        terms.push(format!(
            "(t.created_at > {at} OR (t.created_at = {at} AND t.id > {id}))"
        ));
    }
    Some(if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    })
}

pub(crate) fn bound<'q, O>(
    mut q: QueryAs<'q, Any, O, AnyArguments>,
    binds: &'q [String],
) -> QueryAs<'q, Any, O, AnyArguments> {
    for b in binds {
        q = q.bind(b.as_str());
    }
    q
}

/// A disk and whether it is attached (the column after [`DISK_SELECT`]'s).
struct DiskWithFlag(DiskRow, bool);

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for DiskWithFlag {
    fn from_row(r: &'r sqlx::any::AnyRow) -> sqlx::Result<Self> {
        use sqlx::Row;
        let disk = <DiskRec as sqlx::FromRow<'r, sqlx::any::AnyRow>>::from_row(r)?.0;
        let attached: i64 = r.try_get(15)?;
        Ok(DiskWithFlag(disk, attached != 0))
    }
}

impl Meta {
    /// One page of disks, each with whether it is attached.
    pub async fn list_disks_page(&self, f: &ListFilter) -> Result<Vec<(DiskRow, bool)>> {
        let mut binds = vec![];
        let Some(clause) = clause(f, &mut binds) else {
            return Ok(vec![]);
        };
        let sql = format!(
            "SELECT {DISK_SELECT}, CAST(CASE WHEN EXISTS (SELECT 1 FROM attachments a WHERE a.disk_id = t.id) THEN 1 ELSE 0 END AS BIGINT) AS attached \
             FROM {DISK_FROM} {clause} ORDER BY t.created_at, t.id LIMIT {}",
            f.limit
        );
        let rows: Vec<DiskWithFlag> = bound(sqlx::query_as(AssertSqlSafe(sql)), &binds)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.0, r.1)).collect())
    }

    /// One page of snapshots.
    pub async fn list_snapshots_page(&self, f: &ListFilter) -> Result<Vec<SnapshotRow>> {
        let mut binds = vec![];
        let Some(clause) = clause(f, &mut binds) else {
            return Ok(vec![]);
        };
        let sql = format!(
            "SELECT {SNAP_SELECT} FROM {SNAP_FROM} {clause} ORDER BY t.created_at, t.id LIMIT {}",
            f.limit
        );
        let rows: Vec<SnapRec> = bound(sqlx::query_as(AssertSqlSafe(sql)), &binds)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}
