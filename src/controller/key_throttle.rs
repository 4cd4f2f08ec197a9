//! How often the key reconciler looks at a key and writes its token
//! counts: at most once a second per key, and changed counts once two
//! looks agree (or ten seconds after they first differed), so that a burst
//! of token changes costs a few key writes, not one per token. Pure: the
//! caller passes the instant.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A key is looked at (owner check, token count) at most once in this interval.
pub(super) const LOOK_INTERVAL: Duration = Duration::from_secs(1);
/// Token counts that changed are written once two looks agree, or at the
/// latest this long after they first differed from the key's status.
const COUNTS_MAX_DELAY: Duration = Duration::from_secs(10);

/// Per key: when it was last looked at, and token counts not written yet.
#[derive(Debug, Default)]
pub(crate) struct KeyThrottle {
    looked: HashMap<String, Instant>,
    unsettled: HashMap<String, Unsettled>,
    /// Size of `looked` at which entries of deleted keys are dropped next
    /// (doubles with the number of keys, so pruning costs O(1) per look).
    prune_at: usize,
}

/// Entries older than this belong to keys deleted (or long quiet).
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// Counts that differ from the key's status, as the last look saw them.
#[derive(Debug)]
struct Unsettled {
    since: Instant,
    counts: [i32; 3],
}

impl KeyThrottle {
    /// `None` when `key` may be looked at now (and records the look), else
    /// how long until it may.
    pub fn look(&mut self, key: &str, now: Instant) -> Option<Duration> {
        if let Some(last) = self.looked.get(key)
            && now.duration_since(*last) < LOOK_INTERVAL
        {
            return Some(LOOK_INTERVAL - now.duration_since(*last));
        }
        if self.looked.len() >= self.prune_at {
            self.looked
                .retain(|_, at| now.duration_since(*at) < FORGET_AFTER);
            self.unsettled
                .retain(|_, u| now.duration_since(u.since) < FORGET_AFTER);
            self.prune_at = (self.looked.len() * 2).max(64);
        }
        self.looked.insert(key.to_owned(), now);
        None
    }

    /// `None` when the new `counts` should be written now: the previous look
    /// saw the same, or they first differed `COUNTS_MAX_DELAY` ago. Otherwise
    /// how long until the next look.
    pub fn settle(&mut self, key: &str, counts: [i32; 3], now: Instant) -> Option<Duration> {
        let Some(unsettled) = self.unsettled.get_mut(key) else {
            self.unsettled
                .insert(key.to_owned(), Unsettled { since: now, counts });
            return Some(LOOK_INTERVAL);
        };
        let waited = now.duration_since(unsettled.since);
        if unsettled.counts == counts || waited >= COUNTS_MAX_DELAY {
            self.unsettled.remove(key);
            return None;
        }
        unsettled.counts = counts;
        Some(LOOK_INTERVAL.min(COUNTS_MAX_DELAY - waited))
    }

    /// The key's counts are as written (or about to be, with other changes).
    pub fn settled(&mut self, key: &str) {
        self.unsettled.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ns/key";

    #[test]
    fn a_key_is_looked_at_most_once_a_second() {
        let mut throttle = KeyThrottle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.look(KEY, t0), None);
        let wait = throttle.look(KEY, t0 + Duration::from_millis(300));
        assert_eq!(wait, Some(Duration::from_millis(700)));
        assert_eq!(throttle.look("ns/other", t0), None, "keys are independent");
        assert_eq!(throttle.look(KEY, t0 + LOOK_INTERVAL), None);
    }

    #[test]
    fn deleted_keys_are_forgotten() {
        let mut throttle = KeyThrottle::default();
        let t0 = Instant::now();
        for i in 0..100 {
            throttle.look(&format!("ns/gone-{i}"), t0);
            throttle.settle(&format!("ns/gone-{i}"), [1, 0, 0], t0);
        }
        let later = t0 + FORGET_AFTER;
        for i in 0..200 {
            throttle.look(&format!("ns/live-{i}"), later);
        }
        assert!(throttle.looked.keys().all(|k| k.contains("live")));
        assert!(throttle.unsettled.is_empty());
    }

    #[test]
    fn counts_are_written_once_two_looks_agree() {
        let mut throttle = KeyThrottle::default();
        let t0 = Instant::now();
        let second = |n: u64| t0 + Duration::from_secs(n);
        assert_eq!(throttle.settle(KEY, [1, 0, 0], t0), Some(LOOK_INTERVAL));
        assert_eq!(
            throttle.settle(KEY, [1, 1, 0], second(1)),
            Some(LOOK_INTERVAL)
        );
        assert_eq!(throttle.settle(KEY, [1, 1, 0], second(2)), None);
        // Written: the next difference starts a new wait.
        assert_eq!(
            throttle.settle(KEY, [2, 1, 0], second(3)),
            Some(LOOK_INTERVAL)
        );
    }

    #[test]
    fn counts_that_keep_moving_are_written_every_ten_seconds() {
        let mut throttle = KeyThrottle::default();
        let t0 = Instant::now();
        let mut writes = Vec::new();
        for n in 0..=25 {
            let now = t0 + Duration::from_secs(n);
            if throttle.settle(KEY, [n as i32, 0, 0], now).is_none() {
                writes.push(n);
            }
        }
        assert_eq!(
            writes,
            [10, 21],
            "at most COUNTS_MAX_DELAY after they first differed"
        );
        // The last wait before the deadline is cut short to meet it.
        let mut throttle = KeyThrottle::default();
        assert_eq!(throttle.settle(KEY, [1, 0, 0], t0), Some(LOOK_INTERVAL));
        let near = t0 + Duration::from_millis(9_500);
        assert_eq!(
            throttle.settle(KEY, [2, 0, 0], near),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn settled_counts_forget_the_wait() {
        let mut throttle = KeyThrottle::default();
        let t0 = Instant::now();
        assert!(throttle.settle(KEY, [1, 0, 0], t0).is_some());
        throttle.settled(KEY);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            throttle.settle(KEY, [2, 0, 0], later),
            Some(LOOK_INTERVAL),
            "a fresh difference waits for a second look"
        );
    }
}
