//! Reviewing flags: the queries and changes educators make ([`FlagQuery`], [`ChangeRequest`]),
//! and the evidence a flag's page shows ([`detail`]): the answers behind it, the mastery trend,
//! the transcript around it, the rules that fired and the review history.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Evidence, Flag, FlagStatus, FlagStore, Severity};
use crate::content::{Demand, Library, SkillId, text_enum};
use crate::db::StoreError;
use crate::passport::{LearnerState, PassportStore, Verb, normalize_answer};

/// The longest note on a status change.
pub const MAX_NOTE_CHARS: usize = 2000;

text_enum!(
    /// What came of a resolved flag: the learner was helped (`supported`), the content was
    /// changed, nothing needed doing, or the learner was not struggling (`false_alarm`).
    Outcome, "outcome" {
        Supported => "supported",
        ContentChanged => "content_changed",
        NoAction => "no_action",
        FalseAlarm => "false_alarm"
    }
);

/// Which flags to list.
#[derive(Debug, Clone, Default)]
pub struct FlagQuery {
    /// The courses the caller may see (and, filtered, wants); nothing matches when empty.
    pub courses: Vec<String>,
    pub skill: Option<String>,
    pub component: Option<String>,
    pub status: Option<FlagStatus>,
    pub severity: Option<Severity>,
    /// Opened at or after, ms since the Unix epoch.
    pub since: Option<i64>,
    /// The cursor of the previous page.
    pub after: Option<String>,
    pub limit: usize,
}

/// A page of flags.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FlagPage {
    pub flags: Vec<Flag>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Flags by status over the same filters, whatever the `status` filter.
    pub counts: BTreeMap<FlagStatus, u64>,
}

/// A status change asked for.
#[derive(Debug, Clone)]
pub struct ChangeRequest {
    /// `role:subject` of the reviewer.
    pub by: String,
    pub note: Option<String>,
    pub outcome: Option<Outcome>,
}

/// One entry of a flag's review history.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Change {
    pub at: i64,
    /// `role:subject`, or `tutor` when the rules opened it.
    pub by: String,
    /// `opened`, `acknowledged`, `resolved`, `reopened`.
    pub action: String,
    /// The status after the change.
    pub status: FlagStatus,
    pub outcome: Option<String>,
    pub note: Option<String>,
}

/// What a status change did.
#[derive(Debug)]
pub enum Transition {
    NotFound,
    /// Done (`changed`), or it was already in that status (perhaps moved there by another
    /// reviewer a moment ago).
    Done {
        flag: Flag,
        changed: bool,
    },
    /// Not a move from its status (a resolved flag is not acknowledged: reopen it).
    Refused {
        flag: Flag,
    },
    /// Another flag of the same learner and skill is open: that one is the one to review.
    Active {
        flag: Flag,
        other: String,
    },
}

/// An answer behind a flag.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Answer {
    pub at: i64,
    pub component: String,
    pub item: String,
    /// The item's question.
    pub prompt: Option<String>,
    pub demand: Option<Demand>,
    pub response: Option<String>,
    pub correct: bool,
    pub hints_used: Option<u32>,
    pub duration_ms: Option<u64>,
    /// The known misconception the response matches.
    pub diagnosis: Option<String>,
}

/// Mastery of the flag's skill after one answer.
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
pub struct TrendPoint {
    pub at: i64,
    pub mastery: f64,
    pub correct: bool,
}

/// A message of the transcript around the flag.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Excerpt {
    pub session: String,
    /// `learner` or `tutor`.
    pub role: String,
    pub content: String,
    pub at: i64,
}

