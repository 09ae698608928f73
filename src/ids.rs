//! Ids and the clock, each written once: the learner id (checked at the edge), fresh ids for
//! sessions and flags, and the time in milliseconds.

use std::fmt;

use serde::Serialize;

use crate::content::ParseError;

/// A learner's id as the host platform names them: 1–128 characters of letters, digits and
/// `. _ - @ :`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
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

/// A fresh id `prefix-<20 hex digits>` from the operating system's CSPRNG, so an id cannot
/// be guessed from another.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", random_hex(10))
}

/// `bytes` random bytes from the operating system's CSPRNG, as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random number generator");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_fresh_and_shaped() {
        let a = super::new_id("s");
        let b = super::new_id("s");
        assert_ne!(a, b);
        assert!(a.starts_with("s-") && a.len() == 22, "{a}");
    }
}
