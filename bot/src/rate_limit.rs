//! A per-person limit on commands that change things.
//!
//! A script gone wrong, a stuck key or a compromised account can fire
//! `restart` far faster than anyone reads the channel. Each person (a
//! `[[policy.people]]` entry, or else one principal) may run at most
//! `limits.mutations_per_window` changing commands in any
//! `limits.mutation_window`; past that, requests are refused with when to
//! try again, before anything runs. Dry runs and read-only commands don't
//! count, and neither do refused requests.
//!
//! A sliding window of timestamps per person, in memory: each replica keeps
//! its own (a limit per replica, not a shared one).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// The sliding windows of every person who ran a changing command lately.
#[derive(Debug)]
pub struct RateLimiter {
    per_window: usize,
    window: Duration,
    hits: Mutex<HashMap<String, VecDeque<Timestamp>>>,
}

/// A refusal: how many were allowed, in what window, and when the oldest
/// counted one leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub per_window: usize,
    pub window: Duration,
    pub retry_after: Duration,
}

impl RateLimiter {
    /// `per_window` 0 means no limit.
    pub fn new(per_window: usize, window: Duration) -> Self {
        RateLimiter {
            per_window,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one changing command by `who` at `now`, or refuses it (and
    /// then counts nothing).
    pub fn check(&self, who: &str, now: Timestamp) -> Result<(), Limited> {
        if self.per_window == 0 {
            return Ok(());
        }
        let window =
            jiff::SignedDuration::try_from(self.window).unwrap_or(jiff::SignedDuration::MAX);
        // Hits at or before `since` have left the window (none have, when
        // the window reaches back past the start of time).
        let since = now.checked_sub(window).ok();
        let left = |t: &Timestamp| since.is_some_and(|s| *t <= s);
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        // Forget people whose every hit has left the window, now and then,
        // so the map stays as small as the set of recently active people.
        if hits.len() > 1024 {
            hits.retain(|_, times| times.back().is_some_and(|t| !left(t)));
        }
        let times = hits.entry(who.to_string()).or_default();
        while times.front().is_some_and(left) {
            times.pop_front();
        }
        if times.len() >= self.per_window {
            let oldest = times.front().copied().unwrap_or(now);
            let leaves = oldest.checked_add(window).unwrap_or(Timestamp::MAX);
            let retry_after = leaves
                .duration_since(now)
                .try_into()
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_secs(1));
            return Err(Limited {
                per_window: self.per_window,
                window: self.window,
                retry_after,
            });
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn allows_n_per_window_per_person_then_says_when_to_retry() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        for s in [0, 10, 20] {
            assert_eq!(limiter.check("cli:a", at(s)), Ok(()));
        }
        let refused = limiter.check("cli:a", at(30)).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        assert_eq!(refused.per_window, 3);
        // Someone else has their own window.
        assert_eq!(limiter.check("cli:b", at(30)), Ok(()));
        // A refusal counts nothing: once the first hit leaves, one more fits.
        assert_eq!(limiter.check("cli:a", at(60)), Ok(()));
        assert!(limiter.check("cli:a", at(61)).is_err());
        assert_eq!(limiter.check("cli:a", at(70)), Ok(()));
    }

    #[test]
    fn zero_means_no_limit_and_extreme_clocks_do_not_panic() {
        let none = RateLimiter::new(0, Duration::from_secs(60));
        for _ in 0..1000 {
            assert_eq!(none.check("cli:a", at(0)), Ok(()));
        }
        let limiter = RateLimiter::new(1, Duration::MAX);
        assert_eq!(limiter.check("cli:a", Timestamp::MIN), Ok(()));
        assert!(limiter.check("cli:a", Timestamp::MAX).is_err());
    }

    #[test]
    fn idle_people_are_forgotten() {
        let limiter = RateLimiter::new(5, Duration::from_secs(60));
        for i in 0..2000 {
            limiter.check(&format!("cli:{i}"), at(0)).unwrap();
        }
        limiter.check("cli:late", at(120)).unwrap();
        let kept = limiter.hits.lock().unwrap().len();
        assert!(kept <= 2, "{kept} people kept");
    }
}
