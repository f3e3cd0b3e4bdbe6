//! The PostgreSQL store against a real server: the same schema as the
//! SQLite store's, migrations safe when replicas start together, terms
//! and fencing, and outbox claims that two senders never share.

use std::collections::BTreeSet;

use oncall::store::{NewOutboxMessage, OutboxState, PgStore, Store};

use crate::common::postgres::or_skip;

/// What several `oncall serve` replicas share in a test: one fresh
/// database on the PostgreSQL server, the fast simulator and a fake Slack.
struct Shared {
    url: String,
    sim: kube_sim::RunningSim,
    slack: crate::common::fake_slack::FakeSlack,
}

impl Shared {
    async fn start(pg: &crate::common::postgres::Server) -> Shared {
        Shared {
            url: pg.fresh_database().await,
            sim: crate::common::fast_sim().await,
            slack: crate::common::fake_slack::FakeSlack::start().await,
        }
    }

    /// `n` replicas' configurations: the example config with `replace`
    /// applied and `tail` added, each in a directory of its own.
    fn setups(
        &self,
        n: usize,
        secret: &'static str,
        replace: &[(&str, &str)],
        tail: &str,
    ) -> Vec<crate::common::serve::Setup> {
        (0..n)
            .map(|_| crate::common::serve::Setup::new(&self.sim.url(), secret, replace, tail))
            .collect()
    }
}

fn page(key: &str) -> NewOutboxMessage {
    NewOutboxMessage {
        kind: "page.webhook".into(),
        dedup_key: key.into(),
        payload: serde_json::json!({"text": "backend is down"}),
        created_at_ms: 5_000,
        not_before_ms: 5_000,
    }
}

