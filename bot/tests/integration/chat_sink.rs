//! The outbound side (ChatSink) against the fake Slack and Discord: every
//! operation, and the platforms' own error cases.

use oncall::chat::{ChatError, ChatSink, DiscordSink, MessageRef, NewChannel, SlackSink};
use oncall::discord::api::DiscordApi;
use oncall::reply::{Outcome, Reply};
use oncall::slack::api::SlackApi;

use crate::common::fake_discord::{self, FakeDiscord, GUILD_ID};
use crate::common::fake_slack::{self, FakeChannel, FakeSlack, BOT_USER};

fn reply(title: &str) -> Reply {
    Reply::new(Outcome::Info, title).text("Status updates every 15 minutes.")
}

fn incident_channel() -> NewChannel {
    NewChannel {
        name: "inc-42-checkout-down".into(),
        topic: Some("SEV-1: checkout is down".into()),
        invite: vec!["UOPS1".into(), "UCMDR1".into()],
        thread_of: None,
    }
}

async fn slack() -> (FakeSlack, SlackSink) {
    let fake = FakeSlack::start().await;
    let api = SlackApi::new(
        reqwest::Client::new(),
        fake.api_url(),
        Some(fake_slack::BOT_TOKEN.into()),
    );
    (fake, SlackSink::new(api))
}

#[tokio::test]
async fn slack_posts_updates_and_messages_people_directly() {
    let (fake, sink) = slack().await;
    let posted = sink
        .post("C0OPS", &reply("Incident 42 declared"))
        .await
        .unwrap();
    assert_eq!(posted.channel, "C0OPS");
    assert!(!posted.id.is_empty(), "the ts comes back");
    let call = &fake.calls("/api/chat.postMessage")[0];
    assert!(call.body.to_string().contains("Incident 42 declared"));
    sink.update(&posted, &reply("Incident 42 resolved"))
        .await
        .unwrap();
    let update = &fake.calls("/api/chat.update")[0];
    assert_eq!(update.body["ts"], posted.id.as_str());
    assert!(update.body.to_string().contains("Incident 42 resolved"));
    let dm = sink
        .direct_message("UOPS1", &reply("You are paged"))
        .await
        .unwrap();
    assert_eq!(
        dm.channel, "DOPS1",
        "posted in the DM conversations.open gave"
    );
    assert_eq!(
        fake.calls("/api/conversations.open")[0].body["users"],
        "UOPS1"
    );
    match sink.direct_message("not-a-user", &reply("x")).await {
        Err(ChatError::NotFound(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn slack_creates_an_incident_channel_and_adopts_it_after_a_crash() {
    let (fake, sink) = slack().await;
    let created = sink.create_channel(&incident_channel()).await.unwrap();
    assert!(!created.adopted);
    {
        let channels = fake.state.channels.lock().unwrap();
        let c = channels.iter().find(|c| c.id == created.id).unwrap();
        assert_eq!(c.topic, "SEV-1: checkout is down");
        for who in ["UOPS1", "UCMDR1"] {
            assert!(c.members.iter().any(|m| m == who), "{who} invited");
        }
    }
    // The same request again (as after a crash before the id was recorded):
    // name_taken, found as ours, adopted; everyone is already in it.
    let again = sink.create_channel(&incident_channel()).await.unwrap();
    assert!(again.adopted);
    assert_eq!(again.id, created.id);
    assert_eq!(fake.state.channels.lock().unwrap().len(), 1);
    let invites = fake.calls("/api/conversations.invite");
    assert_eq!(invites.last().unwrap().body["users"], "UOPS1,UCMDR1");
}

#[tokio::test]
async fn slack_refuses_a_name_someone_else_took_and_invalid_names() {
    let (fake, sink) = slack().await;
    fake.state.channels.lock().unwrap().push(FakeChannel {
        id: "C0HUMAN".into(),
        name: "inc-42-checkout-down".into(),
        creator: "UHUMAN1".into(),
        members: vec!["UHUMAN1".into()],
        topic: String::new(),
    });
    match sink.create_channel(&incident_channel()).await {
        Err(ChatError::NameTaken(name)) => assert_eq!(name, "inc-42-checkout-down"),
        other => panic!("{other:?}"),
    }
    assert!(
        fake.calls("/api/conversations.invite").is_empty(),
        "nobody is invited into someone else's channel"
    );
    let creates = fake.calls("/api/conversations.create").len();
    let bad = NewChannel {
        name: "Incident 42!".into(),
        topic: None,
        invite: vec![],
        thread_of: None,
    };
    assert!(matches!(
        sink.create_channel(&bad).await,
        Err(ChatError::Refused(_))
    ));
    assert_eq!(
        fake.calls("/api/conversations.create").len(),
        creates,
        "an invalid name never reaches Slack"
    );
    assert_ne!(BOT_USER, "UHUMAN1");
}

#[tokio::test]
async fn slack_waits_out_a_429_and_posts_once() {
    let (fake, sink) = slack().await;
    *fake.state.rate_limit_post.lock().unwrap() = 1;
    sink.post("C0OPS", &reply("after a 429")).await.unwrap();
    let calls = fake.calls("/api/chat.postMessage");
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
}

async fn discord(guild: Option<&str>) -> (FakeDiscord, DiscordSink) {
    let fake = FakeDiscord::start().await;
    let api = DiscordApi::new(
        reqwest::Client::new(),
        fake.api_url(),
        Some(fake_discord::BOT_TOKEN.into()),
        Some(fake_discord::APP_ID.into()),
    );
    (fake, DiscordSink::new(api, guild.map(String::from)))
}

#[tokio::test]
async fn discord_creates_posts_updates_and_messages_people_directly() {
    let (fake, sink) = discord(Some(GUILD_ID)).await;
    let channel = sink.create_channel(&incident_channel()).await.unwrap();
    assert!(!channel.adopted);
    let posted = sink
        .post(&channel.id, &reply("Incident 42 declared"))
        .await
        .unwrap();
    assert_eq!(posted.channel, channel.id);
    sink.update(&posted, &reply("Incident 42 resolved"))
        .await
        .unwrap();
    let edit = fake
        .calls()
        .into_iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with(&format!("/messages/{}", posted.id)))
        .expect("the message was edited");
    assert!(edit.body.to_string().contains("Incident 42 resolved"));
    let dm = sink
        .direct_message("700000000000000042", &reply("You are paged"))
        .await
        .unwrap();
    assert_eq!(dm.channel, "DM700000000000000042");
    // Discord allows duplicate names: ours is looked up and adopted instead.
    let again = sink.create_channel(&incident_channel()).await.unwrap();
    assert!(again.adopted);
    assert_eq!(again.id, channel.id);
    assert_eq!(fake.state.channels.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn discord_errors_are_typed_and_429s_waited_out() {
    let (fake, sink) = discord(Some(GUILD_ID)).await;
    let missing = MessageRef {
        channel: "619999999999999999".into(),
        id: "1".into(),
    };
    assert!(matches!(
        sink.post(&missing.channel, &reply("x")).await,
        Err(ChatError::NotFound(_))
    ));
    *fake.state.rate_limit_rest.lock().unwrap() = 1;
    let channel = sink.create_channel(&incident_channel()).await.unwrap();
    assert!(!channel.id.is_empty());
    assert!(fake.calls().iter().any(|c| c.status == 429));
    let (_fake, no_guild) = discord(None).await;
    assert!(matches!(
        no_guild.create_channel(&incident_channel()).await,
        Err(ChatError::NotConfigured(_))
    ));
}
