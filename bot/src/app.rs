//! What each CLI subcommand does, with the wiring between config, store,
//! clusters and router. `main.rs` only parses arguments.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use oncall_ops::Clusters;
use oncall_permissions::Principal;

use crate::config::{Config, EXAMPLE};
use crate::console::Console;
use crate::model::{Clock, Invocation, Platform};
use crate::router::Router;
use crate::store::Store;

/// Exit status when oncall itself could not run (bad config, no database).
pub const EXIT_SETUP: i32 = 1;

/// Builds the router for a config, with clusters from the environment.
pub async fn router_from_config(config: Config) -> anyhow::Result<Router> {
    let store = Store::open_config(&config.database)
        .await
        .with_context(|| format!("opening the database {}", config.database.describe()))?;
    recover(&store).await?;
    let clusters = Clusters::from_environment(&config.contexts()).await?;
    Ok(Router::new(config, store, clusters, Clock::System))
}

/// Marks what a previous process left running as interrupted (one process
/// owns a SQLite file, so nothing else can be running it).
async fn recover(store: &Store) -> anyhow::Result<()> {
    let rows = store
        .recover_interrupted()
        .await
        .context("recovering interrupted requests")?;
    if rows > 0 {
        tracing::warn!(
            rows,
            "marked requests left running by a previous process as interrupted"
        );
    }
    Ok(())
}

/// `oncall demo`: simulator + example config + local SQLite + console.
pub async fn demo(db: Option<PathBuf>, as_principal: &str) -> anyhow::Result<()> {
    let sim = kube_sim::Simulator::new(kube_sim::SimConfig::default())?
        .serve("127.0.0.1:0".parse().expect("valid address"))
        .await?;
    let mut config = Config::parse(EXAMPLE, "built-in example config")?;
    config.database.path = db.unwrap_or_else(demo_db_path);
    config.escalation.minutes_as_seconds();
    config.alerts.minutes_as_seconds();
    point_health_urls_at(&mut config, &sim.url());
    let store = Store::open(&config.database.path).await.with_context(|| {
        format!(
            "opening the demo database {}",
            config.database.path.display()
        )
    })?;
    recover(&store).await?;
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse()?))?;
    let router = Router::new(
        config.clone(),
        store,
        Clusters::single(client),
        Clock::System,
    );
    // Incident channels, announcements and reminders print at the console.
    let sinks = crate::chat::Sinks {
        console: Some(crate::chat::ConsoleSink::printing()),
        ..Default::default()
    };
    let sinks = std::sync::Arc::new(sinks);
    router.register_sinks(sinks.clone());
    router
        .begin_term("demo")
        .await
        .context("beginning the engine's term")?;
    crate::escalation::pager::spawn(router.clone(), sinks.clone());
    crate::courier::Courier::new(router.clone(), sinks).spawn(crate::courier::TICK);
    let principal: Principal = as_principal.parse()?;
    println!(
        "oncall demo: a simulated cluster with the runbooks' services at {}\n\
         history: {}   you are: {principal}\n\
         try: scale backend 5 · status backend · :as cli:viewer · scale backend 3 · history · help · :help · :quit\n",
        sim.url(),
        config.database.path.display(),
    );
    let mut console = Console::new(router, principal);
    console
        .run(
            tokio::io::BufReader::new(tokio::io::stdin()),
            tokio::io::stdout(),
        )
        .await?;
    Ok(())
}

/// The catalog's health URLs name hosts of a real cluster; in the demo they
/// go to the simulator's health endpoints, keeping their paths.
pub fn point_health_urls_at(config: &mut Config, sim_url: &str) {
    for service in &mut config.services {
        let base = format!(
            "{sim_url}/sim/health/{}/{}",
            service.namespace,
            service.deployment()
        );
        for url in &mut service.health_urls {
            let path = url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
                .unwrap_or_else(|| "/health".to_string());
            *url = format!("{base}{path}");
        }
    }
}

/// How `oncall incident export` prints an incident.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Markdown,
    Json,
}

