"""The slack-bolt (Python, async) side of bench/run: verify the request's
signature and acknowledge the slash command, nothing more. Listens on PORT
at Bolt's default path, /slack/events (aiohttp)."""

import logging
import os

from slack_bolt.async_app import AsyncApp

logging.basicConfig(level=logging.ERROR)

app = AsyncApp(
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    token="xoxb-bench-unused",
    # No auth.test call at start: the benchmark has no Slack to ask.
    token_verification_enabled=False,
)


@app.command("/oncall")
async def oncall(ack):
    await ack(response_type="ephemeral", text="ok")


if __name__ == "__main__":
    app.start(port=int(os.environ.get("PORT", "3001")))
