//! On-call schedules: who is on call at an instant, and the next handoffs.
//!
//! A schedule is one or more rotations in an IANA time zone, plus overrides.
//! A rotation hands off at a wall-clock time (`09:00 Europe/Berlin` every
//! Monday), so its shifts are civil times: shift `k` starts at
//! `handoff + k × every` on the local clock. Turning a civil time into an
//! instant follows GoAlert's rules around daylight saving:
//!
//! - a time the clock skips (spring forward) moves forward by the gap;
//! - a time the clock repeats (fall back) *starts* a shift at its first
//!   occurrence and *ends* one at its last, so for that hour both the
//!   outgoing and the incoming person are on call, and nobody is left out.
//!
//! Overrides win: while one covers an instant, its principals are on call
//! instead of the rotations'. Everything here is pure (instants in, names
//! out), so it is tested by tables across real DST transitions.

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Span, Timestamp};
use oncall_permissions::Principal;

/// How long each shift is, on the local clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftLength {
    Days(i64),
    Hours(i64),
}

impl ShiftLength {
    /// From a duration: whole days when it is a multiple of a day (so a
    /// weekly rotation keeps its wall-clock time across DST), else hours.
    pub fn from_duration(d: std::time::Duration) -> Result<ShiftLength, String> {
        let secs = d.as_secs();
        if secs < 3600 || !secs.is_multiple_of(3600) {
            return Err("a shift is a whole number of hours, at least 1h".into());
        }
        Ok(if secs.is_multiple_of(86_400) {
            ShiftLength::Days((secs / 86_400) as i64)
        } else {
            ShiftLength::Hours((secs / 3600) as i64)
        })
    }

    fn times(self, k: i64) -> Span {
        match self {
            ShiftLength::Days(n) => Span::new().days(n * k),
            ShiftLength::Hours(n) => Span::new().hours(n * k),
        }
    }

    fn approx_ms(self) -> i64 {
        match self {
            ShiftLength::Days(n) => n * 86_400_000,
            ShiftLength::Hours(n) => n * 3_600_000,
        }
    }
}

/// One rotation of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    pub name: String,
    /// The first shift starts here, on the schedule's local clock.
    pub handoff: DateTime,
    pub every: ShiftLength,
    pub participants: Vec<Principal>,
}

/// A temporary replacement: `principal` is on call from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub principal: Principal,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// A schedule: rotations in one time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub zone: TimeZone,
    pub rotations: Vec<Rotation>,
}

/// One shift of a rotation, as instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub index: i64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub principal: Principal,
}

/// A handoff from one person to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    pub rotation: String,
    pub at: Timestamp,
    pub from: Principal,
    pub to: Principal,
}

/// Which occurrence of a repeated local time is meant.
#[derive(Clone, Copy)]
enum Edge {
    Start,
    End,
}

/// The instant of a civil time in `zone` under the rules above.
fn instant(zone: &TimeZone, dt: DateTime, edge: Edge) -> Timestamp {
    let amb = zone.to_ambiguous_timestamp(dt);
    let offset = match amb.offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        // Skipped: read with the offset before the gap, which lands the
        // same distance past the gap's end (02:30 → 03:30).
        AmbiguousOffset::Gap { before, .. } => before,
        // Repeated: the first occurrence is the earlier instant (the offset
        // before the transition), the last the later one.
        AmbiguousOffset::Fold { before, after } => match edge {
            Edge::Start => before,
            Edge::End => after,
        },
    };
    offset
        .to_timestamp(dt)
        .unwrap_or_else(|_| zone.to_timestamp(dt).unwrap_or(Timestamp::MAX))
}

impl Rotation {
    fn civil(&self, k: i64) -> Option<DateTime> {
        self.handoff.checked_add(self.every.times(k)).ok()
    }

