//! Learner events: the xAPI-shaped wire statement, and its validation into an [`Event`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content::{ComponentId, Format, Library};
pub use crate::ids::LearnerId;

/// What a learner did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    Answered,
    Viewed,
    Skipped,
    Asked,
    Rated,
}

impl Verb {
    /// Every verb, in order.
    pub const ALL: &'static [Verb] = &[Verb::Answered, Verb::Viewed, Verb::Skipped, Verb::Asked, Verb::Rated];

    /// The verb as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Answered => "answered",
            Verb::Viewed => "viewed",
            Verb::Skipped => "skipped",
            Verb::Asked => "asked",
            Verb::Rated => "rated",
        }
    }

    /// Parses a verb, naming the choices when it is unknown.
    pub fn parse(s: &str) -> Result<Self, String> {
        Verb::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
            let all: Vec<&str> = Verb::ALL.iter().map(|v| v.as_str()).collect();
            format!("unknown verb '{s}' (expected one of {})", all.join(", "))
        })
    }
}

/// A validated learner event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Idempotency key, unique per learner.
    pub id: String,
    pub learner: LearnerId,
    pub verb: Verb,
    pub component: ComponentId,
    /// The exercise item, for `answered`.
    pub item: Option<String>,
    /// Whether the answer was right; for `answered` it is always set (graded from the
    /// response against the answer key when the page did not say).
    pub success: Option<bool>,
    /// 0..=1: the scaled score of an answer, or the rating of a `rated` event.
    pub score: Option<f64>,
    pub response: Option<String>,
    pub hints_used: Option<u32>,
    pub duration_ms: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The learner's group (a class, a team) in the component's course, from the statement's
    /// `context.group` or the posting token's `group` claim; not stored with the event, but
    /// as the learner's group in that course.
    pub group: Option<String>,
}

impl Event {
    /// Events are replayed in this order, so that arrival order never changes a passport.
    pub fn order_key(&self) -> (i64, &str) {
        (self.timestamp, self.id.as_str())
    }
}

/// A statement as posted (xAPI-shaped); its schema is the API's `Statement`.
#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Statement")]
pub struct WireStatement {
    id: String,
    actor: String,
    verb: String,
    object: WireObject,
    #[serde(default)]
    result: Option<WireResult>,
    timestamp: String,
    #[serde(default)]
    context: Option<WireContext>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct WireContext {
    /// The learner's group in the component's course (a class, a team): analytics are given
    /// per group, never per learner. 1 to 64 characters.
    #[serde(default)]
    group: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct WireObject {
    component: String,
    #[serde(default)]
    item: Option<String>,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct WireResult {
    success: Option<bool>,
    score: Option<f64>,
    response: Option<String>,
    hints_used: Option<u32>,
    duration_ms: Option<u64>,
    /// xAPI's ISO 8601 duration, e.g. `PT5.4S`; `duration_ms` wins when both are given.
    duration: Option<String>,
}

/// Parses the ISO 8601 durations xAPI uses (`PT1H2M5.4S`, `P1DT2H`) into milliseconds.
pub fn parse_iso_duration(s: &str) -> Option<u64> {
    let rest = s.strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut ms = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        let mut last = 0usize;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let i = units.iter().position(|(u, _)| *u == c)?;
            // units in order, each at most once
            if i < last || num.is_empty() {
                return None;
            }
            last = i + 1;
            ms += num.parse::<f64>().ok()? * units[i].1;
            num.clear();
            any = true;
        }
        num.is_empty().then_some(())
    };
    take(
        days,
        &[('Y', 365.0 * 86_400_000.0), ('M', 30.0 * 86_400_000.0), ('W', 7.0 * 86_400_000.0), ('D', 86_400_000.0)],
    )?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        take(t, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1000.0)])?;
    }
    (any && ms.is_finite()).then(|| ms.round() as u64)
}

/// How far in the future a timestamp may be (clock skew between a page and this service).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// The most hints one answer may report.
pub const MAX_HINTS: u32 = 1000;
/// The longest response kept.
pub const MAX_RESPONSE_CHARS: usize = 4000;

