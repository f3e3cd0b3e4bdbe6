// The @slack/bolt side of bench/run: verify the request's signature and
// acknowledge the slash command, nothing more (no parsing, no policy, no
// database). Listens on PORT at Bolt's default path, /slack/events.
const { App, LogLevel } = require('@slack/bolt');

const app = new App({
  signingSecret: process.env.SLACK_SIGNING_SECRET,
  token: 'xoxb-bench-unused',
  // Known bot ids and no verification at start: Bolt never calls auth.test
  // (the benchmark has no Slack to ask).
  botId: 'BBENCH0001',
  botUserId: 'UBOT00001',
  tokenVerificationEnabled: false,
  logLevel: LogLevel.ERROR,
});

app.command('/oncall', async ({ ack }) => {
  await ack({ response_type: 'ephemeral', text: 'ok' });
});

(async () => {
  await app.start(Number(process.env.PORT || 3000));
})();