/// `oncall incident export N`: the postmortem draft or the whole record,
/// from the config's database, a given file, or the demo's. Exit 2 when
/// there is no such incident.
pub async fn incident_export(
    number: u32,
    config: Option<&Path>,
    db: Option<PathBuf>,
    format: ExportFormat,
) -> anyhow::Result<i32> {
    let path = match (db, config) {
        (Some(db), _) => db,
        (None, Some(config)) => Config::load(config)?.database.path,
        (None, None) => PathBuf::from("oncall-demo.db"),
    };
    if !path.exists() {
        anyhow::bail!("there is no database at {}", path.display());
    }
    let store = Store::open(&path)
        .await
        .with_context(|| format!("opening the database {}", path.display()))?;
    let id = i64::from(number);
    let Some(incident) = store.incident(id).await? else {
        eprintln!(
            "oncall: there is no incident {number} in {}",
            path.display()
        );
        return Ok(2);
    };
    let roles = store.incident_roles(id).await?;
    let events = store.incident_events(id).await?;
    match format {
        ExportFormat::Markdown => print!(
            "{}",
            crate::incidents::postmortem_markdown(
                &incident,
                &roles,
                &events,
                jiff::Timestamp::now().as_millisecond()
            )
        ),
        ExportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "incident": incident,
                "roles": roles,
                "timeline": events,
            }))?
        ),
    }
    Ok(0)
}

/// `oncall-demo.db` in the working directory, or in the temp dir if the
/// working directory is not writable.
fn demo_db_path() -> PathBuf {
    let here = PathBuf::from("oncall-demo.db");
    let writable = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&here)
        .is_ok();
    if writable {
        here
    } else {
        std::env::temp_dir().join("oncall-demo.db")
    }
}

/// `oncall exec`: one command, reply on stdout, exit status by outcome.
pub async fn exec(
    config: &Path,
    user: &str,
    channel: &str,
    key: Option<String>,
    text: &str,
) -> anyhow::Result<i32> {
    let principal: Principal = user.parse().context("--user")?;
    let config = Config::load(config)?;
    let router = router_from_config(config).await?;
    let reply = router
        .handle(Invocation {
            platform: Platform::Cli,
            workspace: None,
            channel: channel.to_string(),
            principal,
            groups: Vec::new(),
            text: text.to_string(),
            idempotency_key: key,
            progress: None,
            received_at: router.clock().now(),
        })
        .await;
    print!("{}", reply.to_console());
    Ok(reply.outcome.exit_code())
}

