//! The incident courier: reminders when due (never twice, never skipped),
//! the incident's own channel (created, adopted after a crash, refused when
//! someone else holds the name), the announcement, and every timeline event
//! posted to the channel once. Passes are run by hand with the harness's
//! manual clock.

use std::sync::Arc;
use std::time::Duration;

use oncall::chat::{ConsoleSink, Sinks, SlackSink};
use oncall::config::{Config, EXAMPLE};
use oncall::courier::Courier;
use oncall::model::Platform;
use oncall::reply::Outcome;
use oncall::router::Router;
use oncall::slack::api::SlackApi;

use crate::common::fake_discord::{self, FakeDiscord, GUILD_ID};
use crate::common::fake_slack::{self, FakeChannel, FakeSlack, BOT_USER};
use crate::common::Harness;

const COMMANDER: &str = "cli:commander";

pub(crate) fn console_courier(h: &Harness) -> (Courier, ConsoleSink) {
    let console = ConsoleSink::default();
    let sinks = Sinks {
        console: Some(console.clone()),
        ..Default::default()
    };
    (Courier::new(h.router.clone(), Arc::new(sinks)), console)
}

async fn kinds(h: &Harness, id: i64) -> Vec<String> {
    h.router
        .store()
        .incident_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

#[tokio::test]
async fn reminders_fire_when_due_not_after_an_update_and_once_across_a_restart() {
    let h = Harness::new().await;
    let (courier, console) = console_courier(&h);
    let reply = h
        .run(COMMANDER, "incident declare SEV-1 checkout down")
        .await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
    // Runbook 004: critical incidents update every 15 minutes.
    h.clock.advance(minutes(14));
    assert_eq!(courier.pass().await.unwrap().reminders, 0, "not yet due");
    h.clock.advance(minutes(1));
    assert_eq!(courier.pass().await.unwrap().reminders, 1, "due at 15 min");
    assert_eq!(courier.pass().await.unwrap().reminders, 0, "fired once");

    // An update resets it.
    h.clock.advance(minutes(5));
    h.run(COMMANDER, "incident update 1 mitigation under way")
        .await;
    h.clock.advance(minutes(14));
    assert_eq!(
        courier.pass().await.unwrap().reminders,
        0,
        "14 min after the update"
    );
    h.clock.advance(minutes(1));
    assert_eq!(courier.pass().await.unwrap().reminders, 1);

    // Nobody ran the courier for an hour (the process was down): the
    // reminder fires once, then every 15 min from now, not three at once.
    h.clock.advance(minutes(60));
    assert_eq!(courier.pass().await.unwrap().reminders, 1);
    assert_eq!(courier.pass().await.unwrap().reminders, 0);

    // A second process on the same file (a restart, a second replica)
    // finds nothing to fire that the first already fired.
    let config = Config::parse(EXAMPLE, "example").unwrap();
    let mut config = config;
    config.database.path = h.dir.path().join("oncall.db");
    let store = oncall::store::Store::open(&config.database.path)
        .await
        .unwrap();
    let other = Router::new(
        config,
        store,
        oncall_ops::Clusters::single(h.client.clone()),
        h.clock.clone(),
    );
    let other = Courier::new(other, Arc::new(Sinks::default()));
    h.clock.advance(minutes(15));
    let (a, b) = tokio::join!(courier.pass(), other.pass());
    assert_eq!(
        a.unwrap().reminders + b.unwrap().reminders,
        1,
        "two couriers at once fire it once"
    );
    let reminders = kinds(&h, 1)
        .await
        .into_iter()
        .filter(|k| k == "reminder")
        .count();
    assert_eq!(reminders, 4);

    // Resolved: no more reminders.
    h.run(COMMANDER, "incident resolve 1").await;
    h.clock.advance(minutes(30));
    assert_eq!(courier.pass().await.unwrap().reminders, 0);

    // The reminders reached the incident's channel, naming the commander.
    let posted = console.posted();
    let in_channel: Vec<&String> = posted
        .iter()
        .filter(|(c, _)| c == "inc-1-checkout-down")
        .map(|(_, t)| t)
        .collect();
    assert!(
        in_channel
            .iter()
            .any(|t| t.contains("reminder: no status update for 15m; cli:commander")),
        "{in_channel:?}"
    );
}

#[tokio::test]
async fn the_channel_the_announcement_and_each_event_once() {
    let h = Harness::new().await;
    let (courier, console) = console_courier(&h);
    h.run(
        COMMANDER,
        "incident declare P1 checkout errors --service backend",
    )
    .await;
    let pass = courier.pass().await.unwrap();
    assert_eq!((pass.channels, pass.announced, pass.posted), (1, 1, 1));
    let incident = h.router.store().incident(1).await.unwrap().unwrap();
    assert_eq!(incident.channel.as_deref(), Some("inc-1-checkout-errors"));
    let posted = console.posted();
    assert!(
        posted
            .iter()
            .any(|(c, t)| c == "incidents" && t.contains("Incident 1 declared: checkout errors")),
        "{posted:?}"
    );
    assert!(
        posted.iter().any(|(c, t)| c == "inc-1-checkout-errors"
            && t.contains("+00:00  cli:commander  declared SEV-2 checkout errors")),
        "{posted:?}"
    );

    // An ops command in the incident's channel: on the timeline, then posted.
    h.clock.advance(minutes(4));
    let mut inv = h.invocation("cli:operator", "scale backend 4");
    inv.channel = "inc-1-checkout-errors".into();
    assert_eq!(h.router.handle(inv).await.outcome, Outcome::Done);
    let pass = courier.pass().await.unwrap();
    assert_eq!((pass.channels, pass.announced, pass.posted), (0, 0, 1));
    assert!(console
        .posted()
        .iter()
        .any(|(c, t)| c == "inc-1-checkout-errors"
            && t.contains("+00:04  cli:operator  scale backend 4 → done: backend 2 → 4")));
    // Nothing twice: the summary that opens the channel, then each event.
    assert_eq!(courier.pass().await.unwrap(), Default::default());
    let in_channel: Vec<String> = console
        .posted()
        .into_iter()
        .filter(|(c, _)| c == "inc-1-checkout-errors")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(in_channel.len(), 3, "{in_channel:?}");
    assert!(
        in_channel[0].contains("Incident 1 declared: checkout errors"),
        "{in_channel:?}"
    );
    assert!(in_channel[0].contains("Commander"), "{in_channel:?}");
}

async fn slack_harness(slack: &FakeSlack) -> (Harness, Courier) {
    let text = format!(
        "{}\n[[policy.bindings]]\nprincipal = \"slack:UOPS1\"\nroles = [\"incident-commander\"]\n",
        EXAMPLE.replace(
            "announce = { cli = \"incidents\" }",
            "announce = { slack = \"C0INCIDENTS\" }"
        )
    );
    let h = Harness::with_config(Config::parse(&text, "test").unwrap()).await;
    let courier = slack_courier(&h.router, slack);
    (h, courier)
}

/// A courier posting to the fake Slack.
pub(crate) fn slack_courier(router: &Router, slack: &FakeSlack) -> Courier {
    let api = SlackApi::new(
        reqwest::Client::new(),
        slack.api_url(),
        Some(fake_slack::BOT_TOKEN.into()),
    );
    let sinks = Sinks {
        slack: Some(SlackSink::new(api)),
        ..Default::default()
    };
    Courier::new(router.clone(), Arc::new(sinks))
}

async fn declare_on_slack(h: &Harness, title: &str) {
    let mut inv = h.invocation("slack:UOPS1", &format!("incident declare SEV-2 {title}"));
    inv.platform = Platform::Slack;
    inv.workspace = Some("T0001".into());
    inv.channel = "C0OPS".into();
    let reply = h.router.handle(inv).await;
    assert_eq!(reply.outcome, Outcome::Done, "{}", reply.to_console());
}

#[tokio::test]
async fn on_slack_the_channel_is_created_adopted_after_a_crash_or_left_when_taken() {
    let slack = FakeSlack::start().await;
    let (h, courier) = slack_harness(&slack).await;
    declare_on_slack(&h, "queue backlog").await;
    // A crash after the channel was created, before it was recorded: the
    // next process finds ours under that name and adopts it.
    slack.state.channels.lock().unwrap().push(FakeChannel {
        id: "C0ADOPT".into(),
        name: "inc-1-queue-backlog".into(),
        creator: BOT_USER.into(),
        members: vec![BOT_USER.into()],
        topic: String::new(),
    });
    // Someone else's channel already has the second incident's name.
    declare_on_slack(&h, "slow search").await;
    slack.state.channels.lock().unwrap().push(FakeChannel {
        id: "C0THEIRS".into(),
        name: "inc-2-slow-search".into(),
        creator: "USOMEONE".into(),
        members: vec!["USOMEONE".into()],
        topic: String::new(),
    });
    // The third gets a new channel, with its declarer invited.
    declare_on_slack(&h, "disk full").await;

    let pass = courier.pass().await.unwrap();
    assert_eq!(pass.channels, 2, "{pass:?}");
    assert_eq!(pass.announced, 3, "{pass:?}");
    let store = h.router.store();
    let one = store.incident(1).await.unwrap().unwrap();
    assert_eq!(one.channel.as_deref(), Some("C0ADOPT"), "adopted");
    let two = store.incident(2).await.unwrap().unwrap();
    assert_eq!(two.channel, None, "someone else's channel is not taken");
    let why = store.incident_events(2).await.unwrap();
    assert!(
        why.iter()
            .any(|e| e.kind == "channel" && e.text.contains("could not create #inc-2-slow-search")),
        "{why:?}"
    );
    let three = store.incident(3).await.unwrap().unwrap();
    let created = &slack.calls("/api/conversations.create");
    assert!(
        created
            .iter()
            .any(|c| c.status == 200 && c.body["name"] == "inc-3-disk-full"),
        "{created:?}"
    );
    let channel = three.channel.unwrap();
    let members = slack
        .state
        .channels
        .lock()
        .unwrap()
        .iter()
        .find(|c| c.id == channel)
        .unwrap()
        .members
        .clone();
    assert!(members.contains(&"UOPS1".to_string()), "{members:?}");

    // Announced in the incidents channel; events posted to their channels.
    let posts = slack.calls("/api/chat.postMessage");
    let to = |ch: &str| posts.iter().filter(|c| c.body["channel"] == ch).count();
    assert_eq!(to("C0INCIDENTS"), 3);
    assert!(to("C0ADOPT") >= 1);
    assert!(to(&channel) >= 1);
    // A second pass finds nothing left to do.
    let again = courier.pass().await.unwrap();
    assert_eq!((again.channels, again.announced, again.posted), (0, 0, 0));
}

/// A harness whose incidents announce on Discord (`extra` more settings of
/// `[incidents]`), the fake Discord with its incidents channel, and a
/// courier posting there.
async fn discord_courier(extra: &str) -> (FakeDiscord, Harness, Courier) {
    let discord = FakeDiscord::start().await;
    let text = format!(
        "{}\n[[policy.bindings]]\nprincipal = \"discord:111111111111111111\"\nroles = [\"incident-commander\"]\n",
        EXAMPLE.replace(
            "announce = { cli = \"incidents\" }",
            &format!("announce = {{ discord = \"700000000000000001\" }}\n{extra}")
        )
    );
    discord.state.channels.lock().unwrap().push((
        "700000000000000001".into(),
        "incidents".into(),
        0,
    ));
    let h = Harness::with_config(Config::parse(&text, "test").unwrap()).await;
    let api = oncall::discord::api::DiscordApi::new(
        reqwest::Client::new(),
        discord.api_url(),
        Some(fake_discord::BOT_TOKEN.into()),
        Some(fake_discord::APP_ID.into()),
    );
    let courier = Courier::new(
        h.router.clone(),
        Arc::new(Sinks {
            discord: Some(api),
            ..Default::default()
        }),
    );
    (discord, h, courier)
}

async fn declare_on_discord(h: &Harness, title: &str) {
    let mut inv = h.invocation(
        "discord:111111111111111111",
        &format!("incident declare SEV-1 {title}"),
    );
    inv.platform = Platform::Discord;
    inv.workspace = Some(GUILD_ID.into());
    inv.channel = "700000000000000002".into();
    assert_eq!(h.router.handle(inv).await.outcome, Outcome::Done);
}

#[tokio::test]
async fn on_discord_the_channel_is_a_guild_text_channel_made_once() {
    let (discord, h, courier) = discord_courier("").await;
    declare_on_discord(&h, "api down").await;
    let pass = courier.pass().await.unwrap();
    assert_eq!((pass.channels, pass.announced), (1, 1), "{pass:?}");
    let channels = discord.state.channels.lock().unwrap().clone();
    let made: Vec<_> = channels
        .iter()
        .filter(|c| c.1 == "inc-1-api-down")
        .collect();
    assert_eq!(made.len(), 1, "{channels:?}");
    assert_eq!(made[0].2, 0, "a guild text channel");
    let incident = h.router.store().incident(1).await.unwrap().unwrap();
    assert_eq!(incident.channel.as_deref(), Some(made[0].0.as_str()));
    // The declaration went to the incidents channel, the event to its own.
    let calls = discord.calls();
    let posted_to = |ch: &str| {
        calls
            .iter()
            .filter(|c| c.method == "POST" && c.path.ends_with(&format!("/channels/{ch}/messages")))
            .count()
    };
    assert_eq!(posted_to("700000000000000001"), 1);
    assert_eq!(
        posted_to(&made[0].0),
        2,
        "the summary, then the declaration"
    );
}

#[tokio::test]
async fn on_discord_with_threads_the_incident_gets_a_thread_of_the_announce_channel() {
    let (discord, h, courier) = discord_courier("discord_threads = true").await;
    for title in ["api down", "disk full"] {
        declare_on_discord(&h, title).await;
    }
    // A crash left the second's thread made but not recorded: adopted.
    discord.state.threads.lock().unwrap().push((
        "629999".into(),
        "inc-2-disk-full".into(),
        "700000000000000001".into(),
    ));
    let pass = courier.pass().await.unwrap();
    assert_eq!(pass.channels, 2, "{pass:?}");
    let threads = discord.state.threads.lock().unwrap().clone();
    assert_eq!(threads.len(), 2, "{threads:?}");
    assert!(
        threads.iter().all(|t| t.2 == "700000000000000001"),
        "{threads:?}"
    );
    let store = h.router.store();
    let one = store.incident(1).await.unwrap().unwrap();
    let made = threads.iter().find(|t| t.1 == "inc-1-api-down").unwrap();
    assert_eq!(one.channel.as_deref(), Some(made.0.as_str()));
    let two = store.incident(2).await.unwrap().unwrap();
    assert_eq!(two.channel.as_deref(), Some("629999"));
    assert!(
        discord.state.channels.lock().unwrap().len() == 1,
        "no text channel was made"
    );
}

#[tokio::test]
async fn on_discord_a_page_mentions_exactly_who_it_pages_with_an_ack_button() {
    let discord = FakeDiscord::start().await;
    let text = format!(
        "{}\n[[policy.bindings]]\nprincipal = \"discord:111111111111111111\"\nroles = [\"incident-commander\"]\n",
        EXAMPLE.replace(
            r#"{ name = "L1 on-call engineer", targets = ["schedule:primary"]"#,
            r#"{ name = "L1 on-call engineer", targets = ["discord:222222222222222222", "discord-role:333333333333333333"]"#,
        )
    );
    let h = Harness::with_config(Config::parse(&text, "test").unwrap()).await;
    discord
        .state
        .channels
        .lock()
        .unwrap()
        .push(("700000000000000002".into(), "ops".into(), 0));
    declare_on_discord(&h, "api down").await;
    oncall::escalation::engine::tick(&h.router).await.unwrap();
    let api = oncall::discord::api::DiscordApi::new(
        reqwest::Client::new(),
        discord.api_url(),
        Some(fake_discord::BOT_TOKEN.into()),
        Some(fake_discord::APP_ID.into()),
    );
    let sinks = Arc::new(Sinks {
        discord: Some(api),
        ..Default::default()
    });
    let pager = oncall::escalation::pager::Pager::new(h.router.clone(), sinks);
    assert_eq!(pager.drain().await.unwrap().delivered, 2);
    let posts: Vec<_> = discord
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/channels/700000000000000002/messages"))
        .collect();
    assert_eq!(
        posts.len(),
        2,
        "both in the channel it was declared in: {posts:?}"
    );
    let person = posts
        .iter()
        .find(|c| c.body["content"] == "<@222222222222222222>")
        .expect("the person's mention");
    assert_eq!(
        person.body["allowed_mentions"]["users"],
        serde_json::json!(["222222222222222222"])
    );
    assert_eq!(
        person.body["allowed_mentions"]["parse"],
        serde_json::json!([])
    );
    let button = &person.body["components"][0]["components"][0];
    assert_eq!(button["custom_id"], "oncall:ack:1");
    let role = posts
        .iter()
        .find(|c| c.body["content"] == "<@&333333333333333333>")
        .expect("the role's mention");
    assert_eq!(
        role.body["allowed_mentions"]["roles"],
        serde_json::json!(["333333333333333333"])
    );
}
