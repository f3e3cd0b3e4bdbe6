//! Gateway mode: for bots without a public URL. serenity's `Client` receives
//! interactions over the gateway websocket; each goes through the same
//! [`super::handle`] as the HTTP endpoint, and the response is sent with the
//! interaction callback endpoint.

use std::sync::Arc;

use serenity::all::{Context, EventHandler, GatewayIntents, Interaction, Ready};
use serenity::async_trait;

use super::DiscordState;

pub struct Handler {
    pub state: Arc<DiscordState>,
}

/// One gateway interaction, end to end (tested without a gateway).
pub async fn on_interaction(state: &Arc<DiscordState>, interaction: &Interaction) {
    let mut value = match serde_json::to_value(interaction) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("could not read a gateway interaction: {e}");
            return;
        }
    };
    // serenity keeps the interaction type in the enum, not in the fields.
    value["type"] = serde_json::json!(match interaction {
        Interaction::Ping(_) => 1,
        Interaction::Command(_) => 2,
        Interaction::Component(_) => 3,
        Interaction::Autocomplete(_) => 4,
        Interaction::Modal(_) => 5,
        _ => 0,
    });
    let (Some(id), Some(token)) = (value["id"].as_str(), value["token"].as_str()) else {
        return;
    };
    let response = super::handle(state, &value).await;
    if let Err(e) = state.api.callback(id, token, &response).await {
        tracing::error!("could not answer a gateway interaction: {e}");
    }
}

#[async_trait]
impl EventHandler for Handler {
    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        on_interaction(&self.state, &interaction).await;
    }

    async fn ready(&self, _ctx: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, "connected to the Discord gateway");
    }
}

/// Runs the gateway client until it stops.
pub async fn run(state: Arc<DiscordState>, token: &str) -> Result<(), serenity::Error> {
    let mut client = serenity::Client::builder(token, GatewayIntents::GUILDS)
        .event_handler(Handler { state })
        .await?;
    client.start().await
}
