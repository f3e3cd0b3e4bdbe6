//! A real PostgreSQL server for the tests: one throwaway cluster per test
//! binary, from Debian's `pg_virtualenv` (about 3 s), and a fresh database
//! per test. The cluster is dropped when the test binary exits (the
//! wrapper's standard input closes). Where PostgreSQL can't be had, the
//! tests that need it say so and skip.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub struct Server {
    /// `postgres://user:password@host:port`, without a database.
    base: String,
    _wrapper: Mutex<Child>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

fn start() -> Result<Server, String> {
    // The URL goes to a file, and the wrapper's own output to /dev/null:
    // it tears the cluster down after this process is gone, and a closed
    // pipe would kill it before it had.
    let dir = std::env::temp_dir().join(format!("oncall-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let url_file = dir.join("url");
    let script = format!(
        "echo \"postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT\" > {}.tmp && mv {0}.tmp {0}; read _",
        url_file.display()
    );
    // -t: a temporary cluster even as root, so concurrent test runs
    // never share one.
    let child = Command::new("pg_virtualenv")
        .args(["-t", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("pg_virtualenv could not run ({e}); install Debian's postgresql"))?;
    let mut child = child;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(url) = std::fs::read_to_string(&url_file) {
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(Server {
                base: url.trim().to_string(),
                _wrapper: Mutex::new(child),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("pg_virtualenv exited ({status}) without a cluster"));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err("pg_virtualenv started no cluster within 60 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The shared server, or why there is none (printed by the caller).
pub fn server() -> Result<&'static Server, String> {
    SERVER.get_or_init(start).as_ref().map_err(Clone::clone)
}

impl Server {
    /// A new empty database; its URL.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection;
        let name = format!("oncall_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", self.base))
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        format!("{}/{name}", self.base)
    }
}

/// The server, or `None` after printing why the calling test skips.
pub fn or_skip(test: &str) -> Option<&'static Server> {
    match server() {
        Ok(s) => Some(s),
        Err(why) => {
            eprintln!("SKIPPED {test}: no PostgreSQL server: {why}");
            None
        }
    }
}