/// Everything a flag's page shows.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Detail {
    pub flag: Flag,
    /// The skill's name.
    pub skill_name: String,
    /// The answers on the skill's exercises in the flag's course, oldest first (the newest 50).
    pub answers: Vec<Answer>,
    /// Mastery after each answer on the skill, oldest first.
    pub trend: Vec<TrendPoint>,
    /// The transcript from 15 minutes before the first evidence to 15 minutes after the last
    /// (at most 30 messages), oldest first.
    pub transcript: Vec<Excerpt>,
    /// The rules that fired, and when (the flag's evidence).
    pub rules: Vec<Evidence>,
    pub history: Vec<Change>,
}

/// Answers shown per flag.
const ANSWERS_SHOWN: usize = 50;
/// Transcript window either side of the evidence.
const TRANSCRIPT_MARGIN_MS: i64 = 15 * 60 * 1000;
/// Transcript messages shown per flag.
pub const TRANSCRIPT_SHOWN: usize = 30;

/// The times (ms) between which the transcript around a flag is shown.
pub fn transcript_window(flag: &Flag) -> (i64, i64) {
    let first = flag.evidence.iter().map(|e| e.at).min().unwrap_or(flag.created_at);
    let last = flag.evidence.iter().map(|e| e.at).max().unwrap_or(flag.updated_at);
    (first - TRANSCRIPT_MARGIN_MS, last + TRANSCRIPT_MARGIN_MS)
}

/// Assembles a flag's evidence from the stores, with the transcript around it (the messages
/// of [`transcript_window`]).
pub async fn detail(
    lib: &Library,
    flag: Flag,
    passports: &dyn PassportStore,
    flags: &dyn FlagStore,
    proficient: f64,
    transcript: Vec<Excerpt>,
) -> Result<Detail, StoreError> {
    let skill = SkillId::parse(&flag.skill).ok();
    let mut events = passports.events(&flag.learner).await?;
    events.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    // the trend: the learner's model replayed, mastery of this skill after each answer on it
    let mut trend = Vec::new();
    let mut state = LearnerState::default();
    let refs: Vec<_> = events.iter().collect();
    let mut answered_at: Vec<(i64, f64)> = Vec::new();
    state.apply_all(lib, &refs, proficient, |s, at, m| {
        if Some(s) == skill.as_ref() {
            answered_at.push((at, m));
        }
    });
    let mut answers = Vec::new();
    let mut points = answered_at.into_iter();
    for e in &events {
        let Some(component) = lib.components.get(&e.component) else { continue };
        if e.verb != Verb::Answered || !skill.as_ref().is_some_and(|s| component.skills.contains(s)) {
            continue;
        }
        let correct = e.success.unwrap_or(false);
        if let Some((at, mastery)) = points.next() {
            trend.push(TrendPoint { at, mastery, correct });
        }
        if component.course != flag.course {
            continue;
        }
        let item_id = e.item.clone().unwrap_or_default();
        let item = component.items.iter().find(|i| i.id == item_id);
        let diagnosis = (!correct).then_some(e.response.as_deref()).flatten().and_then(|r| {
            let given = normalize_answer(r);
            let key = lib.answer_key(&e.component, &item_id)?;
            key.misconceptions.iter().find(|m| normalize_answer(&m.response) == given).map(|m| m.diagnosis.clone())
        });
        answers.push(Answer {
            at: e.timestamp,
            component: e.component.to_string(),
            item: item_id,
            prompt: item.map(|i| i.prompt.clone()),
            demand: item.map(|i| i.demand),
            response: e.response.clone(),
            correct,
            hints_used: e.hints_used,
            duration_ms: e.duration_ms,
            diagnosis,
        });
    }
    if answers.len() > ANSWERS_SHOWN {
        answers.drain(..answers.len() - ANSWERS_SHOWN);
    }
    let history = flags.history(&flag.id).await?;
    Ok(Detail {
        skill_name: skill
            .as_ref()
            .and_then(|s| lib.skills.get(s))
            .map_or_else(|| flag.skill.clone(), |s| s.name.clone()),
        rules: flag.evidence.clone(),
        flag,
        answers,
        trend,
        transcript,
        history,
    })
}