    /// Shift `k` (0 is the first), if it is representable.
    pub fn shift(&self, zone: &TimeZone, k: i64) -> Option<Shift> {
        if self.participants.is_empty() || k < 0 {
            return None;
        }
        let start = instant(zone, self.civil(k)?, Edge::Start);
        let end = instant(zone, self.civil(k + 1)?, Edge::End);
        let n = self.participants.len() as i64;
        Some(Shift {
            index: k,
            start,
            end,
            principal: self.participants[(k % n) as usize].clone(),
        })
    }

    /// The shifts covering `at` (two during a repeated hour, else at most
    /// one; none before the first handoff).
    pub fn shifts_at(&self, zone: &TimeZone, at: Timestamp) -> Vec<Shift> {
        let first = instant(zone, self.handoff, Edge::Start);
        let since = at.as_millisecond() - first.as_millisecond();
        if since < 0 {
            return Vec::new();
        }
        let guess = since / self.every.approx_ms();
        (guess - 2..=guess + 2)
            .filter_map(|k| self.shift(zone, k))
            .filter(|s| s.start <= at && at < s.end)
            .collect()
    }

    /// The index of the first shift starting after `at`.
    fn next_index(&self, zone: &TimeZone, at: Timestamp) -> i64 {
        let first = instant(zone, self.handoff, Edge::Start);
        let since = (at.as_millisecond() - first.as_millisecond()).max(0);
        let mut k = (since / self.every.approx_ms() - 2).max(0);
        while let Some(s) = self.shift(zone, k) {
            if s.start > at {
                break;
            }
            k += 1;
        }
        k
    }
}

impl Schedule {
    /// Who is on call at `at`: the covering overrides' principals if any
    /// cover it, else every rotation's current shift, without repeats.
    pub fn on_call(&self, at: Timestamp, overrides: &[Override]) -> Vec<Principal> {
        let mut who: Vec<Principal> = Vec::new();
        let mut push = |p: &Principal| {
            if !who.contains(p) {
                who.push(p.clone());
            }
        };
        let covering: Vec<&Override> = overrides
            .iter()
            .filter(|o| o.start <= at && at < o.end)
            .collect();
        if !covering.is_empty() {
            covering.iter().for_each(|o| push(&o.principal));
        } else {
            for r in &self.rotations {
                r.shifts_at(&self.zone, at)
                    .iter()
                    .for_each(|s| push(&s.principal));
            }
        }
        who
    }

