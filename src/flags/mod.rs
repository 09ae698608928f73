//! Struggle flags: the rules that notice a learner struggling (the same for every engine, and
//! independent of any model), and where flags are kept ([`FlagStore`]). At most one open flag
//! per (learner, skill); new evidence is appended to it.

mod review;
mod store;

use serde::{Deserialize, Serialize};

pub use review::{
    Answer, Change, ChangeRequest, Detail, Excerpt, FlagPage, FlagQuery, MAX_NOTE_CHARS, Outcome, TRANSCRIPT_SHOWN,
    Transition, TrendPoint, detail, transcript_window,
};
pub use store::{FlagStore, MAX_EVIDENCE, SqlFlagStore};

pub use crate::config::FlagConfig;

use crate::content::{ComponentId, Library, SkillId, text_enum};
use crate::ids::now_ms;
use crate::passport::{LearnerId, LearnerState, name_in_sentence, normalize_answer};
use crate::text::contains_any;

text_enum!(
    /// How serious a flag is.
    Severity, "severity" { Low => "low", Medium => "medium", High => "high" }
);

text_enum!(
    /// Where a flag is in its review: `open → acknowledged → resolved`.
    FlagStatus, "flag status" { Open => "open", Acknowledged => "acknowledged", Resolved => "resolved" }
);

/// One piece of evidence behind a flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Evidence {
    /// `wrong_streak`, `falling_mastery`, `heavy_hints`, `confusion`, `repeated_question`,
    /// `model` (the tutor called `flag_struggle`).
    pub rule: String,
    /// A sentence an educator can read.
    pub detail: String,
    /// Mastery of the skill when this was seen.
    pub mastery: Option<f64>,
    /// The learner's words, when the evidence is a message.
    pub excerpt: Option<String>,
    pub at: i64,
}

/// A request to open a flag or add to the open one.
#[derive(Debug, Clone, PartialEq)]
pub struct Raise {
    pub learner: LearnerId,
    pub skill: SkillId,
    pub course: String,
    pub component: Option<ComponentId>,
    pub severity: Severity,
    pub evidence: Evidence,
}

/// A stored flag.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Flag {
    pub id: String,
    pub learner: LearnerId,
    pub skill: String,
    pub course: String,
    pub component: Option<String>,
    /// The rule of the first evidence.
    pub reason: String,
    pub severity: Severity,
    pub status: FlagStatus,
    pub evidence: Vec<Evidence>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Phrases that say the learner is lost.
const CONFUSION: &[&str] = &[
    "i don't get",
    "i dont get",
    "i don't understand",
    "i dont understand",
    "i do not understand",
    "doesn't make sense",
    "does not make sense",
    "makes no sense",
    "i'm confused",
    "im confused",
    "i am confused",
    "so confused",
    "i'm lost",
    "i am lost",
    "i'm stuck",
    "im stuck",
    "i am stuck",
    "no idea",
    "still don't",
    "still dont",
    "i give up",
];

/// What the rules look at for one turn or one batch of events.
pub struct Observation<'a> {
    pub learner: &'a LearnerId,
    pub state: &'a LearnerState,
    /// The skills in view (the page's, or those the events touched).
    pub skills: &'a [SkillId],
    pub component: Option<&'a ComponentId>,
    /// The learner's message this turn, and their earlier messages in the session.
    pub message: Option<&'a str>,
    pub earlier: &'a [String],
    /// Whether new answers arrived, so the rules on answers (wrong streak, falling mastery,
    /// hints) look again. A chat turn brings no answers: re-reading the same ones every turn
    /// would pile up the same evidence, and reopen a flag an educator just resolved.
    pub new_answers: bool,
}