/// `oncall serve`: the long-running HTTP process.
pub async fn serve(config: &Path, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let addr = listen.unwrap_or_else(|| config.listen_addr());
    let slack_config = config.slack.clone();
    let approval_sweep = std::time::Duration::from_secs(60);
    let shutdown_grace = config.server.shutdown_grace;
    let discord_config = config.discord.clone();
    let router = router_from_config(config).await?;
    // What the incident courier posts through: each platform this serves.
    let mut sinks = crate::chat::Sinks::default();
    let slack = match crate::slack::SlackSecrets::from_env() {
        Some(secrets) => {
            let app_token = secrets.app_token.clone();
            let http = secrets.signing_secret.is_some();
            let state = crate::slack::SlackState::new(router.clone(), slack_config, secrets);
            sinks.slack = Some(crate::chat::SlackSink::new(state.api.clone()));
            if let Some(token) = app_token {
                tracing::info!("Slack Socket Mode enabled");
                let socket = state.clone();
                router
                    .supervisor()
                    .spawn_loop("slack socket mode", |stop| async move {
                        tokio::select! {
                            _ = crate::slack::socket::run(socket, token) => {}
                            _ = stop.cancelled() => {}
                        }
                    });
            }
            if http {
                tracing::info!(
                    "Slack enabled: POST /slack/commands, /slack/interactions, /slack/events"
                );
                Some(state)
            } else {
                None
            }
        }
        None => {
            tracing::info!(
                "Slack disabled: neither SLACK_SIGNING_SECRET nor SLACK_APP_TOKEN is set"
            );
            None
        }
    };
    let discord_secrets = crate::discord::DiscordSecrets::from_env();
    let gateway = std::env::var("DISCORD_GATEWAY").is_ok_and(|v| v == "true" || v == "1");
    let discord = if discord_secrets.public_key.is_some() || gateway {
        let token = discord_secrets.bot_token.clone();
        let state =
            crate::discord::DiscordState::new(router.clone(), discord_config, discord_secrets)
                .map_err(anyhow::Error::msg)?;
        sinks.discord = Some(state.api.clone());
        if gateway {
            let token = token.context("DISCORD_GATEWAY=true needs DISCORD_BOT_TOKEN")?;
            let gw = state.clone();
            tracing::info!("Discord gateway mode: connecting");
            router
                .supervisor()
                .spawn_loop("discord gateway", |stop| async move {
                    tokio::select! {
                        result = crate::discord::gateway::run(gw, &token) => {
                            if let Err(e) = result {
                                tracing::error!("the Discord gateway stopped: {e}");
                            }
                        }
                        _ = stop.cancelled() => {}
                    }
                });
        } else {
            tracing::info!("Discord enabled: POST /discord/interactions");
        }
        Some(state)
    } else {
        tracing::info!("Discord disabled: DISCORD_PUBLIC_KEY is not set");
        None
    };
    let sinks = std::sync::Arc::new(sinks);
    router.register_sinks(sinks.clone());
    spawn_leader_work(&router, sinks).await?;
    // Requests past their deadline are marked expired even if nobody asks.
    let sweeper = router.clone();
    router
        .supervisor()
        .spawn_loop("approval sweeper", |stop| async move {
            let mut tick = tokio::time::interval(approval_sweep);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let now = sweeper.clock().now().as_millisecond();
                match sweeper.store().expire_approvals(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(expired = n, "approval requests expired"),
                    Err(e) => tracing::warn!("could not expire approval requests: {e}"),
                }
                let keep = sweeper.config().database.reply_retention.as_millis() as i64;
                if let Err(e) = sweeper
                    .store()
                    .prune_replies(now.saturating_sub(keep))
                    .await
                {
                    tracing::warn!("could not prune stored replies: {e}");
                }
            }
        });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!("oncall serving on http://{}", listener.local_addr()?);
    let metrics_addr = router.config().metrics_addr();
    if let Some(maddr) = metrics_addr {
        let metrics_listener = tokio::net::TcpListener::bind(maddr)
            .await
            .with_context(|| format!("listening on {maddr} (server.metrics_listen)"))?;
        tracing::info!(
            "metrics on http://{}/metrics",
            metrics_listener.local_addr()?
        );
        let app = crate::server::metrics_app(router.clone());
        router
            .supervisor()
            .spawn_loop("metrics listener", |stop| async move {
                let served = axum::serve(metrics_listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!("the metrics listener stopped: {e}");
                }
            });
    }
    let supervisor = router.supervisor().clone();
    // SIGTERM or SIGINT: stop accepting and let in-flight HTTP requests end…
    axum::serve(
        listener,
        crate::server::app(router, metrics_addr.is_none(), slack, discord),
    )
    .with_graceful_shutdown(crate::supervisor::termination_signal())
    .await?;
    // …then cancel the loops and long waits, and let every command still
    // running finish and record its outcome, within the grace period.
    let running = supervisor.running();
    tracing::info!(
        running,
        grace = %humantime::format_duration(shutdown_grace),
        "stopped accepting; finishing in-flight work"
    );
    if supervisor.shutdown(shutdown_grace).await {
        tracing::info!("shut down cleanly");
    } else {
        tracing::warn!(
            still_running = supervisor.running(),
            "the grace period ended with work still running"
        );
    }
    Ok(())
}

/// The work exactly one process runs: the escalation engine, the pager and
/// the courier. Alone (no `[election]`), this process runs it; with
/// `[election] enabled`, whichever replica holds the Lease, for as long as
/// it holds it.
async fn spawn_leader_work(
    router: &Router,
    sinks: std::sync::Arc<crate::chat::Sinks>,
) -> anyhow::Result<()> {
    let section = &router.config().election;
    if !section.enabled {
        // Alone: this process's start is a takeover, fencing any older
        // process still writing to the same database.
        let epoch = router
            .begin_term(&section.elector_config().identity)
            .await
            .context("beginning the engine's term")?;
        tracing::info!(epoch, "engine term begun");
        router.metrics().leader.set(1);
        crate::escalation::pager::spawn(router.clone(), sinks.clone());
        crate::courier::Courier::new(router.clone(), sinks).spawn(crate::courier::TICK);
        return Ok(());
    }
    let config = section.elector_config();
    let client = router
        .clusters()
        .client(None)
        .context("the election's Lease lives in the default cluster")?
        .clone();
    tracing::info!(
        lease = %format!("{}/{}", config.namespace, config.name),
        identity = %config.identity,
        "election: campaigning"
    );
    let identity = config.identity.clone();
    let elector = crate::election::Elector::new(client, config, router.metrics().clone());
    router.register_role(elector.subscribe());
    let leader = router.clone();
    router
        .supervisor()
        .spawn_loop("election", move |stop| async move {
            elector
                .run(stop, move |term| {
                    // Each term: a new epoch first (the previous leader's
                    // writes stop counting), then the work.
                    let (router, sinks, identity) =
                        (leader.clone(), sinks.clone(), identity.clone());
                    let supervisor = router.supervisor().clone();
                    supervisor.spawn_loop_until("term", term, move |term| async move {
                        match router.begin_term(&identity).await {
                            Ok(epoch) => {
                                tracing::info!(epoch, "election: engine term begun");
                                crate::escalation::pager::spawn_until(
                                    router.clone(),
                                    sinks.clone(),
                                    term.clone(),
                                );
                                crate::courier::Courier::new(router, sinks)
                                    .spawn_until(crate::courier::TICK, term);
                            }
                            Err(e) => tracing::error!(
                                "election: leading, but the term could not begin ({e}); the engine does not run"
                            ),
                        }
                    });
                })
                .await;
        });
    Ok(())
}