    /// The next `count` handoffs after `after`, across rotations, in order.
    pub fn next_handoffs(&self, after: Timestamp, count: usize) -> Vec<Handoff> {
        let mut all = Vec::new();
        for r in &self.rotations {
            let n = r.participants.len() as i64;
            if n < 2 {
                continue;
            }
            let first = r.next_index(&self.zone, after);
            for k in first..first + count as i64 {
                let Some(s) = r.shift(&self.zone, k) else {
                    break;
                };
                let from = r.participants[((k - 1).rem_euclid(n)) as usize].clone();
                all.push(Handoff {
                    rotation: r.name.clone(),
                    at: s.start,
                    from,
                    to: s.principal,
                });
            }
        }
        all.sort_by_key(|h| h.at);
        all.truncate(count);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Principal {
        s.parse().unwrap()
    }

    fn rotation(handoff: &str, every: ShiftLength, people: &[&str]) -> Rotation {
        Rotation {
            name: "main".into(),
            handoff: handoff.parse().unwrap(),
            every,
            participants: people.iter().map(|s| p(s)).collect(),
        }
    }

    fn schedule(zone: &str, r: Rotation) -> Schedule {
        Schedule {
            name: "primary".into(),
            zone: TimeZone::get(zone).unwrap(),
            rotations: vec![r],
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn names(v: Vec<Principal>) -> Vec<String> {
        v.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_daily_rotation_hands_off_at_the_local_time_and_wraps() {
        let s = schedule(
            "Europe/Berlin",
            rotation(
                "2026-12-01T09:00",
                ShiftLength::Days(1),
                &["cli:a", "cli:b", "cli:c"],
            ),
        );
        let table = [
            ("2026-12-01T07:59:59Z", vec![]),
            ("2026-12-01T08:00:00Z", vec!["cli:a"]),
            ("2026-12-02T07:59:59Z", vec!["cli:a"]),
            ("2026-12-02T08:00:00Z", vec!["cli:b"]),
            ("2026-12-03T08:00:00Z", vec!["cli:c"]),
            ("2026-12-04T08:00:00Z", vec!["cli:a"]),
        ];
        for (t, want) in table {
            assert_eq!(names(s.on_call(at(t), &[])), want, "at {t}");
        }
    }

    /// New York springs forward on 2026-03-08 at 02:00 (to 03:00) and falls
    /// back on 2026-11-01 at 02:00 (to 01:00).
    #[test]
    fn a_handoff_the_clock_skips_moves_forward() {
        let s = schedule(
            "America/New_York",
            rotation(
                "2026-03-01T02:30",
                ShiftLength::Days(1),
                &["cli:a", "cli:b"],
            ),
        );
        // 2026-03-07 02:30 EST is 07:30Z; shift 7 starts on 03-08 at 02:30,
        // which does not exist: it starts at 03:30 EDT = 07:30Z.
        let shift = s.rotations[0].shift(&s.zone, 7).unwrap();
        assert_eq!(shift.start, at("2026-03-08T07:30:00Z"));
        assert_eq!(s.rotations[0].shift(&s.zone, 6).unwrap().end, shift.start);
        // The next one is back at 02:30 local, now EDT.
        let next = s.rotations[0].shift(&s.zone, 8).unwrap();
        assert_eq!(next.start, at("2026-03-09T06:30:00Z"));
        assert_eq!(names(s.on_call(at("2026-03-08T07:29:59Z"), &[])), ["cli:a"]);
        assert_eq!(names(s.on_call(at("2026-03-08T07:30:00Z"), &[])), ["cli:b"]);
    }

    #[test]
    fn a_repeated_handoff_starts_at_its_first_occurrence_and_ends_at_its_last() {
        let s = schedule(
            "America/New_York",
            rotation(
                "2026-10-25T01:30",
                ShiftLength::Days(1),
                &["cli:a", "cli:b"],
            ),
        );
        // Shift 7 starts on 11-01 at 01:30, which happens twice: first at
        // 01:30 EDT (05:30Z), last at 01:30 EST (06:30Z).
        let before = s.rotations[0].shift(&s.zone, 6).unwrap();
        let after = s.rotations[0].shift(&s.zone, 7).unwrap();
        assert_eq!(after.start, at("2026-11-01T05:30:00Z"));
        assert_eq!(before.end, at("2026-11-01T06:30:00Z"));
        // In that hour both are on call; around it one at a time.
        assert_eq!(names(s.on_call(at("2026-11-01T05:29:59Z"), &[])), ["cli:a"]);
        assert_eq!(
            names(s.on_call(at("2026-11-01T06:00:00Z"), &[])),
            ["cli:a", "cli:b"]
        );
        assert_eq!(names(s.on_call(at("2026-11-01T06:30:00Z"), &[])), ["cli:b"]);
        // The handoff is listed once, at the first occurrence.
        let h = s.next_handoffs(at("2026-11-01T00:00:00Z"), 1);
        assert_eq!(h[0].at, at("2026-11-01T05:30:00Z"));
        assert_eq!(
            (h[0].from.to_string(), h[0].to.to_string()),
            ("cli:a".into(), "cli:b".into())
        );
    }

    /// Lord Howe Island moves its clocks by 30 minutes: forward at 02:00 on
    /// 2026-10-04 (to 02:30, +11:00), back at 02:00 on 2026-04-05 (to
    /// 01:30, +10:30).
    #[test]
    fn a_thirty_minute_shift_is_followed() {
        let s = schedule(
            "Australia/Lord_Howe",
            rotation(
                "2026-10-01T02:15",
                ShiftLength::Days(1),
                &["cli:a", "cli:b"],
            ),
        );
        // 10-04 02:15 is skipped: it starts at 02:45 +11:00 = 10-03 15:45Z.
        let skipped = s.rotations[0].shift(&s.zone, 3).unwrap();
        assert_eq!(skipped.start, at("2026-10-03T15:45:00Z"));
        // Ordinary days before and after, at 02:15 local.
        assert_eq!(
            s.rotations[0].shift(&s.zone, 2).unwrap().start,
            at("2026-10-02T15:45:00Z"),
            "02:15 +10:30"
        );
        assert_eq!(
            s.rotations[0].shift(&s.zone, 4).unwrap().start,
            at("2026-10-04T15:15:00Z"),
            "02:15 +11:00"
        );

        let back = schedule(
            "Australia/Lord_Howe",
            rotation(
                "2026-04-01T01:45",
                ShiftLength::Days(1),
                &["cli:a", "cli:b"],
            ),
        );
        // 04-05 01:45 happens twice, at +11:00 (14:45Z) and +10:30 (15:15Z).
        let r = &back.rotations[0];
        assert_eq!(
            r.shift(&back.zone, 4).unwrap().start,
            at("2026-04-04T14:45:00Z")
        );
        assert_eq!(
            r.shift(&back.zone, 3).unwrap().end,
            at("2026-04-04T15:15:00Z")
        );
        assert_eq!(
            names(back.on_call(at("2026-04-04T15:00:00Z"), &[])),
            ["cli:b", "cli:a"]
        );
    }

    #[test]
    fn a_weekly_rotation_keeps_its_wall_clock_across_dst() {
        let s = schedule(
            "Europe/Berlin",
            rotation(
                "2026-03-23T09:00",
                ShiftLength::Days(7),
                &["cli:a", "cli:b"],
            ),
        );
        // Berlin moves to CEST on 2026-03-29: 09:00 is 08:00Z before, 07:00Z after.
        let h = s.next_handoffs(at("2026-03-23T12:00:00Z"), 2);
        assert_eq!(h[0].at, at("2026-03-30T07:00:00Z"));
        assert_eq!(h[1].at, at("2026-04-06T07:00:00Z"));
        assert_eq!(h[0].to.to_string(), "cli:b");
        assert_eq!(h[1].to.to_string(), "cli:a");
    }

    #[test]
    fn overrides_win_while_they_last() {
        let s = schedule(
            "UTC",
            rotation(
                "2026-12-01T00:00",
                ShiftLength::Hours(12),
                &["cli:a", "cli:b"],
            ),
        );
        let o = Override {
            principal: p("cli:z"),
            start: at("2026-12-01T06:00:00Z"),
            end: at("2026-12-01T08:00:00Z"),
        };
        let table = [
            ("2026-12-01T05:59:59Z", vec!["cli:a"]),
            ("2026-12-01T06:00:00Z", vec!["cli:z"]),
            ("2026-12-01T07:59:59Z", vec!["cli:z"]),
            ("2026-12-01T08:00:00Z", vec!["cli:a"]),
            ("2026-12-01T12:00:00Z", vec!["cli:b"]),
        ];
        for (t, want) in table {
            assert_eq!(
                names(s.on_call(at(t), std::slice::from_ref(&o))),
                want,
                "at {t}"
            );
        }
    }

    #[test]
    fn shift_lengths_come_from_durations() {
        use std::time::Duration;
        assert_eq!(
            ShiftLength::from_duration(Duration::from_secs(7 * 86_400)),
            Ok(ShiftLength::Days(7))
        );
        assert_eq!(
            ShiftLength::from_duration(Duration::from_secs(12 * 3600)),
            Ok(ShiftLength::Hours(12))
        );
        assert!(ShiftLength::from_duration(Duration::from_secs(90)).is_err());
    }
}
