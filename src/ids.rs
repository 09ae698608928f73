//! Ids and the clock: fresh ids for sessions and flags, and the time in milliseconds, each
//! written once.

use sha2::Digest;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A fresh id `prefix-<20 hex digits>`: a hash of `salt`, the time, the process and a counter,
/// so two calls never return the same id, even within one clock tick.
pub fn new_id(prefix: &str, salt: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let h = sha2::Sha256::digest(format!("{salt}\n{n}\n{}\n{:?}", std::process::id(), std::time::SystemTime::now()));
    format!("{prefix}-{}", h.iter().take(10).map(|b| format!("{b:02x}")).collect::<String>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_fresh_and_shaped() {
        let a = super::new_id("s", "x");
        let b = super::new_id("s", "x");
        assert_ne!(a, b);
        assert!(a.starts_with("s-") && a.len() == 22, "{a}");
    }
}
