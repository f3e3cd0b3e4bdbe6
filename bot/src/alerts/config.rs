//! `[alerts]`: how received alerts become incidents and pages. Routes are
//! matched top to bottom on an alert's labels, like Alertmanager's: the
//! first whose matchers all hold decides the severity, the service, the
//! escalation policy and when to page. Pure, so it is tested by tables.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::hours::{BusinessHours, BusinessHoursConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// `labels.severity` → incident severity, for routes that name none.
    #[serde(default = "default_severity_labels")]
    pub severity_labels: BTreeMap<String, String>,
    /// When every alert of a group has resolved, its incident is marked
    /// `mitigate`d (someone resolves it) or `resolve`d.
    #[serde(default = "default_on_resolved")]
    pub on_resolved: String,
    /// Larger deliveries are refused (413) before they are read.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// When `business-hours` routes page.
    #[serde(default)]
    pub business_hours: BusinessHoursConfig,
    /// How long a first-response button works after it is posted.
    #[serde(
        default = "default_action_ttl",
        with = "crate::config::humantime_serde_compat"
    )]
    pub actions_expire_after: Duration,
    /// Alertmanager's base URL (`http://alertmanager:9093`): where
    /// `silence` and `unsilence` go (its API v2). Unset: they say so.
    #[serde(default)]
    pub alertmanager_url: Option<String>,
    /// The variable holding a bearer token for Alertmanager's API, if it
    /// sits behind one.
    #[serde(default)]
    pub alertmanager_token_env: Option<String>,
    /// Business hours, compiled once.
    #[serde(skip)]
    hours: std::sync::OnceLock<Option<BusinessHours>>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            routes: Vec::new(),
            severity_labels: default_severity_labels(),
            on_resolved: default_on_resolved(),
            max_body_bytes: default_max_body(),
            business_hours: BusinessHoursConfig::default(),
            actions_expire_after: default_action_ttl(),
            alertmanager_url: None,
            alertmanager_token_env: None,
            hours: std::sync::OnceLock::new(),
        }
    }
}

fn default_action_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_severity_labels() -> BTreeMap<String, String> {
    [
        ("critical", "SEV-1"),
        ("page", "SEV-1"),
        ("error", "SEV-2"),
        ("high", "SEV-2"),
        ("warning", "SEV-3"),
        ("info", "SEV-4"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

fn default_on_resolved() -> String {
    "mitigate".into()
}

fn default_max_body() -> usize {
    4 * 1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    /// `label=value`, `label!=value`, `label=~regex`, `label!~regex`
    /// (regexes anchored, as in Alertmanager); all must hold.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// The incident's severity; else from `labels.severity`.
    #[serde(default)]
    pub severity: Option<String>,
    /// The label naming the catalog service.
    #[serde(default = "default_service_label")]
    pub service_label: String,
    /// The escalation policy; else the severity's.
    #[serde(default)]
    pub escalation: Option<String>,
    /// `immediately`, `after 5m` (if still firing then), `business-hours`
    /// (posted, never paged) or `never`.
    #[serde(default = "default_page")]
    pub page: String,
    /// First-response commands offered with the alert.
    #[serde(default)]
    pub actions: Vec<String>,
    /// The channel its alert messages go to (on the first platform of
    /// `incidents.announce`); else that platform's announce channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// The matchers, compiled once (regexes are not cheap to build).
    #[serde(skip)]
    compiled: std::sync::OnceLock<Option<Vec<Matcher>>>,
}

impl RouteConfig {
    /// The compiled matchers; `None` when one does not parse (config
    /// validation refuses that, so such a route never matches).
    fn matchers(&self) -> Option<&[Matcher]> {
        self.compiled
            .get_or_init(|| {
                self.matchers
                    .iter()
                    .map(|m| Matcher::parse(m).ok())
                    .collect()
            })
            .as_deref()
    }
}

fn default_service_label() -> String {
    "service".into()
}

fn default_page() -> String {
    "immediately".into()
}

/// When a route pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageWhen {
    Immediately,
    After(Duration),
    BusinessHours,
    Never,
}

impl PageWhen {
    pub fn parse(s: &str) -> Result<PageWhen, String> {
        match s.trim() {
            "immediately" => Ok(PageWhen::Immediately),
            "business-hours" => Ok(PageWhen::BusinessHours),
            "never" => Ok(PageWhen::Never),
            other => match other.strip_prefix("after ") {
                Some(d) => humantime::parse_duration(d.trim())
                    .ok()
                    .filter(|d| *d <= Duration::from_secs(86400))
                    .map(PageWhen::After)
                    .ok_or_else(|| format!("`{other}`: expected a duration up to 1d after `after`")),
                None => Err(format!(
                    "`{other}` is not when to page: immediately, after <duration>, business-hours or never"
                )),
            },
        }
    }

    /// Whether alerts routed so open an incident and page.
    pub fn pages(self) -> bool {
        matches!(self, PageWhen::Immediately | PageWhen::After(_))
    }
}

/// One matcher on a label.
#[derive(Debug, Clone)]
pub struct Matcher {
    label: String,
    negate: bool,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equal(String),
    Regex(regex::Regex),
}

impl Matcher {
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let (label, op, value) = ["!~", "=~", "!=", "="]
            .iter()
            .find_map(|op| s.split_once(op).map(|(l, v)| (l.trim(), *op, v.trim())))
            .ok_or_else(|| format!("`{s}` is not a matcher: expected label=value, label!=value, label=~regex or label!~regex"))?;
        let ok_label = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok_label {
            return Err(format!("`{s}`: `{label}` is not a label name"));
        }
        let value = value.trim_matches('"').to_string();
        let test = match op {
            "=~" | "!~" => Test::Regex(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 16)
                    .build()
                    .map_err(|e| format!("`{s}`: not a regular expression ({e})"))?,
            ),
            _ => Test::Equal(value),
        };
        Ok(Matcher {
            label: label.to_string(),
            negate: op.starts_with('!'),
            test,
        })
    }

    /// Whether the labels satisfy it (a missing label is the empty string,
    /// as in Alertmanager).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.label).map(String::as_str).unwrap_or("");
        let hit = match &self.test {
            Test::Equal(want) => v == want,
            Test::Regex(re) => re.is_match(v),
        };
        hit != self.negate
    }
}

