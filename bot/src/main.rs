//! The `oncall` command line. Parsing only; the work is in `oncall::app`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: a request allocates and frees
/// many small values across the runtime's threads, where glibc's malloc
/// (its per-thread arenas and consolidation) was a sixth of the workers'
/// time under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "oncall",
    version,
    about = "ChatOps for Kubernetes operations, incidents and escalation"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Try oncall with nothing configured: a simulated cluster, a local SQLite file and a console.
    Demo {
        /// The SQLite file (default: ./oncall-demo.db).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Who you are at first (switch with `:as` in the console).
        #[arg(long = "as", default_value = "cli:operator")]
        as_principal: String,
    },
    /// Run one command through the router, policy and history; print the reply.
    ///
    /// Exit status: 0 ran (or informational), 1 oncall could not start,
    /// 2 invalid command, 3 denied by policy, 4 failed, 5 held for approval.
    Exec {
        #[arg(long, env = "ONCALL_CONFIG")]
        config: PathBuf,
        /// The principal to act as, e.g. cli:operator.
        #[arg(long)]
        user: String,
        /// The channel id (policy channel scope is cli:<id>).
        #[arg(long, default_value = "console")]
        channel: String,
        /// Runs at most once per key; a repeat prints the first reply.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The command text, e.g. "scale backend 5".
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// The long-running server (HTTP: /healthz; chat adapters).
    Serve {
        #[arg(long, env = "ONCALL_CONFIG")]
        config: PathBuf,
        /// Overrides server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate a configuration file, then check each cluster's API and the
    /// RBAC the bot's account has for the catalog; non-zero exit on any error.
    Check {
        #[arg(long, env = "ONCALL_CONFIG")]
        config: PathBuf,
        /// Only validate the file (no cluster is contacted).
        #[arg(long)]
        offline: bool,
    },
    /// Write a consistent copy of the database (safe while oncall runs).
    Backup {
        #[arg(long, env = "ONCALL_CONFIG")]
        config: PathBuf,
        /// The new backup file (must not exist).
        file: PathBuf,
    },
    /// Replace the database with a backup (stop oncall first; the current
    /// database is kept beside it).
    Restore {
        #[arg(long, env = "ONCALL_CONFIG")]
        config: PathBuf,
        /// A file written by `oncall backup`.
        file: PathBuf,
    },
    /// The history database.
    History {
        #[command(subcommand)]
        command: HistoryCmd,
    },
    /// Moving the store.
    Store {
        #[command(subcommand)]
        command: StoreCmd,
    },
    /// Incidents on the command line.
    Incident {
        #[command(subcommand)]
        command: IncidentCmd,
    },
    /// Discord setup.
    Discord {
        #[command(subcommand)]
        command: DiscordCmd,
    },
    /// Run the simulated Kubernetes API server alone, until Ctrl-C.
    Sim {
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// Write a kubeconfig pointing at the simulator here.
        #[arg(long)]
        kubeconfig_out: Option<PathBuf>,
        /// Seed manifests (multi-document YAML) instead of the runbooks' services.
        #[arg(long)]
        seed: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum HistoryCmd {
    /// Delete history older than a duration (rows a pending approval needs stay).
    Prune {
        #[arg(long, env = "ONCALL_CONFIG")]
        config: PathBuf,
        /// e.g. 90d
        #[arg(long, value_parser = parse_age)]
        older_than: std::time::Duration,
    },
}

fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(86400)
        || d > std::time::Duration::from_secs(100 * 365 * 86400)
    {
        return Err("expected between 1d and 100 years".into());
    }
    Ok(d)
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Copy a SQLite database into a new, empty PostgreSQL database: every
    /// table with its ids (history, incidents, schedules, escalations and
    /// their pages, alerts). Stop oncall first.
    Copy {
        /// The SQLite file: sqlite://PATH or a plain path.
        #[arg(long)]
        from: String,
        /// The PostgreSQL URL (postgres://…); or DATABASE_URL.
        #[arg(long, env = "DATABASE_URL")]
        to: String,
    },
}

#[derive(Subcommand)]
enum IncidentCmd {
    /// Print an incident's postmortem draft (Markdown) or its whole record
    /// (JSON: the incident, its roles and its timeline).
    Export {
        /// The incident number.
        number: u32,
        /// The config whose database to read (default: the demo's
        /// database in this directory, ./oncall-demo.db).
        #[arg(long, env = "ONCALL_CONFIG")]
        config: Option<PathBuf>,
        /// Read this SQLite file instead.
        #[arg(long, conflicts_with = "config")]
        db: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "markdown")]
        format: oncall::app::ExportFormat,
    },
}

#[derive(Subcommand)]
enum DiscordCmd {
    /// Register (bulk-overwrite) the /oncall application command, generated from
    /// the grammar. Needs DISCORD_APPLICATION_ID and DISCORD_BOT_TOKEN.
    Register {
        #[arg(long, env = "ONCALL_CONFIG")]
        config: PathBuf,
        /// Register in one guild (instant) instead of globally.
        #[arg(long)]
        guild: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = oncall::logging::init() {
        eprintln!("oncall: {e}");
        return ExitCode::from(oncall::app::EXIT_SETUP as u8);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oncall: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result: anyhow::Result<i32> = runtime.block_on(async {
        match cli.command {
            Cmd::Demo { db, as_principal } => {
                oncall::app::demo(db, &as_principal).await.map(|()| 0)
            }
            Cmd::Exec {
                config,
                user,
                channel,
                idempotency_key,
                text,
            } => {
                oncall::app::exec(&config, &user, &channel, idempotency_key, &text.join(" ")).await
            }
            Cmd::Serve { config, listen } => oncall::app::serve(&config, listen).await.map(|()| 0),
            Cmd::Check { config, offline } => Ok(oncall::app::check(&config, offline).await),
            Cmd::Backup { config, file } => oncall::app::backup(&config, &file).await.map(|()| 0),
            Cmd::Restore { config, file } => oncall::app::restore(&config, &file).await.map(|()| 0),
            Cmd::History {
                command: HistoryCmd::Prune { config, older_than },
            } => oncall::app::history_prune(&config, older_than).await,
            Cmd::Store {
                command: StoreCmd::Copy { from, to },
            } => oncall::app::store_copy(&from, &to).await.map(|()| 0),
            Cmd::Incident {
                command:
                    IncidentCmd::Export {
                        number,
                        config,
                        db,
                        format,
                    },
            } => oncall::app::incident_export(number, config.as_deref(), db, format).await,
            Cmd::Sim {
                listen,
                kubeconfig_out,
                seed,
            } => oncall::app::sim(listen, kubeconfig_out, seed)
                .await
                .map(|()| 0),
            Cmd::Discord {
                command: DiscordCmd::Register { config, guild },
            } => oncall::app::discord_register(&config, guild.as_deref())
                .await
                .map(|()| 0),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("oncall: {e:#}");
            ExitCode::from(oncall::app::EXIT_SETUP as u8)
        }
    }
}
