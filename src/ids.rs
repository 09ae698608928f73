//! Ids and the clock, each written once: the learner id (checked at the edge), fresh ids for
//! sessions and flags, and the time in milliseconds.

use std::fmt;

use serde::Serialize;
use sha2::Digest;

use crate::content::ParseError;

/// A learner's id as the host platform names them: 1–128 characters of letters, digits and
/// `. _ - @ :`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LearnerId(String);

impl LearnerId {
    /// Checks the id.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError(format!(
                "invalid learner id '{}': use 1 to 128 letters, digits or . _ - @ :",
                s.chars().take(140).collect::<String>()
            )))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LearnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
