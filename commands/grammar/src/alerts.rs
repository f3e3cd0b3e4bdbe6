//! `alerts`: what is firing now, since when, and its incident. Alerts come
//! in from Alertmanager (`POST /alerts/alertmanager`); reading them is the
//! `alerts` policy verb.

use serde::{Deserialize, Serialize};

use crate::spec::{Values, VerbSpec, PUBLIC};
use crate::verbs::read;
use crate::verbs::Verb;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alerts {}

pub static ALERTS: VerbSpec = read(
    "alerts",
    "alerts",
    &[],
    &[PUBLIC],
    "What is firing now (from Alertmanager), since when, and its incident.",
    "alerts",
    |_| Ok(Alerts {}.into()),
);

impl Verb for Alerts {
    fn values(&self) -> Values {
        Values::new(&ALERTS)
    }
}
