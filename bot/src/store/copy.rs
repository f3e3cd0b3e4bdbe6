//! `oncall store copy`: an installation's SQLite database moved into an
//! empty PostgreSQL one, as it is: every table, row for row with the same
//! ids (history, approvals, incidents and their timelines, escalations and
//! their outbox, schedule overrides, alerts, the term), so a running
//! escalation carries on after the move. The identity sequences are moved
//! past the copied ids. One PostgreSQL transaction: all or nothing.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sqlx::Connection as _;

use super::{PgStore, Store, StoreError};

/// The tables, parents before children (foreign keys hold at each insert).
const TABLES: &[&str] = &[
    "invocations",
    "idempotency_keys",
    "approvals",
    "incidents",
    "incident_roles",
    "incident_events",
    "escalations",
    "outbox",
    "schedule_overrides",
    "alerts",
    "alert_groups",
    "alert_actions",
    "alert_silences",
    "readiness",
    "leadership",
];

/// The tables whose `id` is an identity (a sequence to move on).
const IDENTITIES: &[&str] = &[
    "invocations",
    "idempotency_keys",
    "incidents",
    "incident_events",
    "escalations",
    "outbox",
    "schedule_overrides",
    "alerts",
    "alert_actions",
    "alert_silences",
];

/// Columns that are BOOLEAN in PostgreSQL and 0/1 in SQLite.
const BOOLEANS: &[(&str, &str)] = &[
    ("invocations", "mutating"),
    ("invocations", "dry_run"),
    ("incidents", "announced"),
];

/// Rows copied, per table.
pub type Copied = Vec<(&'static str, u64)>;

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Corrupt(format!("reading the SQLite database: {e}"))
}

/// Copies the SQLite database at `from` into the (migrated, empty)
/// PostgreSQL database at `to`.
pub async fn sqlite_to_postgres(from: &Path, to: &str) -> Result<Copied, StoreError> {
    if !from.is_file() {
        return Err(StoreError::Corrupt(format!(
            "there is no SQLite database at {}",
            from.display()
        )));
    }
    // Both schemas at their newest: the source migrated by opening it, the
    // target created by its migrations.
    Store::open(from).await?;
    PgStore::open(to).await?;
    let source =
        Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
    let mut target = sqlx::PgConnection::connect(to).await?;
    let mut tx = target.begin().await?;
    for table in TABLES {
        let present: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        if present > 0 {
            return Err(StoreError::Corrupt(format!(
                "the PostgreSQL database is not empty ({table} has {present} rows); copy into a new database"
            )));
        }
    }
    // A NULL is bound with its column's type, as PostgreSQL checks it.
    let types: std::collections::HashMap<(String, String), String> = sqlx::query_as::<_, (String, String, String)>(
        "SELECT table_name::TEXT, column_name::TEXT, data_type::TEXT FROM information_schema.columns
         WHERE table_schema = current_schema()",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(t, c, d)| ((t, c), d))
    .collect();
    let mut copied = Vec::new();
    for table in TABLES {
        let mut stmt = source
            .prepare(&format!("SELECT * FROM {table}"))
            .map_err(sql)?;
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let placeholders: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if BOOLEANS.contains(&(*table, c.as_str())) {
                    format!("(${} <> 0)", i + 1)
                } else {
                    format!("${}", i + 1)
                }
            })
            .collect();
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            columns.join(", "),
            placeholders.join(", ")
        );
        let mut rows = stmt.query([]).map_err(sql)?;
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(sql)? {
            let mut q = sqlx::query(&insert);
            for (i, column) in columns.iter().enumerate() {
                q = match row.get_ref(i).map_err(sql)? {
                    ValueRef::Null => match types
                        .get(&(table.to_string(), column.clone()))
                        .map(String::as_str)
                    {
                        Some("bigint") => q.bind(None::<i64>),
                        Some("boolean") => q.bind(None::<bool>),
                        _ => q.bind(None::<String>),
                    },
                    ValueRef::Integer(v) => q.bind(v),
                    ValueRef::Real(v) => q.bind(v),
                    ValueRef::Text(t) => q.bind(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => q.bind(b.to_vec()),
                };
            }
            q.execute(&mut *tx).await?;
            n += 1;
        }
        copied.push((*table, n));
        if IDENTITIES.contains(table) {
            // New rows get ids after the copied ones.
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                               GREATEST((SELECT MAX(id) FROM {table}), 1),
                               (SELECT COUNT(*) > 0 FROM {table}))"
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(copied)
}