/// Normalises an answer for comparison: case, surrounding space and punctuation, inner runs of
/// whitespace.
pub fn normalize_answer(s: &str) -> String {
    let s = s.trim().trim_end_matches(['.', '!']).trim().to_lowercase();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Validates one statement against the library; `now_ms` bounds the timestamp.
pub fn validate_statement(v: &Value, lib: &Library, now_ms: i64) -> Result<Event, String> {
    let w: WireStatement = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let id = w.id.trim();
    if id.is_empty() || id.len() > 128 {
        return Err("id must be 1 to 128 characters".into());
    }
    let learner = LearnerId::parse(&w.actor).map_err(|e| format!("actor: {e}"))?;
    let verb = Verb::parse(&w.verb)?;
    let component_id = ComponentId::parse(&w.object.component).map_err(|e| format!("object.component: {e}"))?;
    let Some(component) = lib.components.get(&component_id) else {
        return Err(format!("unknown component '{component_id}'"));
    };
    let result = w.result.unwrap_or_default();
    if let Some(score) = result.score
        && !(0.0..=1.0).contains(&score)
    {
        return Err(format!("result.score {score} is out of range 0..=1"));
    }
    if let Some(r) = &result.response
        && r.chars().count() > MAX_RESPONSE_CHARS
    {
        return Err(format!("result.response is longer than {MAX_RESPONSE_CHARS} characters"));
    }
    let iso = match &result.duration {
        Some(d) => Some(
            parse_iso_duration(d)
                .ok_or_else(|| format!("result.duration '{d}' is not an ISO 8601 duration like PT5.4S"))?,
        ),
        None => None,
    };
    let duration_ms = result.duration_ms.or(iso);
    let timestamp = chrono::DateTime::parse_from_rfc3339(&w.timestamp)
        .map_err(|e| format!("timestamp '{}' is not RFC 3339 ({e})", w.timestamp))?
        .timestamp_millis();
    if timestamp > now_ms + MAX_CLOCK_SKEW_MS {
        return Err(format!("timestamp {} is in the future", w.timestamp));
    }
    if result.hints_used.is_some_and(|h| h > MAX_HINTS) {
        return Err(format!("result.hints_used is above {MAX_HINTS}"));
    }
    let control = |t: &str| t.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if control(id) || control(&w.actor) || result.response.as_deref().is_some_and(control) {
        return Err("id, actor and result.response must not contain control characters".into());
    }
    let group = match w.context.and_then(|c| c.group) {
        Some(g) => Some(parse_group(&g).map_err(|e| format!("context.group: {e}"))?),
        None => None,
    };
    let mut success = result.success;
    match verb {
        Verb::Answered => {
            if component.format != Format::Exercise {
                return Err(format!("'{component_id}' is not an exercise, so it cannot be answered"));
            }
            let items: Vec<&str> = component.items.iter().map(|i| i.id.as_str()).collect();
            let Some(item) = w.object.item.as_deref() else {
                return Err(format!("answered needs object.item (one of {})", items.join(", ")));
            };
            if !items.contains(&item) {
                return Err(format!(
                    "unknown item '{item}' in '{component_id}' (expected one of {})",
                    items.join(", ")
                ));
            }
            if success.is_none() {
                let Some(response) = &result.response else {
                    return Err("answered needs result.success or result.response".into());
                };
                let key = lib.answer_key(&component_id, item).expect("every item has a key");
                let given = normalize_answer(response);
                success = Some(std::iter::once(&key.answer).chain(&key.accept).any(|a| normalize_answer(a) == given));
            }
        }
        Verb::Rated if result.score.is_none() => {
            return Err("rated needs result.score (0..=1)".into());
        }
        _ => {}
    }
    Ok(Event {
        id: id.to_owned(),
        learner,
        verb,
        component: component_id,
        item: w.object.item,
        success,
        score: result.score,
        response: result.response,
        hints_used: result.hints_used,
        duration_ms,
        timestamp,
        group,
    })
}

/// The longest group name.
pub const MAX_GROUP_CHARS: usize = 64;

/// Checks a group name: 1 to 64 characters, no control characters, trimmed.
pub fn parse_group(raw: &str) -> Result<String, String> {
    let g = raw.trim();
    if g.is_empty() || g.chars().count() > MAX_GROUP_CHARS || g.chars().any(char::is_control) {
        return Err(format!("a group is 1 to {MAX_GROUP_CHARS} characters without control characters"));
    }
    Ok(g.to_owned())
}

/// One bad statement of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invalid {
    pub index: usize,
    pub reason: String,
}

/// Validates a whole batch: every statement, or the list of every bad one.
pub fn validate_batch(values: &[Value], lib: &Library, now_ms: i64) -> Result<Vec<Event>, Vec<Invalid>> {
    let mut events = Vec::with_capacity(values.len());
    let mut bad = Vec::new();
    for (index, v) in values.iter().enumerate() {
        match validate_statement(v, lib, now_ms) {
            Ok(e) => events.push(e),
            Err(reason) => bad.push(Invalid { index, reason }),
        }
    }
    if bad.is_empty() { Ok(events) } else { Err(bad) }
}

#[cfg(test)]
mod tests {
    use super::parse_iso_duration;

    #[test]
    fn iso_durations_parse_and_nonsense_does_not() {
        assert_eq!(parse_iso_duration("PT5.4S"), Some(5400));
        assert_eq!(parse_iso_duration("PT1H2M3S"), Some(3_723_000));
        assert_eq!(parse_iso_duration("P1DT1M"), Some(86_460_000));
        assert_eq!(parse_iso_duration("PT2M"), Some(120_000));
        for bad in ["", "P", "PT", "5S", "PT5", "PTS", "PT1S2M", "PT5X", "P1H"] {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }
}
