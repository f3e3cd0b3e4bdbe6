//! The interactive console of `oncall demo`: type commands as a principal you
//! can switch, see the replies rendered as text.
//!
//! Lines starting with `:` talk to the console itself (`:as cli:viewer`,
//! `:channel ID`, `:alert KafkaConsumerLag`, `:help`, `:quit`); everything else is a command, with or
//! without the `/oncall` prefix, sent through the same router as Slack and
//! Discord. Reads any line source, so scripts can pipe into it.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use oncall_permissions::{Principal, PrincipalKind};

use crate::model::{Invocation, Platform};
use crate::router::Router;

pub const CONSOLE_HELP: &str = "\
Console commands:
  :as PRINCIPAL   act as another principal (cli:viewer, cli:operator, cli:commander, cli:admin)
  :channel ID     pretend to type in another channel (policy scopes channels by id)
  :alert NAME     a runbook alert fires as Alertmanager would send it (`:alert KafkaConsumerLag`);
                  `:alert NAME resolve` resolves it
  :help           this text; `help` lists oncall's commands
  :quit           leave (Ctrl-D works too)
";

pub struct Console {
    router: Router,
    principal: Principal,
    channel: String,
    /// When this console's demo alerts started firing (their identity).
    started: String,
}

impl Console {
    pub fn new(router: Router, principal: Principal) -> Self {
        let started = router.clock().now().to_string();
        Console {
            router,
            principal,
            channel: "console".to_string(),
            started,
        }
    }

    /// Reads lines until EOF or `:quit`, writing prompts and replies.
    pub async fn run<R, W>(&mut self, input: R, mut output: W) -> std::io::Result<()>
    where
        R: AsyncBufRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut lines = input.lines();
        loop {
            output.write_all(self.prompt().as_bytes()).await?;
            output.flush().await?;
            let Some(line) = lines.next_line().await? else {
                output.write_all(b"\n").await?;
                break;
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            output.write_all(format!("{line}\n").as_bytes()).await?;
            if let Some(rest) = line.strip_prefix(":alert") {
                let mut words = rest.split_whitespace();
                let text = match words.next() {
                    None => "usage: :alert NAME [resolve]  (a runbook alert rule, e.g. :alert KafkaConsumerLag)\n".to_string(),
                    Some(name) => {
                        let resolve = words.next().is_some_and(|w| w == "resolve");
                        let said = crate::alerts::demo_alert(&self.router, name, resolve, &self.started)
                            .await
                            .unwrap_or_else(|e| format!("{e}\n"));
                        if resolve {
                            // The next firing is a new alert.
                            self.started = self.router.clock().now().to_string();
                        }
                        said
                    }
                };
                output.write_all(text.as_bytes()).await?;
                continue;
            }
            if let Some(meta) = line.strip_prefix(':') {
                match self.meta(meta) {
                    Some(text) => output.write_all(text.as_bytes()).await?,
                    None => break,
                }
                continue;
            }
            if matches!(line, "exit" | "quit") {
                break;
            }
            let reply = self
                .router
                .handle(Invocation {
                    platform: Platform::Cli,
                    workspace: None,
                    channel: self.channel.clone(),
                    principal: self.principal.clone(),
                    groups: Vec::new(),
                    text: line.to_string(),
                    idempotency_key: None,
                    progress: None,
                    received_at: self.router.clock().now(),
                })
                .await;
            output.write_all(reply.to_console().as_bytes()).await?;
            output.write_all(b"\n").await?;
        }
        output.flush().await
    }

    fn prompt(&self) -> String {
        format!("{}@{}> ", self.principal, self.channel)
    }

    /// Handles a `:` line; `None` means quit.
    fn meta(&mut self, line: &str) -> Option<String> {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("");
        let arg = words.next();
        Some(match (verb, arg) {
            ("q" | "quit" | "exit", _) => return None,
            ("help" | "h", _) => CONSOLE_HELP.to_string(),
            ("as", Some(who)) => {
                let who = if who.contains(':') {
                    who.to_string()
                } else {
                    format!("cli:{who}")
                };
                match who.parse::<Principal>() {
                    Ok(p) if p.kind().is_person() || p.kind() == PrincipalKind::Cli => {
                        self.principal = p;
                        format!("You are now {}.\n", self.principal)
                    }
                    Ok(p) => format!("{p} is a group or role, not a person; act as a person.\n"),
                    Err(e) => format!("{e}\n"),
                }
            }
            ("channel", Some(id)) => {
                self.channel = id.to_string();
                format!("Now in channel cli:{id}.\n")
            }
            _ => format!("unknown console command `:{line}`\n{CONSOLE_HELP}"),
        })
    }
}