/// `oncall discord register`: bulk-overwrites the application's commands
/// with the definitions generated from the grammar.
pub async fn discord_register(config: &Path, guild: Option<&str>) -> anyhow::Result<()> {
    Config::load(config)?;
    let secrets = crate::discord::DiscordSecrets::from_env();
    let api = crate::discord::api::DiscordApi::new(
        reqwest::Client::new(),
        secrets.api_url,
        secrets.bot_token,
        secrets.application_id,
    );
    let commands = crate::discord::schema::all_commands_json();
    let registered = api.overwrite_commands(guild, &commands).await?;
    let count = registered.as_array().map(Vec::len).unwrap_or(0);
    match guild {
        Some(g) => println!("registered {count} command(s) in guild {g} (available at once)"),
        None => println!(
            "registered {count} global command(s) (may take up to an hour to appear everywhere)"
        ),
    }
    Ok(())
}

/// `oncall check`: validates a config; returns the exit status.
/// `oncall history prune --older-than D`: deletes older history rows.
pub async fn history_prune(config: &Path, older_than: std::time::Duration) -> anyhow::Result<i32> {
    let config = Config::load(config)?;
    let store = Store::open_config(&config.database)
        .await
        .with_context(|| format!("opening the database {}", config.database.describe()))?;
    let age = jiff::SignedDuration::try_from(older_than).context("--older-than is too long")?;
    let before = jiff::Timestamp::now()
        .checked_sub(age)
        .context("--older-than reaches before the epoch")?;
    let rows = store.prune_history(before.as_millisecond()).await?;
    println!("deleted {rows} history row(s) from before {before}");
    Ok(0)
}

