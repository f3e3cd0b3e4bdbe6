//! `help [verb]`: generated from the grammar's spec table.

use oncall_grammar::{spec, VERBS};

use crate::reply::{Outcome, Reply};
use super::{Context, Handle, Refusal};
use crate::model::Handled;

impl Handle for oncall_grammar::Help {
    async fn handle(&self, _cx: &Context<'_>) -> Result<Handled, Refusal> {
        Ok(Handled::info(reply(self.verb.as_deref())))
    }
}

pub fn reply(verb: Option<&str>) -> Reply {
    match verb.and_then(spec::find) {
        Some(v) => {
            let mut r = Reply::new(Outcome::Info, format!("/oncall {}", v.name))
                .text(v.summary)
                .code(Some("Usage"), format!("/oncall {}", v.usage()));
            let flags: Vec<(String, String)> = v
                .flags
                .iter()
                .map(|f| match f.kind {
                    Some(_) => (format!("--{} {}", f.name, f.placeholder), f.help.to_string()),
                    None => (format!("--{}", f.name), f.help.to_string()),
                })
                .collect();
            r = r.fields(flags);
            r.text(format!("Example: `/oncall {}`", v.example))
        }
        None => {
            let lines: Vec<Vec<String>> = VERBS
                .iter()
                .map(|v| vec![format!("/oncall {}", v.usage()), v.summary.to_string()])
                .collect();
            Reply::new(Outcome::Info, "oncall commands")
                .code(None, crate::reply::table(&["COMMAND", "WHAT IT DOES"], &lines, 90))
                .text("`/oncall help <command>` shows one command with an example. Add `--public` to show a reply to the channel.")
        }
    }
}
