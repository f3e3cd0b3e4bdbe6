"""The slack-bolt (Python, async) side of bench/run: verify the request's
signature and acknowledge the slash command, nothing more. Listens on PORT
at Bolt's default path, /slack/events (aiohttp)."""

import logging
import os

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult

logging.basicConfig(level=logging.ERROR)


async def authorize(enterprise_id, team_id, logger):
    # Known ids: Bolt never calls auth.test (the benchmark has no Slack to ask).
    return AuthorizeResult(
        enterprise_id=enterprise_id,
        team_id=team_id,
        bot_token="xoxb-bench-unused",
        bot_id="BBENCH0001",
        bot_user_id="UBOT00001",
    )


app = AsyncApp(
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    authorize=authorize,
)


@app.command("/oncall")
async def oncall(ack):
    await ack(response_type="ephemeral", text="ok")


if __name__ == "__main__":
    app.start(port=int(os.environ.get("PORT", "3001")))