/// What a route decides for an alert's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed<'a> {
    pub route: &'a str,
    pub severity: Option<String>,
    pub service: Option<String>,
    pub escalation: Option<&'a str>,
    pub page: PageWhen,
    pub actions: &'a [String],
    pub channel: Option<&'a str>,
}

impl AlertsConfig {
    /// The demo's time: `after 5m` becomes `after 5s`, as escalation
    /// delays do there.
    pub fn minutes_as_seconds(&mut self) {
        for r in &mut self.routes {
            if let Ok(PageWhen::After(d)) = PageWhen::parse(&r.page) {
                if d >= Duration::from_secs(60) {
                    r.page = format!("after {}s", d.as_secs() / 60);
                }
            }
        }
    }

    /// The first route whose matchers all hold, and what it decides.
    pub fn route(&self, labels: &BTreeMap<String, String>) -> Option<Routed<'_>> {
        self.routes.iter().find_map(|r| {
            if !r.matchers()?.iter().all(|m| m.matches(labels)) {
                return None;
            }
            let severity = r.severity.clone().or_else(|| {
                labels
                    .get("severity")
                    .and_then(|s| self.severity_labels.get(&s.to_ascii_lowercase()).cloned())
            });
            Some(Routed {
                route: &r.name,
                severity,
                service: labels.get(&r.service_label).cloned(),
                escalation: r.escalation.as_deref(),
                page: PageWhen::parse(&r.page).unwrap_or(PageWhen::Never),
                actions: &r.actions,
                channel: r.channel.as_deref(),
            })
        })
    }

    /// Business hours (UTC weekdays 09:00–17:00 when the config's do not
    /// compile, which validation refuses).
    pub fn hours(&self) -> &BusinessHours {
        self.hours
            .get_or_init(|| self.business_hours.compile().ok())
            .as_ref()
            .unwrap_or_else(|| {
                static FALLBACK: std::sync::OnceLock<BusinessHours> = std::sync::OnceLock::new();
                FALLBACK.get_or_init(|| {
                    BusinessHoursConfig::default()
                        .compile()
                        .expect("the default hours compile")
                })
            })
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = self.business_hours.compile() {
            errors.push(e);
        }
        if let Some(u) = &self.alertmanager_url {
            if reqwest::Url::parse(u).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                errors.push(format!(
                    "alerts.alertmanager_url: `{u}` is not an http(s) URL"
                ));
            }
        }
        if !matches!(self.on_resolved.as_str(), "mitigate" | "resolve") {
            errors.push("alerts.on_resolved: expected \"mitigate\" or \"resolve\"".into());
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("alerts.routes[{i}] ({})", r.name);
            for m in &r.matchers {
                if let Err(e) = Matcher::parse(m) {
                    errors.push(format!("{at}: {e}"));
                }
            }
            if let Err(e) = PageWhen::parse(&r.page) {
                errors.push(format!("{at}: page: {e}"));
            }
            for a in &r.actions {
                match oncall_grammar::parse(a) {
                    Err(e) => errors.push(format!("{at}: action `{a}`: {e}")),
                    Ok(p) if matches!(p.command, oncall_grammar::Command::AlertsRun(_)) => errors
                        .push(format!(
                            "{at}: action `{a}`: a button cannot press a button"
                        )),
                    Ok(_) => {}
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(text: &str) -> AlertsConfig {
        let c: AlertsConfig = toml::from_str(text).unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        c
    }

    #[test]
    fn matchers_are_alertmanagers() {
        let l = labels(&[
            ("alertname", "KafkaConsumerLag"),
            ("service", "recurring-task-service"),
        ]);
        let table = [
            ("alertname=KafkaConsumerLag", true),
            ("alertname!=KafkaConsumerLag", false),
            ("alertname=~Kafka.*", true),
            ("alertname=~Kafka", false), // anchored
            ("alertname!~Kafka", true),
            ("team=", true), // a missing label is ""
            ("team=~.+", false),
            ("service=\"recurring-task-service\"", true),
        ];
        for (m, want) in table {
            assert_eq!(Matcher::parse(m).unwrap().matches(&l), want, "{m}");
        }
        for bad in ["alertname", "=x", "a b=c", "x=~("] {
            assert!(Matcher::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_matching_route_decides_top_to_bottom() {
        let c = config(
            r#"
            [[routes]]
            name = "lag"
            matchers = ["alertname=KafkaConsumerLag"]
            severity = "SEV-2"
            page = "after 5m"
            actions = ["scale recurring-task-service 8"]
            [[routes]]
            name = "warnings"
            matchers = ["severity=warning"]
            page = "business-hours"
            [[routes]]
            name = "rest"
            "#,
        );
        let lag = c
            .route(&labels(&[
                ("alertname", "KafkaConsumerLag"),
                ("severity", "warning"),
                ("service", "recurring-task-service"),
            ]))
            .unwrap();
        assert_eq!(lag.route, "lag");
        assert_eq!(lag.severity.as_deref(), Some("SEV-2"), "the route's own");
        assert_eq!(lag.page, PageWhen::After(Duration::from_secs(300)));
        assert_eq!(lag.service.as_deref(), Some("recurring-task-service"));
        let warn = c
            .route(&labels(&[
                ("alertname", "HighCPUUsage"),
                ("severity", "warning"),
            ]))
            .unwrap();
        assert_eq!((warn.route, warn.page.pages()), ("warnings", false));
        assert_eq!(
            warn.severity.as_deref(),
            Some("SEV-3"),
            "from labels.severity"
        );
        let down = c
            .route(&labels(&[
                ("alertname", "APIDown"),
                ("severity", "critical"),
            ]))
            .unwrap();
        assert_eq!(
            (down.route, down.severity.as_deref(), down.page),
            ("rest", Some("SEV-1"), PageWhen::Immediately)
        );
    }

    #[test]
    fn bad_routes_are_named() {
        let c: AlertsConfig = toml::from_str(
            r#"
            on_resolved = "forget"
            [[routes]]
            name = "r"
            matchers = ["nope"]
            page = "sometimes"
            actions = ["scael backend 3"]
            "#,
        )
        .unwrap();
        let errors = c.validate().join("\n");
        for want in [
            "on_resolved",
            "`nope` is not a matcher",
            "`sometimes` is not when to page",
            "action `scael backend 3`",
        ] {
            assert!(errors.contains(want), "{want} in {errors}");
        }
    }
}