#[tokio::test]
async fn the_schema_is_the_sqlite_stores_column_for_column() {
    let Some(pg) = or_skip("the_schema_is_the_sqlite_stores_column_for_column") else {
        return;
    };
    let store = PgStore::open(&pg.fresh_database().await).await.unwrap();
    let postgres: BTreeSet<(String, String)> = store.columns().await.unwrap().into_iter().collect();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oncall.db");
    Store::open(&path).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut sqlite = BTreeSet::new();
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        for column in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
            sqlite.insert((table.clone(), column.unwrap()));
        }
    }
    assert!(sqlite.len() > 150, "{sqlite:?}");
    let only_sqlite: Vec<_> = sqlite.difference(&postgres).collect();
    let only_postgres: Vec<_> = postgres.difference(&sqlite).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "the stores' schemas differ:\nonly in SQLite: {only_sqlite:?}\nonly in PostgreSQL: {only_postgres:?}"
    );
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let Some(pg) = or_skip("replicas_starting_together_migrate_once") else {
        return;
    };
    let url = pg.fresh_database().await;
    let (a, b, c) = tokio::join!(
        PgStore::open(&url),
        PgStore::open(&url),
        PgStore::open(&url)
    );
    let (a, _b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
    a.ping().await.unwrap();
    a.check_writable(1_000).await.unwrap();
    a.check_writable(2_000).await.unwrap();
    let g = a.gauges(10_000).await.unwrap();
    assert_eq!(
        (g.outbox_pending, g.incidents_open, g.approvals_pending),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn a_stale_term_claims_and_finishes_nothing_on_postgres() {
    let Some(pg) = or_skip("a_stale_term_claims_and_finishes_nothing_on_postgres") else {
        return;
    };
    let store = PgStore::open(&pg.fresh_database().await).await.unwrap();
    assert_eq!(store.epoch().await.unwrap(), 0);
    let one = store.begin_term("replica-a", 1_000).await.unwrap();
    assert_eq!(one, 1);
    let p1 = store.enqueue(&page("p1")).await.unwrap().unwrap();
    let p2 = store.enqueue(&page("p2")).await.unwrap().unwrap();
    assert_eq!(
        store.enqueue(&page("p1")).await.unwrap(),
        None,
        "one row per dedup key"
    );
    assert_eq!(store.gauges(10_000).await.unwrap().outbox_pending, 2);

    let claimed = store
        .claim_outbox(10_000, 10, Some(one), 30_000)
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), [p1, p2]);
    assert!(store
        .claim_outbox(10_001, 10, Some(one), 40_000)
        .await
        .unwrap()
        .is_empty());
    let again = store
        .claim_outbox(30_000, 10, Some(one), 60_000)
        .await
        .unwrap();
    assert_eq!(again.len(), 2, "past the deadline: due again");

    let two = store.begin_term("replica-b", 31_000).await.unwrap();
    assert_eq!(two, 2);
    assert!(store
        .claim_outbox(31_000, 10, Some(one), 90_000)
        .await
        .unwrap()
        .is_empty());
    store
        .outbox_sent_fenced(&[p1], 31_000, Some(one))
        .await
        .unwrap();
    store
        .outbox_failed_fenced(p2, "HTTP 400", None, Some(one))
        .await
        .unwrap();
    let taken = store
        .claim_outbox(31_000, 10, Some(two), 151_000)
        .await
        .unwrap();
    assert_eq!(
        taken.len(),
        2,
        "the new term takes over the old claims at once"
    );
    assert!(taken
        .iter()
        .all(|m| m.attempts == 0 && m.state == OutboxState::Pending));
    store
        .outbox_sent_fenced(&[p1], 32_000, Some(two))
        .await
        .unwrap();
    store
        .outbox_failed_fenced(p2, "HTTP 503", Some(40_000), Some(two))
        .await
        .unwrap();
    assert!(store
        .claim_outbox(39_999, 10, Some(two), 200_000)
        .await
        .unwrap()
        .is_empty());
    let retried = store
        .claim_outbox(40_000, 10, Some(two), 200_000)
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id, retried[0].attempts), (p2, 1));
    let due: Vec<i64> = store
        .due_outbox(99_000, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(due, [p2], "p1 was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_never_claim_the_same_row() {
    let Some(pg) = or_skip("two_senders_never_claim_the_same_row") else {
        return;
    };
    let url = pg.fresh_database().await;
    let a = PgStore::open(&url).await.unwrap();
    let b = PgStore::open(&url).await.unwrap();
    let epoch = a.begin_term("replica-a", 1_000).await.unwrap();
    for i in 0..200 {
        a.enqueue(&page(&format!("p{i}"))).await.unwrap().unwrap();
    }
    let mut seen = BTreeSet::new();
    loop {
        let (x, y) = tokio::join!(
            a.claim_outbox(10_000, 7, Some(epoch), 100_000),
            b.claim_outbox(10_000, 7, Some(epoch), 100_000)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        if x.is_empty() && y.is_empty() {
            break;
        }
        for m in x.iter().chain(&y) {
            assert!(seen.insert(m.id), "row {} claimed twice", m.id);
        }
    }
    assert_eq!(seen.len(), 200);
}

#[test]
fn a_database_password_never_shows() {
    let shown = oncall::store::postgres::redacted_url("postgres://oncall:s3cret@db:5432/oncall");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("oncall:***@db:5432/oncall"), "{shown}");
    assert_eq!(
        oncall::store::postgres::redacted_url("postgres://db/oncall"),
        "postgres://db/oncall"
    );
}

/// The history and idempotency keys' contract, on whichever store `$s` is
/// (the SQLite `Store` or a `PgStore`: the same calls, the same answers).
macro_rules! history_contract {
    ($s:expr) => {{
        use oncall::store::{Completion, HistoryQuery, KeyClaim, NewInvocation, Start};
        let s = $s;
        let inv = |who: &str, service: &str, at: i64, key: Option<&str>| NewInvocation {
            received_at_ms: at,
            platform: "slack".into(),
            channel: "C1".into(),
            principal: who.into(),
            text: format!("scale {service} 3"),
            idempotency_key: key.map(String::from),
            facts: oncall::store::CommandFacts {
                verb: Some("scale".into()),
                service: Some(service.into()),
                mutating: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let done = Completion {
            verb: Some("scale".into()),
            service: Some("backend".into()),
            mutating: true,
            decision: "allow".into(),
            outcome: "done".into(),
            summary: Some("scaled 2 → 3".into()),
            duration_ms: 12,
            ..Completion::default()
        };
        let Start::Begun(id) = s
            .start_invocation(&inv("slack:U1", "backend", 1_000, Some("T1")), 1_000)
            .await
            .unwrap()
        else {
            panic!("the first delivery begins")
        };
        assert_eq!(
            s.start_invocation(&inv("slack:U1", "backend", 1_001, Some("T1")), 1_001)
                .await
                .unwrap(),
            Start::Repeat(KeyClaim::Running),
            "a retry while the first runs"
        );
        let row = s.invocation(id).await.unwrap().unwrap();
        assert_eq!(
            (row.outcome.as_str(), row.decision.as_str(), row.mutating),
            ("running", "pending", true)
        );
        s.finish_invocation(id, &done, Some(("T1", "{\"first\":true}")))
            .await
            .unwrap();
        assert_eq!(
            s.start_invocation(&inv("slack:U1", "backend", 1_002, Some("T1")), 1_002)
                .await
                .unwrap(),
            Start::Repeat(KeyClaim::Done("{\"first\":true}".into())),
            "a retry after it finished gets the first reply"
        );
        assert_eq!(
            s.key_reply("T1").await.unwrap().as_deref(),
            Some("{\"first\":true}")
        );
        let row = s.invocation(id).await.unwrap().unwrap();
        assert_eq!(row.outcome, "done");
        assert_eq!(row.summary.as_deref(), Some("scaled 2 → 3"));
        assert_eq!(row.idempotency_key.as_deref(), Some("T1"));

        // Recorded in one write (a read): a repeat writes nothing.
        let read = Completion {
            mutating: false,
            service: Some("frontend".into()),
            ..done.clone()
        };
        let Start::Begun(_) = s
            .record_invocation(
                &inv("slack:U2", "frontend", 2_000, Some("T2")),
                &read,
                Some("r2"),
                2_000,
            )
            .await
            .unwrap()
        else {
            panic!("recorded")
        };
        assert_eq!(
            s.record_invocation(
                &inv("slack:U2", "frontend", 2_001, Some("T2")),
                &read,
                Some("r2"),
                2_001
            )
            .await
            .unwrap(),
            Start::Repeat(KeyClaim::Done("r2".into()))
        );
        s.record_invocation(&inv("slack:U3", "backend", 3_000, None), &read, None, 3_000)
            .await
            .unwrap();

        let q = |principal: Option<&str>, service: Option<&str>, since: Option<i64>, limit: u32| {
            HistoryQuery {
                principal: principal.map(String::from),
                service: service.map(String::from),
                since_ms: since,
                limit,
            }
        };
        let all = s.history(&q(None, None, None, 10)).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.received_at).collect::<Vec<_>>(),
            [3_000, 2_000, 1_000]
        );
        let backend = s
            .history(&q(None, Some("backend"), None, 10))
            .await
            .unwrap();
        assert_eq!(
            backend.iter().map(|r| r.id).collect::<Vec<_>>(),
            [id],
            "the completion names the service"
        );
        assert_eq!(
            s.history(&q(Some("slack:U2"), None, None, 10))
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            s.history(&q(None, None, Some(2_000), 10))
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            s.history(&q(None, None, None, 1)).await.unwrap()[0].received_at,
            3_000
        );
    }};
}

#[tokio::test]
async fn the_history_contract_holds_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("oncall.db")).await.unwrap();
    history_contract!(&store);
}

