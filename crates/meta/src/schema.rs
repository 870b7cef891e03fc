//! Versioned migrations, one directory per backend, applied in order inside
//! a transaction each; the applied version is kept in `schema_version`.

use sqlx::Executor;

use crate::{Backend, Meta, Result};

const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_nodes.sql")),
    (3, include_str!("../migrations/sqlite/0003_iam.sql")),
    (4, include_str!("../migrations/sqlite/0004_lists.sql")),
    (5, include_str!("../migrations/sqlite/0005_names_keys.sql")),
    (6, include_str!("../migrations/sqlite/0006_format_v2.sql")),
    (7, include_str!("../migrations/sqlite/0007_audit.sql")),
    (8, include_str!("../migrations/sqlite/0008_vaults.sql")),
    (
        9,
        include_str!("../migrations/sqlite/0009_rewrap_double.sql"),
    ),
    (
        10,
        include_str!("../migrations/sqlite/0010_images_shares.sql"),
    ),
    (11, include_str!("../migrations/sqlite/0011_copy_jobs.sql")),
    (
        12,
        include_str!("../migrations/sqlite/0012_jobs_images.sql"),
    ),
    (13, include_str!("../migrations/sqlite/0013_dek_budget.sql")),
    (14, include_str!("../migrations/sqlite/0014_regions.sql")),
    (15, include_str!("../migrations/sqlite/0015_exports.sql")),
    (16, include_str!("../migrations/sqlite/0016_usage.sql")),
    (
        17,
        include_str!("../migrations/sqlite/0017_token_parent.sql"),
    ),
    (
        18,
        include_str!("../migrations/sqlite/0018_extents_bytewise.sql"),
    ),
    (19, include_str!("../migrations/sqlite/0019_job_hashes.sql")),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_nodes.sql")),
    (3, include_str!("../migrations/postgres/0003_iam.sql")),
    (4, include_str!("../migrations/postgres/0004_lists.sql")),
    (
        5,
        include_str!("../migrations/postgres/0005_names_keys.sql"),
    ),
    (6, include_str!("../migrations/postgres/0006_format_v2.sql")),
    (7, include_str!("../migrations/postgres/0007_audit.sql")),
    (8, include_str!("../migrations/postgres/0008_vaults.sql")),
    (
        9,
        include_str!("../migrations/postgres/0009_rewrap_double.sql"),
    ),
    (
        10,
        include_str!("../migrations/postgres/0010_images_shares.sql"),
    ),
    (
        11,
        include_str!("../migrations/postgres/0011_copy_jobs.sql"),
    ),
    (
        12,
        include_str!("../migrations/postgres/0012_jobs_images.sql"),
    ),
    (
        13,
        include_str!("../migrations/postgres/0013_dek_budget.sql"),
    ),
    (14, include_str!("../migrations/postgres/0014_regions.sql")),
    (15, include_str!("../migrations/postgres/0015_exports.sql")),
    (16, include_str!("../migrations/postgres/0016_usage.sql")),
    (
        17,
        include_str!("../migrations/postgres/0017_token_parent.sql"),
    ),
    (
        18,
        include_str!("../migrations/postgres/0018_extents_bytewise.sql"),
    ),
    (
        19,
        include_str!("../migrations/postgres/0019_job_hashes.sql"),
    ),
];

/// The statements of a migration file: `--` comment lines dropped first
/// (so a comment may hold a `;`), then split on `;`, empty ones skipped.
pub fn statements(sql: &str) -> Vec<String> {
    let code = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .filter(|stmt| !stmt.trim().is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) async fn migrate(meta: &Meta) -> Result<()> {
    meta.pool
        .execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await?;
    let steps = match meta.backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let mut tx = meta.begin().await?;
    if meta.backend == Backend::Postgres {
        // Serialise concurrent migrations of several nodes.
        tx.execute("LOCK TABLE schema_version IN EXCLUSIVE MODE")
            .await?;
    }
    let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut *tx)
        .await?;
    let current = current.unwrap_or(0);
    let newest = steps.last().map_or(0, |s| s.0);
    if current > newest {
        // An older binary must not run against a schema it does not know:
        // its rules (e.g. its orphan sweep) could undo newer nodes' work.
        return Err(crate::MetaError::Corrupt(format!(
            "the metadata schema is at version {current}, newer than this coffer understands ({newest}): run the newer coffer on every node"
        )));
    }
    for (version, sql) in steps {
        if *version <= current {
            continue;
        }
        for stmt in statements(sql) {
            tx.execute(sqlx::AssertSqlSafe(stmt)).await?;
        }
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_semicolon_in_a_comment_splits_nothing() {
        let sql = "-- one; two\nCREATE TABLE a (x INT);\n  -- three; four\nCREATE INDEX a_x\n  ON a(x);\n-- only a comment; here\n";
        assert_eq!(
            statements(sql),
            vec!["CREATE TABLE a (x INT)", "\nCREATE INDEX a_x\n  ON a(x)"]
        );
        assert!(statements("-- nothing to do; at all\n").is_empty());
    }
}
