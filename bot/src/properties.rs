//! Properties over generated input for the adapters' decoders: a Slack
//! form body and a Discord interaction, however malformed, never panic on
//! their way to command text.

use proptest::prelude::*;
use serde_json::Value;

use crate::discord::schema;

/// Arbitrary JSON, biased toward the shapes of Discord's `data.options`.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        prop::sample::select(vec![
            "scale", "rollout", "status", "replicas", "service", "backend", "dry-run", "wait",
            "options", "name", "value", "type", "focused"
        ])
        .prop_map(|s| Value::String(s.into())),
        "\\PC{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["name", "type", "value", "options", "focused", "x"]),
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn discord_interactions_never_panic(data in json(), verb in prop::sample::select(
        oncall_grammar::VERBS.iter().map(|v| v.name).collect::<Vec<_>>()
    )) {
        if let Some((found, options)) = schema::invoked(&data) {
            if let Some(text) = schema::options_to_text(&found, &options) {
                let _ = oncall_grammar::parse(&text);
            }
            let _ = schema::focused(&options);
        }
        if let Value::Array(options) = &data {
            if let Some(text) = schema::options_to_text(verb, options) {
                let _ = oncall_grammar::parse(&text);
            }
        }
    }

    #[test]
    fn slack_forms_never_panic(body in prop::collection::vec(any::<u8>(), 0..300),
                               user in "\\PC{0,20}", text in "\\PC{0,80}") {
        let _ = serde_urlencoded::from_bytes::<slack_morphism::prelude::SlackCommandEvent>(&body);
        let form = serde_urlencoded::to_string([
            ("team_id", "T1"), ("channel_id", "C1"), ("user_id", user.as_str()),
            ("command", "/oncall"), ("text", text.as_str()),
            ("response_url", "https://hooks.slack.com/commands/x"), ("trigger_id", "t"),
        ]).unwrap();
        if let Ok(cmd) = serde_urlencoded::from_bytes::<slack_morphism::prelude::SlackCommandEvent>(form.as_bytes()) {
            let _ = format!("slack:{}", cmd.user_id.0).parse::<oncall_permissions::Principal>();
            let _ = oncall_grammar::parse(cmd.text.as_deref().unwrap_or_default());
        }
    }
}