#[tokio::test]
async fn the_history_contract_holds_on_postgres() {
    let Some(pg) = or_skip("the_history_contract_holds_on_postgres") else {
        return;
    };
    let store = PgStore::open(&pg.fresh_database().await).await.unwrap();
    history_contract!(&store);
    // Prunes as SQLite does: rows older than the cutoff, keys with them.
    assert_eq!(store.prune_replies(1_500).await.unwrap(), 1);
    assert_eq!(store.prune_history(2_500).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slack_trigger_delivered_to_two_replicas_begins_once() {
    use oncall::store::{NewInvocation, Start};
    let Some(pg) = or_skip("one_slack_trigger_delivered_to_two_replicas_begins_once") else {
        return;
    };
    let url = pg.fresh_database().await;
    let a = PgStore::open(&url).await.unwrap();
    let b = PgStore::open(&url).await.unwrap();
    for n in 0..20 {
        let inv = NewInvocation {
            received_at_ms: n,
            platform: "slack".into(),
            channel: "C1".into(),
            principal: "slack:U1".into(),
            text: "restart backend".into(),
            idempotency_key: Some(format!("trigger-{n}")),
            ..Default::default()
        };
        let (x, y) = tokio::join!(a.start_invocation(&inv, n), b.start_invocation(&inv, n));
        let begun = [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|s| matches!(s, Start::Begun(_)))
            .count();
        assert_eq!(begun, 1, "delivery {n}: exactly one replica runs it");
    }
}

fn approval(id: &str) -> oncall::store::Approval {
    oncall::store::Approval {
        id: id.into(),
        created_at_ms: 1_000,
        expires_at_ms: 900_000,
        requester: "slack:U1".parse().unwrap(),
        requester_groups: vec![],
        platform: "slack".into(),
        workspace: Some("T0".into()),
        channel: "C1".into(),
        text: "scale backend 0".into(),
        command: oncall_grammar::parse("scale backend 0").unwrap().command,
        rule: "production-scale-to-zero".into(),
        scope: None,
        approvers: vec!["admin".into()],
        state: oncall::store::ApprovalState::Pending,
        decided_by: None,
        decided_at_ms: None,
        request_invocation_id: None,
        execution_invocation_id: None,
    }
}

/// What `Store::consume_approval` does, on a `PgStore`: the decision and
/// the execution row in one transaction.
async fn consume(store: &PgStore, id: &str, by: &str) -> Option<i64> {
    let execution = oncall::store::NewInvocation {
        received_at_ms: 2_000,
        platform: "slack".into(),
        channel: "C1".into(),
        principal: "slack:U1".into(),
        text: "scale backend 0".into(),
        ..Default::default()
    };
    let mut tx = store.begin().await.unwrap();
    tx.decide_approval(id, oncall::store::ApprovalState::Approved, by, 2_000)
        .await
        .unwrap()?;
    let row = tx.start_execution(id, &execution).await.unwrap();
    tx.commit().await.unwrap();
    Some(row)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_pressed_on_two_replicas_runs_once() {
    let Some(pg) = or_skip("an_approval_pressed_on_two_replicas_runs_once") else {
        return;
    };
    let url = pg.fresh_database().await;
    let a = PgStore::open(&url).await.unwrap();
    let b = PgStore::open(&url).await.unwrap();
    for n in 0..10 {
        let id = format!("ap{n}");
        assert!(a.insert_approval(&approval(&id)).await.unwrap());
        assert!(
            !b.insert_approval(&approval(&id)).await.unwrap(),
            "an id is taken once"
        );
        let (x, y) = tokio::join!(consume(&a, &id, "slack:UA"), consume(&b, &id, "slack:UB"));
        let rows: Vec<i64> = [x, y].into_iter().flatten().collect();
        assert_eq!(rows.len(), 1, "approval {id}: exactly one execution");
        let stored = b.approval(&id).await.unwrap().unwrap();
        assert_eq!(stored.state, oncall::store::ApprovalState::Approved);
        assert_eq!(stored.execution_invocation_id, Some(rows[0]));
        assert_eq!(
            stored.command,
            approval(&id).command,
            "the command as requested"
        );
    }
    // Expiry, as on SQLite.
    assert!(a.insert_approval(&approval("late")).await.unwrap());
    assert_eq!(a.expire_approvals(900_000).await.unwrap(), 1);
    assert_eq!(
        consume(&a, "late", "slack:UA").await,
        None,
        "an expired request runs nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_retries_of_one_trigger_on_two_replicas_run_once() {
    use crate::common::serve::{command_body, post_signed};
    let Some(pg) = or_skip("slack_retries_of_one_trigger_on_two_replicas_run_once") else {
        return;
    };
    let shared = Shared::start(pg).await;
    let secret = "two-replica-secret";
    let tail = "[[policy.bindings]]\nprincipal = \"slack:UOPS1\"\nroles = [\"operator\"]\n\
                [election]\nenabled = true\nnamespace = \"default\"\n";
    let setups = shared.setups(2, secret, &[], tail);
    let Shared { url, sim, slack } = shared;
    let env = [("DATABASE_URL", url.as_str())];
    let a = setups[0].serve_env(&slack, "a.log", &env).await;
    let b = setups[1].serve_env(&slack, "b.log", &env).await;
    let http = reqwest::Client::new();
    let restarts = || {
        sim.with_store(|s| {
            s.writes
                .iter()
                .filter(|w| {
                    *w == "PATCH /apis/apps/v1/namespaces/default/deployments/dev-utilities"
                })
                .count()
        })
    };
    for n in 0..5 {
        let trigger = format!("trig-two-{n}");
        let body = command_body(
            "UOPS1",
            "restart dev-utilities",
            &trigger,
            &slack.response_url(n),
        );
        let before = restarts();
        // The first delivery to one replica, Slack's retries to the other.
        let (first, retry) = tokio::join!(
            post_signed(&http, &a.base, secret, body.clone(), &[]),
            post_signed(
                &http,
                &b.base,
                secret,
                body.clone(),
                &[("x-slack-retry-num", "1")]
            ),
        );
        assert_eq!(first.unwrap().status(), 200);
        assert_eq!(retry.unwrap().status(), 200);
        let late = post_signed(&http, &b.base, secret, body, &[("x-slack-retry-num", "2")])
            .await
            .unwrap();
        assert_eq!(late.status(), 200);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while restarts() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "never restarted:\n{}\n{}",
                a.log(),
                b.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            restarts() - before,
            1,
            "delivery {n} ran once across the replicas"
        );
    }
    // One history row per trigger, in the one database.
    let store = PgStore::open(&url).await.unwrap();
    let rows = store
        .history(&oncall::store::HistoryQuery {
            principal: Some("slack:UOPS1".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: BTreeSet<_> = rows
        .iter()
        .filter_map(|r| r.idempotency_key.clone())
        .collect();
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(keys.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_an_installation_from_sqlite_to_postgres_as_it_is() {
    let Some(pg) = or_skip("store_copy_moves_an_installation_from_sqlite_to_postgres_as_it_is")
    else {
        return;
    };
    let h = crate::common::Harness::new().await;
    if h.router.store().kind() != "sqlite" {
        return; // The source must be SQLite.
    }
    // An installation with some life in it.
    h.run("cli:operator", "scale backend 4").await;
    h.run("cli:operator", "status backend").await;
    let held = h.run("cli:operator", "scale backend 0").await;
    assert_eq!(held.outcome.label(), "pending_approval");
    h.run(
        "cli:commander",
        "incident declare sev1 checkout is down --service backend",
    )
    .await;
    h.run("cli:commander", "incident note 1 looking at the database")
        .await;
    oncall::escalation::engine::tick(&h.router).await.unwrap();
    h.run("cli:commander", "override primary cli:admin 4h")
        .await;
    let sqlite = h.router.store().clone();
    let url = pg.fresh_database().await;

    let out = std::process::Command::new(crate::common::serve::BIN)
        .args(["store", "copy", "--from"])
        .arg(format!(
            "sqlite://{}",
            h.dir.path().join("oncall.db").display()
        ))
        .args(["--to", &url])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("copied") && printed.contains("incident_events"),
        "{printed}"
    );
    let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(
        !printed.contains(password),
        "the password is never shown: {printed}"
    );

    let postgres = Store::open_postgres(&url).await.unwrap();
    let q = oncall::store::HistoryQuery {
        limit: 1000,
        ..Default::default()
    };
    assert_eq!(
        postgres.history(&q).await.unwrap(),
        sqlite.history(&q).await.unwrap()
    );
    assert_eq!(
        postgres.incident_events(1).await.unwrap().len(),
        sqlite.incident_events(1).await.unwrap().len()
    );
    assert_eq!(
        postgres.incident(1).await.unwrap(),
        sqlite.incident(1).await.unwrap()
    );
    assert_eq!(
        postgres.escalation_of(1).await.unwrap(),
        sqlite.escalation_of(1).await.unwrap(),
        "the running escalation carries on"
    );
    let far = i64::MAX / 2;
    let ids = |m: Vec<oncall::store::OutboxMessage>| {
        m.into_iter()
            .map(|m| (m.id, m.dedup_key))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(postgres.due_outbox(far, 1000).await.unwrap()),
        ids(sqlite.due_outbox(far, 1000).await.unwrap())
    );
    assert_eq!(
        postgres.epoch().await.unwrap(),
        sqlite.epoch().await.unwrap()
    );
    // New rows get ids after the copied ones.
    let copied_max = sqlite
        .history(&q)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .max()
        .unwrap();
    let next = postgres
        .record_invocation(
            &oncall::store::NewInvocation {
                received_at_ms: 10,
                platform: "cli".into(),
                channel: "console".into(),
                principal: "cli:operator".into(),
                text: "whoami".into(),
                ..Default::default()
            },
            &oncall::store::Completion {
                decision: "allow".into(),
                outcome: "info".into(),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(next, oncall::store::Start::Begun(copied_max + 1));
    // A second copy into a database that has rows is refused.
    let again = std::process::Command::new(crate::common::serve::BIN)
        .args(["store", "copy", "--from"])
        .arg(h.dir.path().join("oncall.db"))
        .args(["--to", &url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

/// The config tail of the multi-replica paging tests: the operator, a fast
/// election, PagerDuty at the fake, and the escalation policy `name` with
/// `tiers` (which incidents of the example's SEV-1 use in their place).
fn replicas_paging_pagerduty(pager_url: &str, key_env: &str, name: &str, tiers: &str) -> String {
    format!(
        r#"
[[policy.bindings]]
principal = "slack:UOPS1"
roles = ["operator"]

[election]
enabled = true
namespace = "default"
lease_duration = "1500ms"
renew_deadline = "1s"
retry_period = "200ms"

[escalation.pagerduty]
url = "{pager_url}"
services.payments = {{ routing_key_env = "{key_env}" }}

[[escalation.policies]]
name = "{name}"
tiers = {tiers}
"#
    )
}

async fn role_of(base: &str) -> String {
    match reqwest::get(format!("{base}/readyz")).await {
        Ok(r) => r.json::<serde_json::Value>().await.unwrap()["election"]["role"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        Err(_) => String::new(),
    }
}

/// Two `oncall serve` replicas on one PostgreSQL and one simulator: the
/// leader pages the first tier and is killed (SIGKILL) before the second;
/// the follower takes over once the lease runs out and pages the second.
/// PagerDuty (a fake that folds by `dedup_key`, as the real one does) holds
/// each step's page once; none is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_escalation_is_replaced_and_each_step_pages_once() {
    use crate::common::fake_pager::{FakePager, ROUTING_KEY};
    use crate::common::serve::{command_body, post_signed};
    use std::time::{Duration, Instant};
    let Some(pg) = or_skip("a_leader_killed_mid_escalation_is_replaced_and_each_step_pages_once")
    else {
        return;
    };
    let shared = Shared::start(pg).await;
    let fake = FakePager::start().await;
    let secret = "failover-secret";
    let tail = replicas_paging_pagerduty(
        &fake.url,
        "FAILOVER_PD_KEY",
        "two-steps",
        r#"[
  { name = "first", targets = ["pagerduty:payments"], delay = "4s" },
  { name = "second", targets = ["pagerduty:payments"] },
]"#,
    );
    let replace = [(
        r#"escalation = "runbook-002""#,
        r#"escalation = "two-steps""#,
    )];
    let setups = shared.setups(2, secret, &replace, &tail);
    let Shared {
        url,
        sim: _sim,
        slack,
    } = shared;
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("FAILOVER_PD_KEY", ROUTING_KEY),
    ];
    let mut a = setups[0].serve_env(&slack, "a.log", &env).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while role_of(&a.base).await != "leader" {
        assert!(Instant::now() < deadline, "a never led:\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = setups[1].serve_env(&slack, "b.log", &env).await;
    while role_of(&b.base).await != "follower" {
        assert!(Instant::now() < deadline, "b never followed:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Declared on the follower; the leader's engine pages it.
    let http = reqwest::Client::new();
    let body = command_body(
        "UOPS1",
        "incident declare SEV-1 checkout down",
        "trig-fail-1",
        &slack.response_url(1),
    );
    let r = post_signed(&http, &b.base, secret, body, &[])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    while fake.pagerduty_alerts().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first tier was never paged:\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill_9();
    let killed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while role_of(&b.base).await != "leader" {
        assert!(Instant::now() < deadline, "b never took over:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took_over = killed.elapsed();
    assert!(
        took_over < Duration::from_secs(10),
        "took over after {took_over:?}"
    );
    while fake.pagerduty_alerts().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the second tier was never paged: {:?}\n{}",
            fake.calls(""),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut keys: Vec<String> = fake.pagerduty_alerts().into_keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "page:1:0:0:pagerduty:payments",
            "page:1:0:1:pagerduty:payments"
        ],
        "each step once: {:?}",
        fake.calls("")
    );
    eprintln!("failover: the follower led {took_over:?} after the leader was killed");
}

/// A leader the API server stops answering (500 to every Lease request)
/// stops leading within its renew deadline, and nothing is paged while no
/// replica can hold the Lease; when the API answers again one replica
/// leads and the page goes out, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_lease_api_stops_paging() {
    use crate::common::fake_pager::{FakePager, ROUTING_KEY};
    use crate::common::serve::{command_body, post_signed};
    use std::time::{Duration, Instant};
    let Some(pg) = or_skip("a_leader_cut_off_from_the_lease_api_stops_paging") else {
        return;
    };
    let shared = Shared::start(pg).await;
    let fake = FakePager::start().await;
    let secret = "cut-off-secret";
    let tail = replicas_paging_pagerduty(
        &fake.url,
        "CUT_PD_KEY",
        "one-step",
        r#"[{ name = "first", targets = ["pagerduty:payments"] }]"#,
    );
    let replace = [(
        r#"escalation = "runbook-002""#,
        r#"escalation = "one-step""#,
    )];
    let setups = shared.setups(2, secret, &replace, &tail);
    let Shared { url, sim, slack } = shared;
    let env = [("DATABASE_URL", url.as_str()), ("CUT_PD_KEY", ROUTING_KEY)];
    let a = setups[0].serve_env(&slack, "a.log", &env).await;
    let b = setups[1].serve_env(&slack, "b.log", &env).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ra, rb) = (role_of(&a.base).await, role_of(&b.base).await);
        if (ra == "leader") ^ (rb == "leader") {
            break;
        }
        assert!(Instant::now() < deadline, "no single leader: {ra} / {rb}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The Lease API fails from now on.
    sim.with_store(|s| s.failing_resources.push("leases".into()));
    let cut = Instant::now();
    while role_of(&a.base).await == "leader" || role_of(&b.base).await == "leader" {
        assert!(
            cut.elapsed() < Duration::from_secs(5),
            "a leader kept leading after its renew deadline:\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped = cut.elapsed();
    // An incident now: nobody leads, so nobody pages.
    let http = reqwest::Client::new();
    let body = command_body(
        "UOPS1",
        "incident declare SEV-1 checkout down",
        "trig-cut-1",
        &slack.response_url(1),
    );
    assert_eq!(
        post_signed(&http, &a.base, secret, body, &[])
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        fake.pagerduty_alerts().is_empty(),
        "paged without a leader: {:?}",
        fake.calls("")
    );
    // The API is back: one replica leads and pages it, once.
    sim.with_store(|s| s.failing_resources.clear());
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.pagerduty_alerts().is_empty() {
        assert!(
            Instant::now() < deadline,
            "never paged:\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let keys: Vec<String> = fake.pagerduty_alerts().into_keys().collect();
    assert_eq!(keys, ["page:1:0:0:pagerduty:payments"]);
    eprintln!("cut off: leading stopped {stopped:?} after the Lease API failed");
}

/// Slack's block_actions payload for pressing Approve on request `id`.
fn approve_click(user: &str, id: &str, response_url: &str) -> String {
    let payload = serde_json::json!({
        "type": "block_actions",
        "team": { "id": "T0001", "domain": "example" },
        "user": { "id": user, "username": "someone", "team_id": "T0001" },
        "api_app_id": "A0001",
        "token": "deprecated",
        "container": { "type": "message", "message_ts": "1700000000.000100", "channel_id": "C0OPS", "is_ephemeral": false },
        "trigger_id": format!("trigger-approve-{user}"),
        "channel": { "id": "C0OPS", "name": "ops" },
        "response_url": response_url,
        "actions": [{
            "type": "button", "action_id": "oncall_approve", "block_id": "b1",
            "text": { "type": "plain_text", "text": "Approve" }, "value": id,
            "action_ts": "1700000002.000002",
        }],
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_requested_on_one_replica_and_pressed_on_the_other_runs_once() {
    use crate::common::serve::{command_body, post_signed, post_signed_to};
    use std::time::{Duration, Instant};
    let Some(pg) =
        or_skip("an_approval_requested_on_one_replica_and_pressed_on_the_other_runs_once")
    else {
        return;
    };
    let shared = Shared::start(pg).await;
    let secret = "approval-two-secret";
    let tail = "[[policy.bindings]]\nprincipal = \"slack:UOPS1\"\nroles = [\"operator\"]\n\
                [[policy.bindings]]\nprincipal = \"slack:UADMIN1\"\nroles = [\"admin\"]\n";
    let setups = shared.setups(2, secret, &[], tail);
    let Shared { url, sim, slack } = shared;
    let env = [("DATABASE_URL", url.as_str())];
    let a = setups[0].serve_env(&slack, "a.log", &env).await;
    let b = setups[1].serve_env(&slack, "b.log", &env).await;
    let http = reqwest::Client::new();
    let restarts = || {
        sim.with_store(|s| {
            s.writes
                .iter()
                .filter(|w| *w == "PATCH /apis/apps/v1/namespaces/default/deployments/backend")
                .count()
        })
    };
    // Requested on a: production restarts need a second person.
    let body = command_body(
        "UOPS1",
        "restart backend",
        "trig-ap-1",
        &slack.response_url(1),
    );
    assert_eq!(
        post_signed(&http, &a.base, secret, body, &[])
            .await
            .unwrap()
            .status(),
        200
    );
    let store = PgStore::open(&url).await.unwrap();
    let q = oncall::store::HistoryQuery {
        limit: 10,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        if let Some(id) = store
            .history(&q)
            .await
            .unwrap()
            .iter()
            .find_map(|r| r.approval_id.clone())
        {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "no approval requested:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(restarts(), 0, "held, not run");
    // Pressed on b, and again on a (a double click reaching both).
    let click = approve_click("UADMIN1", &id, &slack.response_url(2));
    let (x, y) = tokio::join!(
        post_signed_to(
            &http,
            &b.base,
            "/slack/interactions",
            secret,
            click.clone(),
            &[]
        ),
        post_signed_to(&http, &a.base, "/slack/interactions", secret, click, &[]),
    );
    assert_eq!(x.unwrap().status(), 200);
    assert_eq!(y.unwrap().status(), 200);
    while restarts() == 0 {
        assert!(
            Instant::now() < deadline,
            "the approved restart never ran:\n{}\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(restarts(), 1, "approved once, run once");
    let approval = store.approval(&id).await.unwrap().unwrap();
    assert_eq!(approval.state, oncall::store::ApprovalState::Approved);
    assert_eq!(approval.decided_by.as_deref(), Some("slack:UADMIN1"));
}

/// Three `oncall serve` replicas on one PostgreSQL and one simulator:
/// exactly one leads; killed, exactly one of the other two takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_exactly_one_leader_and_one_successor() {
    use std::time::{Duration, Instant};
    let Some(pg) = or_skip("three_replicas_elect_exactly_one_leader_and_one_successor") else {
        return;
    };
    let shared = Shared::start(pg).await;
    let tail = "[election]\nenabled = true\nnamespace = \"default\"\nlease_duration = \"1500ms\"\nrenew_deadline = \"1s\"\nretry_period = \"200ms\"\n";
    let setups = shared.setups(3, "three-secret", &[], tail);
    let Shared {
        url,
        sim: _sim,
        slack,
    } = shared;
    let env = [("DATABASE_URL", url.as_str())];
    let mut served = Vec::new();
    for (i, s) in setups.iter().enumerate() {
        served.push(s.serve_env(&slack, &format!("r{i}.log"), &env).await);
    }
    async fn roles(served: &[crate::common::serve::Served]) -> Vec<String> {
        let mut out = Vec::new();
        for s in served {
            out.push(role_of(&s.base).await);
        }
        out
    }
    let settled = |r: &[String]| {
        r.iter().filter(|x| *x == "leader").count() == 1
            && r.iter().filter(|x| *x == "follower").count() == r.len() - 1
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut r = roles(&served).await;
    while !settled(&r) {
        assert!(
            Instant::now() < deadline,
            "not one leader and two followers: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = roles(&served).await;
    }
    // Never two leaders over several renewals.
    for _ in 0..20 {
        let now = roles(&served).await;
        assert!(
            now.iter().filter(|x| *x == "leader").count() <= 1,
            "{now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = r.iter().position(|x| x == "leader").unwrap();
    let mut dead = served.remove(leader);
    dead.kill_9();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut r = roles(&served).await;
    while !settled(&r) {
        assert!(Instant::now() < deadline, "no single successor: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = roles(&served).await;
    }
}