/// Applies the rules; one [`Raise`] per rule that fires, per skill.
pub fn detect(lib: &Library, cfg: &FlagConfig, o: &Observation<'_>) -> Vec<Raise> {
    let now = now_ms();
    let mut out = Vec::new();
    let mut push = |skill: &SkillId,
                    severity: Severity,
                    rule: &str,
                    detail: String,
                    mastery: Option<f64>,
                    excerpt: Option<String>| {
        out.push(Raise {
            learner: o.learner.clone(),
            skill: skill.clone(),
            course: lib.skills.get(skill).map(|s| s.course.clone()).unwrap_or_default(),
            component: o.component.cloned(),
            severity,
            evidence: Evidence { rule: rule.into(), detail, mastery, excerpt, at: now },
        });
    };
    for skill in o.skills.iter().filter(|_| o.new_answers) {
        let Some(st) = o.state.skills.get(skill) else {
            continue;
        };
        let name = name_in_sentence(lib, skill);
        let streak = st.recent.iter().rev().take_while(|c| !**c).count() as u32;
        if streak >= cfg.wrong_streak {
            let sev = if streak >= cfg.wrong_streak + 2 { Severity::High } else { Severity::Medium };
            push(
                skill,
                sev,
                "wrong_streak",
                format!("{streak} wrong answers in a row on {name}"),
                Some(st.mastery),
                None,
            );
        }
        if st.evidence >= 3 && st.trend() <= -cfg.falling_by {
            push(
                skill,
                Severity::Medium,
                "falling_mastery",
                format!("mastery of {name} fell by {:.2} over the recent answers, to {:.2}", -st.trend(), st.mastery),
                Some(st.mastery),
                None,
            );
        }
        if st.evidence >= 3 && f64::from(st.hints_used) / f64::from(st.evidence) >= cfg.hints_per_answer {
            push(
                skill,
                Severity::Low,
                "heavy_hints",
                format!("{} hints over {} answers on {name}", st.hints_used, st.evidence),
                Some(st.mastery),
                None,
            );
        }
    }
    if let (Some(msg), Some(skill)) = (o.message, o.skills.first()) {
        let mastery = o.state.skills.get(skill).map(|s| s.mastery);
        let excerpt: String = msg.chars().take(280).collect();
        if contains_any(msg, CONFUSION) {
            push(
                skill,
                Severity::Low,
                "confusion",
                "the learner says they are confused".into(),
                mastery,
                Some(excerpt.clone()),
            );
        }
        let asked = normalize_answer(msg);
        if o.earlier.iter().any(|e| normalize_answer(e) == asked) {
            push(
                skill,
                Severity::Low,
                "repeated_question",
                "the learner asked the same question again".into(),
                mastery,
                Some(excerpt),
            );
        }
    }
    out
}

/// Runs the answer rules on the skills a batch of answers touched, per learner, so an educator
/// hears of a learner stuck on exercises even if they never open the tutor. Best effort: the
/// batch is already stored, and a failure here is logged.
pub async fn watch_answers(
    lib: &Library,
    cfg: &FlagConfig,
    passports: &dyn crate::passport::PassportStore,
    flags: &dyn FlagStore,
    events: &[crate::passport::Event],
    states: Option<&crate::passport::States>,
) {
    use std::collections::BTreeMap;
    let mut touched: BTreeMap<&LearnerId, Vec<SkillId>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.verb == crate::passport::Verb::Answered) {
        let skills = touched.entry(&e.learner).or_default();
        for sk in lib.components.get(&e.component).map(|c| c.skills.as_slice()).unwrap_or_default() {
            if !skills.contains(sk) {
                skills.push(sk.clone());
            }
        }
    }
    let mut raises = Vec::new();
    for (learner, skills) in touched {
        let state = match states.and_then(|s| s.get(learner)) {
            Some(st) => std::borrow::Cow::Borrowed(st),
            None => match passports.learner(learner).await {
                Ok(st) => std::borrow::Cow::Owned(st),
                Err(e) => {
                    tracing::warn!(error = %e, "struggle check skipped");
                    continue;
                }
            },
        };
        let obs = Observation {
            learner,
            state: &state,
            skills: &skills,
            component: None,
            message: None,
            earlier: &[],
            new_answers: true,
        };
        raises.extend(detect(lib, cfg, &obs));
    }
    match flags.raise_all(&raises).await {
        Ok(raised) => crate::metrics::add("tutor_flags_raised_total", &[], raised.len() as u64),
        Err(e) => tracing::warn!(error = %e, flags = raises.len(), "could not store struggle flags"),
    }
}