///
/// The file first (every error named); then, unless `offline`, each
/// cluster's API server, and in each catalog namespace every permission the
/// operations need (one SelfSubjectAccessReview each), with the Role rule
/// that would grant what is missing.
pub async fn check(config: &Path, offline: bool) -> i32 {
    let c = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_SETUP;
        }
    };
    println!(
        "{}: OK ({} services, {} roles, {} bindings, {} approval rules)",
        config.display(),
        c.services.len(),
        c.policy.roles.len(),
        c.policy.bindings.len(),
        c.policy.approvals.len()
    );
    if offline {
        return 0;
    }
    let mut ok = true;
    if let Some(url) = c.database.postgres_url() {
        let shown = crate::store::postgres::redacted_url(&url);
        match crate::store::postgres::server_version(&url).await {
            Ok(version) => println!("database: PostgreSQL at {shown}: reachable ({version})"),
            Err(e) => {
                println!("database: PostgreSQL at {shown}: UNREACHABLE: {e}");
                ok = false;
            }
        }
    }
    let clusters = match Clusters::from_environment(&c.contexts()).await {
        Ok(clusters) => clusters,
        Err(e) => {
            eprintln!("clusters: {e}");
            eprintln!("(use --offline to check only the file)");
            return EXIT_SETUP;
        }
    };
    let timeout = c
        .server
        .ready_timeout
        .max(std::time::Duration::from_secs(5));
    for (context, client) in clusters.all() {
        let name = context.unwrap_or("default");
        let mut namespaces: Vec<&str> = c
            .services
            .iter()
            .filter(|s| s.context.as_deref() == context)
            .map(|s| s.namespace.as_str())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        match oncall_ops::reachable(client, timeout).await {
            Ok(version) => println!("cluster {name}: reachable ({version})"),
            Err(e) => {
                println!("cluster {name}: UNREACHABLE: {e}");
                ok = false;
                continue;
            }
        }
        let needed = oncall_ops::access::REQUIRED.len();
        if context.is_none() && c.election.enabled {
            let lease = c.election.elector_config();
            let missing = oncall_ops::access::missing_of(
                client,
                &lease.namespace,
                oncall_ops::access::ELECTION,
            )
            .await;
            if missing.is_empty() {
                println!(
                    "  election: may get, create and update leases in namespace {}",
                    lease.namespace
                );
            } else {
                ok = false;
                println!(
                    "  election: MISSING in namespace {} (Lease {}):",
                    lease.namespace, lease.name
                );
                for m in &missing {
                    println!(
                        "    {} {}/{}: {}",
                        m.access.verb, m.access.group, m.access.resource, m.reason
                    );
                }
            }
        }
        for ns in namespaces {
            let missing = oncall_ops::access::missing(client, ns).await;
            if missing.is_empty() {
                println!("  namespace {ns}: all {needed} permissions granted");
                continue;
            }
            ok = false;
            println!(
                "  namespace {ns}: MISSING {} of {needed} permissions:",
                missing.len()
            );
            for m in &missing {
                println!(
                    "    {} {}{} (for {}): {}",
                    m.access.verb,
                    if m.access.group.is_empty() {
                        String::new()
                    } else {
                        format!("{}/", m.access.group)
                    },
                    m.access.resource,
                    m.access.used_by,
                    m.reason
                );
            }
            println!(
                "    add to the oncall Role in namespace {ns} (deploy/kustomize/base/rbac.yaml):"
            );
            for m in &missing {
                for line in m.rule().lines() {
                    println!("    {line}");
                }
            }
        }
    }
    if ok {
        0
    } else {
        EXIT_SETUP
    }
}

/// `oncall store copy --from sqlite://PATH --to postgres://…`.
pub async fn store_copy(from: &str, to: &str) -> anyhow::Result<()> {
    let path = PathBuf::from(from.strip_prefix("sqlite://").unwrap_or(from));
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        anyhow::bail!("--to: expected a postgres:// URL");
    }
    let shown = crate::store::postgres::redacted_url(to);
    let copied = crate::store::copy::sqlite_to_postgres(&path, to)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace(to, &shown)))
        .with_context(|| format!("copying {} to {shown}", path.display()))?;
    let total: u64 = copied.iter().map(|(_, n)| n).sum();
    println!("copied {total} rows from {} to {shown}:", path.display());
    for (table, n) in copied {
        println!("  {table}: {n}");
    }
    Ok(())
}

/// `oncall backup FILE`: a consistent copy of the config's database.
pub async fn backup(config: &Path, to: &Path) -> anyhow::Result<()> {
    let c = Config::load(config)?;
    if c.database.postgres_url().is_some() {
        anyhow::bail!("oncall backup copies a SQLite database; this config uses PostgreSQL ({}): back it up with pg_dump or your provider's snapshots", c.database.describe());
    }
    crate::backup::backup(&c.database.path, to).await
}

/// `oncall restore FILE`: the config's database replaced by a backup.
pub async fn restore(config: &Path, from: &Path) -> anyhow::Result<()> {
    let c = Config::load(config)?;
    if c.database.postgres_url().is_some() {
        anyhow::bail!("oncall restore replaces a SQLite database; this config uses PostgreSQL ({}): restore it with pg_restore", c.database.describe());
    }
    crate::backup::restore(&c.database.path, from).await
}

/// `oncall sim`: the simulator alone, until Ctrl-C.
pub async fn sim(
    listen: SocketAddr,
    kubeconfig_out: Option<PathBuf>,
    seed: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut sim_config = kube_sim::SimConfig::default();
    if let Some(seed) = seed {
        sim_config.seed = std::fs::read_to_string(&seed)
            .with_context(|| format!("reading {}", seed.display()))?;
    }
    let running = kube_sim::Simulator::new(sim_config)?.serve(listen).await?;
    if let Some(path) = &kubeconfig_out {
        std::fs::write(path, kube_sim::kubeconfig_yaml(&running.url()))
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "kubeconfig written to {} (export KUBECONFIG={})",
            path.display(),
            path.display()
        );
    }
    println!(
        "simulated Kubernetes API at {} — Ctrl-C to stop",
        running.url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
