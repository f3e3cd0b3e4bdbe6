//! Business hours: when a `business-hours` route may page. Runbook 003's
//! warnings are "investigated during business hours": posted when they
//! fire, an incident opened and its escalation started only once business
//! hours begin (at once, within them), if the alert still fires then.
//!
//! Hours are wall-clock times in an IANA time zone, so 09:00 stays 09:00
//! across a DST change; a start that falls in a spring-forward gap is the
//! first instant after it. Pure, tested by tables.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;

/// `[alerts.business_hours]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursConfig {
    /// An IANA time zone (`Europe/Berlin`).
    #[serde(default = "default_zone")]
    pub time_zone: String,
    /// `mon` … `sun`.
    #[serde(default = "default_days")]
    pub days: Vec<String>,
    /// `HH:MM`, local.
    #[serde(default = "default_start")]
    pub start: String,
    /// `HH:MM`, local, after `start`.
    #[serde(default = "default_end")]
    pub end: String,
}

impl Default for BusinessHoursConfig {
    fn default() -> Self {
        BusinessHoursConfig {
            time_zone: default_zone(),
            days: default_days(),
            start: default_start(),
            end: default_end(),
        }
    }
}

fn default_zone() -> String {
    "UTC".into()
}

fn default_days() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri"]
        .map(String::from)
        .to_vec()
}

fn default_start() -> String {
    "09:00".into()
}

fn default_end() -> String {
    "17:00".into()
}

/// Business hours, checked.
#[derive(Debug, Clone)]
pub struct BusinessHours {
    zone: TimeZone,
    /// Monday first.
    days: [bool; 7],
    start: Time,
    end: Time,
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

fn time(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

impl BusinessHoursConfig {
    pub fn compile(&self) -> Result<BusinessHours, String> {
        let zone = TimeZone::get(&self.time_zone).map_err(|_| {
            format!(
                "alerts.business_hours.time_zone: `{}` is not an IANA time zone",
                self.time_zone
            )
        })?;
        let mut days = [false; 7];
        for d in &self.days {
            let w = weekday(d).ok_or_else(|| {
                format!("alerts.business_hours.days: `{d}` is not a day (mon … sun)")
            })?;
            days[usize::from(w.to_monday_zero_offset() as u8)] = true;
        }
        if !days.iter().any(|d| *d) {
            return Err("alerts.business_hours.days: name at least one day".into());
        }
        let start = time(&self.start)
            .ok_or_else(|| format!("alerts.business_hours.start: `{}` is not HH:MM", self.start))?;
        let end = time(&self.end)
            .ok_or_else(|| format!("alerts.business_hours.end: `{}` is not HH:MM", self.end))?;
        if end <= start {
            return Err("alerts.business_hours: end must be after start".into());
        }
        Ok(BusinessHours {
            zone,
            days,
            start,
            end,
        })
    }
}

impl BusinessHours {
    /// `now` when it is within business hours, else when they next begin.
    pub fn next_open(&self, now: Timestamp) -> Timestamp {
        let local = now.to_zoned(self.zone.clone());
        let today = local.date();
        // A week ahead always holds a business day (one is required).
        for offset in 0..=7i64 {
            let Ok(day) = today.checked_add(offset.days()) else {
                break;
            };
            if !self.days[usize::from(day.weekday().to_monday_zero_offset() as u8)] {
                continue;
            }
            let at = |t: Time| {
                day.to_datetime(t)
                    .to_zoned(self.zone.clone())
                    .map(|z| z.timestamp())
                    .unwrap_or(now)
            };
            let (open, close) = (at(self.start), at(self.end));
            if now < open {
                return open;
            }
            if now < close {
                return now;
            }
        }
        now
    }

    /// Whether `now` is within business hours.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.next_open(now) == now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(zone: &str) -> BusinessHours {
        BusinessHoursConfig {
            time_zone: zone.into(),
            ..BusinessHoursConfig::default()
        }
        .compile()
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_next_opening_in_the_zone() {
        let berlin = hours("Europe/Berlin");
        // (now, next open): 2026-12-05 is a Saturday; Berlin is UTC+1 in winter.
        let table = [
            ("2026-12-03T10:00:00Z", "2026-12-03T10:00:00Z"), // Thursday 11:00: open
            ("2026-12-03T07:59:00Z", "2026-12-03T08:00:00Z"), // 08:59 local: opens at 09:00
            ("2026-12-03T16:00:00Z", "2026-12-04T08:00:00Z"), // 17:00 local: closed, Friday
            ("2026-12-05T02:00:00Z", "2026-12-07T08:00:00Z"), // Saturday night: Monday
            ("2026-12-06T23:30:00Z", "2026-12-07T08:00:00Z"), // Monday 00:30 local
            // Summer (UTC+2): 09:00 local is 07:00 UTC.
            ("2026-07-01T06:00:00Z", "2026-07-01T07:00:00Z"),
            // The DST change (Sunday 2026-03-29): Monday opens at 07:00 UTC.
            ("2026-03-28T12:00:00Z", "2026-03-30T07:00:00Z"),
        ];
        for (now, want) in table {
            assert_eq!(berlin.next_open(ts(now)), ts(want), "{now}");
        }
        assert!(berlin.is_open(ts("2026-12-03T10:00:00Z")));
        assert!(!berlin.is_open(ts("2026-12-05T10:00:00Z")));
    }

    #[test]
    fn bad_hours_are_named() {
        let bad = |f: fn(&mut BusinessHoursConfig), want: &str| {
            let mut c = BusinessHoursConfig::default();
            f(&mut c);
            let e = c.compile().unwrap_err();
            assert!(e.contains(want), "{e} should name {want}");
        };
        bad(|c| c.time_zone = "Mars/Olympus".into(), "time_zone");
        bad(|c| c.days = vec!["someday".into()], "days");
        bad(|c| c.days = vec![], "at least one day");
        bad(|c| c.start = "9am".into(), "start");
        bad(|c| c.end = "08:00".into(), "end must be after start");
    }
}
