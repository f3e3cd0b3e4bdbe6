//! `oncall backup FILE` and `oncall restore FILE`: the SQLite database
//! copied out while the bot runs, and put back while it is stopped.
//!
//! A backup is `VACUUM INTO`: one read transaction, so the copy is
//! consistent (every commit before it, none after), taken while the bot
//! keeps serving; the file is a complete database with no WAL beside it.
//! A restore checks the file (SQLite's integrity check, an oncall schema no
//! newer than this build's), refuses while another process has the
//! database open, keeps the current database beside it
//! (`<db>.before-restore-<time>`), moves the backup into place, and runs
//! the migrations (a backup from an older oncall is upgraded).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rusqlite::{Connection, OpenFlags};

use crate::store::Store;

/// Writes a consistent copy of `db` to `to` (which must not exist).
pub async fn backup(db: &Path, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        bail!("{} exists already; choose a new file", to.display());
    }
    if !db.exists() {
        bail!("there is no database at {}", db.display());
    }
    let store = Store::open(db)
        .await
        .with_context(|| format!("opening the database {}", db.display()))?;
    store
        .backup(to)
        .await
        .with_context(|| format!("writing the backup {}", to.display()))?;
    let summary = summary(to)?;
    println!("backed up {} to {} ({summary})", db.display(), to.display());
    Ok(())
}

/// Replaces `db` with the backup `from`. The bot must be stopped.
pub async fn restore(db: &Path, from: &Path) -> anyhow::Result<()> {
    check_backup(from)?;
    let kept = if db.exists() {
        release(db)?;
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let kept = sibling(db, &format!("before-restore-{stamp}"));
        std::fs::rename(db, &kept).with_context(|| format!("moving {} aside", db.display()))?;
        Some(kept)
    } else {
        None
    };
    let staging = sibling(db, "restoring");
    std::fs::copy(from, &staging)
        .with_context(|| format!("copying {} to {}", from.display(), staging.display()))?;
    std::fs::File::open(&staging)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", staging.display()))?;
    std::fs::rename(&staging, db)
        .with_context(|| format!("moving the backup into place at {}", db.display()))?;
    // The migrations of this build, for a backup taken by an older one.
    Store::open(db)
        .await
        .with_context(|| format!("opening the restored database {}", db.display()))?;
    let summary = summary(db)?;
    println!(
        "restored {} from {} ({summary})",
        db.display(),
        from.display()
    );
    if let Some(kept) = kept {
        println!("the database it replaced is kept at {}", kept.display());
    }
    Ok(())
}

/// `<db>.<suffix>` beside `db`.
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    db.with_file_name(name)
}

/// The backup is a sound oncall database this build can run.
fn check_backup(from: &Path) -> anyhow::Result<()> {
    if !from.is_file() {
        bail!("there is no backup file at {}", from.display());
    }
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", from.display()))?;
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .with_context(|| format!("{} is not a SQLite database", from.display()))?;
    if integrity != "ok" {
        bail!(
            "{} fails SQLite's integrity check: {integrity}",
            from.display()
        );
    }
    let newest: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM _sqlx_migrations", [], |r| {
            r.get(0)
        })
        .with_context(|| format!("{} is not an oncall database", from.display()))?;
    let ours = crate::store::sqlite::newest_migration();
    match newest {
        None => bail!("{} is not an oncall database (no migrations)", from.display()),
        Some(v) if v > ours => bail!(
            "{} was made by a newer oncall (schema {v}; this build knows up to {ours}); restore it with that version",
            from.display()
        ),
        Some(_) => Ok(()),
    }
}

/// Fails if another process has `db` open: leaving WAL mode needs the only
/// connection, so a running bot makes it fail. On success the file stands
/// alone (no `-wal`/`-shm` beside it) and can be moved.
fn release(db: &Path) -> anyhow::Result<()> {
    let conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    let mode: Result<String, _> = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0));
    match mode {
        Ok(m) if m.eq_ignore_ascii_case("delete") => Ok(()),
        _ => bail!(
            "{} is in use by another process: stop oncall (scale its Deployment to 0) before restoring",
            db.display()
        ),
    }
}

/// "N history rows, M incidents" of a database file.
fn summary(db: &Path) -> anyhow::Result<String> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", db.display()))?;
    let count = |table: &str| -> anyhow::Result<i64> {
        Ok(conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    };
    Ok(format!(
        "{} history rows, {} incidents",
        count("invocations")?,
        count("incidents")?
    ))
}
