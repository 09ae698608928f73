//! The service's limits, kept in memory per process: token buckets per key (bounded in the keys
//! they hold) and the chat turns each learner has running. The HTTP layers that apply them
//! are in `api`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::passport::LearnerId;

/// Keys kept per limiter before idle ones are dropped: the limiters' memory is bounded.
const MAX_KEYS: usize = 100_000;

/// A token bucket per key: `capacity` requests at once, refilled at `capacity` per `period`.
pub struct RateLimiter {
    capacity: f64,
    period: Duration,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `capacity` per `period`.
    pub fn new(capacity: u32, period: Duration) -> Self {
        Self { capacity: f64::from(capacity.max(1)), period, buckets: Mutex::default() }
    }

    /// Takes one request for `key`, or says how long until one is allowed.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let per_sec = self.capacity / self.period.as_secs_f64();
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            // drop the keys that have refilled: they hold nothing a fresh bucket would not
            let full_after = self.period;
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full_after);
            if buckets.len() >= MAX_KEYS / 2 {
                // that many callers active at once: start over rather than grow (memory stays
                // bounded; the buckets refill, which only errs towards letting requests in)
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(self.capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_sec))
        }
    }

    /// How many keys are held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.buckets.lock().expect("rate limiter lock").len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every limiter of the service.
pub struct Limits {
    pub per_address: RateLimiter,
    pub per_caller: RateLimiter,
    pub answers: RateLimiter,
    turns: Mutex<HashMap<LearnerId, u32>>,
    turns_at_once: u32,
}

impl Limits {
    /// The limiters `cfg` sets.
    pub fn new(cfg: &crate::config::LimitsConfig) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            per_address: RateLimiter::new(cfg.requests_per_minute_per_address, minute),
            per_caller: RateLimiter::new(cfg.requests_per_minute, minute),
            answers: RateLimiter::new(cfg.answers_per_item_per_hour, Duration::from_secs(3600)),
            turns: Mutex::default(),
            turns_at_once: cfg.chat_turns_at_once,
        }
    }

    /// A slot for one running chat turn of `learner`, released when dropped.
    /// `Err` with the limit when the learner has that many running.
    pub fn start_turn(self: &Arc<Self>, learner: &LearnerId) -> Result<TurnSlot, u32> {
        let mut turns = self.turns.lock().expect("turns lock");
        let running = turns.entry(learner.clone()).or_insert(0);
        if *running >= self.turns_at_once {
            return Err(self.turns_at_once);
        }
        *running += 1;
        Ok(TurnSlot { limits: self.clone(), learner: learner.clone() })
    }

    /// Chat turns running now, over all learners.
    pub fn running_turns(&self) -> u32 {
        self.turns.lock().expect("turns lock").values().sum()
    }
}

/// A running chat turn; dropping it frees the learner's slot.
pub struct TurnSlot {
    limits: Arc<Limits>,
    learner: LearnerId,
}

impl Drop for TurnSlot {
    fn drop(&mut self) {
        let mut turns = self.limits.turns.lock().expect("turns lock");
        if let Some(n) = turns.get_mut(&self.learner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                turns.remove(&self.learner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_capacity_then_says_when() {
        let l = RateLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            l.take("a").unwrap();
        }
        let wait = l.take("a").unwrap_err();
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20), "{wait:?}");
        l.take("b").unwrap();
    }

    #[test]
    fn the_keys_held_stay_bounded_however_many_callers_come() {
        let l = RateLimiter::new(5, Duration::from_secs(60));
        for i in 0..(MAX_KEYS + 10) {
            l.take(&format!("k{i}")).unwrap();
        }
        assert!(l.len() <= MAX_KEYS, "{}", l.len());
    }

    #[test]
    fn turn_slots_are_freed_when_dropped() {
        let limits =
            Arc::new(Limits::new(&crate::config::LimitsConfig { chat_turns_at_once: 1, ..Default::default() }));
        let ada = LearnerId::parse("ada").unwrap();
        let slot = limits.start_turn(&ada).unwrap();
        assert_eq!(limits.start_turn(&ada).err(), Some(1));
        limits.start_turn(&LearnerId::parse("bo").unwrap()).unwrap();
        drop(slot);
        assert_eq!(limits.running_turns(), 0);
        limits.start_turn(&ada).unwrap();
    }
}
