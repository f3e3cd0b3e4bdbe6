//! The ceiling of `bench/run`: a bare axum handler that answers every slash
//! command with 200 and does nothing else (no signature check, no parsing,
//! no database). No server that does real work can be faster on the same
//! machine, so the others are reported as a share of it.

use axum::routing::post;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let app = axum::Router::new().route(
        "/slack/commands",
        post(|| async {
            axum::Json(serde_json::json!({"response_type": "ephemeral", "text": "ok"}))
        }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
