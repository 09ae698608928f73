//! The learner model: per-skill mastery with its evidence, and format preference, built by
//! replaying events in timestamp order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bkt;
use super::event::{Event, Verb, normalize_answer};
use crate::content::{ComponentId, Demand, Format, Library, SkillId};

/// How many recent answers a skill state keeps for its trend and its "last N" reasons.
pub const RECENT: usize = 10;
/// The week (Monday to Sunday, UTC) of a timestamp in ms, counted from the week of the Unix epoch.
pub fn week_of(ts_ms: i64) -> i64 {
    // 1970-01-01 was a Thursday: shift by three days so that weeks start on Mondays
    (ts_ms.div_euclid(86_400_000) + 3).div_euclid(7)
}

/// The first day (a Monday) of a week of [`week_of`], in ms since the Unix epoch.
pub fn week_start(week: i64) -> i64 {
    (week * 7 - 3) * 86_400_000
}

/// How many recent misconceptions a skill state keeps.
pub const MISCONCEPTIONS_KEPT: usize = 5;

/// Attempts and successes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub attempts: u32,
    pub correct: u32,
}

/// A wrong answer that matched a known misconception of the exercise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MisconceptionHit {
    pub component: String,
    pub item: String,
    pub response: String,
    pub diagnosis: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// What the passport knows about one learner and one skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillState {
    /// BKT posterior that the skill is known.
    pub mastery: f64,
    /// Answers observed (the confidence of `mastery`).
    pub evidence: u32,
    pub correct: u32,
    pub hints_used: u32,
    /// The last answers, oldest first.
    pub recent: Vec<bool>,
    /// Mastery before each of the last answers and after the newest, oldest first: the trend.
    pub history: Vec<f64>,
    /// Milliseconds since the Unix epoch of the newest answer.
    pub last_seen: i64,
    pub by_demand: BTreeMap<Demand, Tally>,
    /// Newest last.
    pub misconceptions: Vec<MisconceptionHit>,
    /// Milliseconds since the Unix epoch of the first answer.
    #[serde(default)]
    pub first_seen: i64,
    /// When mastery first reached the proficient threshold (for "time to proficient").
    #[serde(default)]
    pub proficient_at: Option<i64>,
}

impl SkillState {
    /// A skill with no evidence yet, at its prior.
    pub fn new(prior: f64) -> Self {
        Self {
            mastery: prior,
            evidence: 0,
            correct: 0,
            hints_used: 0,
            recent: Vec::new(),
            history: vec![prior],
            last_seen: 0,
            by_demand: BTreeMap::new(),
            misconceptions: Vec::new(),
            first_seen: 0,
            proficient_at: None,
        }
    }

    /// Change of mastery over the recent answers.
    pub fn trend(&self) -> f64 {
        match (self.history.first(), self.history.last()) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        }
    }
}

/// Engagement with one format: mean of ratings and of right/wrong answers after seeing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FormatSignal {
    pub sum: f64,
    pub n: u32,
}

/// The whole model of one learner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnerState {
    pub skills: BTreeMap<SkillId, SkillState>,
    pub formats: BTreeMap<Format, FormatSignal>,
    /// The format last viewed per skill, credited (once) by the next answer on that skill.
    pub last_viewed: BTreeMap<SkillId, Format>,
    /// The order key `(timestamp, id)` of the newest event applied.
    pub last_key: Option<(i64, String)>,
    /// Answers so far, on any skill, and how many were right: what moves a new skill's
    /// starting estimate when the fitted model has an individualised prior.
    #[serde(default)]
    pub answers: u32,
    #[serde(default)]
    pub right: u32,
    /// The version of the fitted parameters this state was computed with (0: authored); a
    /// state from another version is replayed before events are added to it.
    #[serde(default)]
    pub params_version: i64,
}

/// The diagnosis of a known misconception that `response` to an item matches, if any.
pub fn misconception_of<'a>(lib: &'a Library, component: &ComponentId, item: &str, response: &str) -> Option<&'a str> {
    let given = normalize_answer(response);
    let key = lib.answer_key(component, item)?;
    key.misconceptions.iter().find(|m| normalize_answer(&m.response) == given).map(|m| m.diagnosis.as_str())
}

/// Fewest signals before a format counts as preferred.
pub const MIN_FORMAT_SIGNALS: u32 = 2;

impl LearnerState {
    /// Whether `events` (sorted) can be applied on top of this state, i.e. all of them come
    /// after the newest event already applied and the state was computed with `lib`'s
    /// parameters. Otherwise the learner must be replayed.
    pub fn can_append(&self, first: &Event, lib: &Library) -> bool {
        match &self.last_key {
            // nothing applied yet: nothing computed with other parameters either
            None => true,
            Some(_) if self.params_version != lib.learned.version => false,
            Some((ts, id)) => first.order_key() > (*ts, id.as_str()),
        }
    }

    /// Applies one event; returns the skills whose state changed.
    pub fn apply(&mut self, lib: &Library, e: &Event) -> Vec<SkillId> {
        self.last_key = Some((e.timestamp, e.id.clone()));
        self.params_version = lib.learned.version;
        let Some(component) = lib.components.get(&e.component) else {
            return Vec::new();
        };
        match e.verb {
            Verb::Viewed => {
                for s in &component.skills {
                    self.last_viewed.insert(s.clone(), component.format);
                }
                Vec::new()
            }
            Verb::Rated => {
                if let Some(score) = e.score {
                    let f = self.formats.entry(component.format).or_default();
                    f.sum += score;
                    f.n += 1;
                }
                Vec::new()
            }
            Verb::Answered => {
                let correct = e.success.unwrap_or(false);
                let item = e.item.as_deref().unwrap_or_default();
                let demand = component.items.iter().find(|i| i.id == item).map(|i| i.demand);
                let hit = (!correct).then_some(e.response.as_deref()).flatten().and_then(|r| {
                    misconception_of(lib, &e.component, item, r).map(|diagnosis| MisconceptionHit {
                        component: e.component.to_string(),
                        item: item.to_owned(),
                        response: r.to_owned(),
                        diagnosis: diagnosis.to_owned(),
                        at: e.timestamp,
                    })
                });
                let start = |skill: &SkillId| self.start(lib, skill);
                let starts: Vec<f64> = component.skills.iter().map(start).collect();
                self.answers = self.answers.saturating_add(1);
                self.right = self.right.saturating_add(u32::from(correct));
                for (skill, start) in component.skills.iter().zip(starts) {
                    let params = lib.bkt(skill);
                    let st = self.skills.entry(skill.clone()).or_insert_with(|| SkillState::new(start));
                    st.mastery = bkt::update(st.mastery, correct, &params);
                    if st.evidence == 0 {
                        st.first_seen = e.timestamp;
                    }
                    st.evidence += 1;
                    st.correct += u32::from(correct);
                    st.hints_used = st.hints_used.saturating_add(e.hints_used.unwrap_or(0));
                    st.recent.push(correct);
                    if st.recent.len() > RECENT {
                        st.recent.remove(0);
                    }
                    st.history.push(st.mastery);
                    if st.history.len() > RECENT / 2 + 1 {
                        st.history.remove(0);
                    }
                    st.last_seen = e.timestamp;
                    if let Some(d) = demand {
                        let t = st.by_demand.entry(d).or_default();
                        t.attempts += 1;
                        t.correct += u32::from(correct);
                    }
                    if let Some(h) = &hit {
                        st.misconceptions.push(h.clone());
                        if st.misconceptions.len() > MISCONCEPTIONS_KEPT {
                            st.misconceptions.remove(0);
                        }
                    }
                    // success after seeing a format counts for that format
                    if let Some(f) = self.last_viewed.remove(skill) {
                        let sig = self.formats.entry(f).or_default();
                        sig.sum += if correct { 1.0 } else { 0.0 };
                        sig.n += 1;
                    }
                }
                component.skills.clone()
            }
            Verb::Skipped | Verb::Asked => Vec::new(),
        }
    }

    /// The learner's state on `skill`: what the evidence says, or the skill's prior when there
    /// is none yet.
    pub fn skill_or_prior(&self, lib: &Library, skill: &SkillId) -> SkillState {
        self.skills.get(skill).cloned().unwrap_or_else(|| SkillState::new(self.start(lib, skill)))
    }

    /// The mastery of `skill`: the estimate from the evidence, or where this learner starts.
    pub fn mastery(&self, lib: &Library, skill: &SkillId) -> f64 {
        self.skills.get(skill).map_or_else(|| self.start(lib, skill), |s| s.mastery)
    }

    /// Where this learner starts on a skill with no evidence yet: the skill's prior, moved by
    /// the answers on other skills when the fitted model has an individualised prior.
    pub fn start(&self, lib: &Library, skill: &SkillId) -> f64 {
        let l = &lib.learned;
        bkt::start_prior(lib.bkt(skill).prior, l.prior_weight, l.mean_accuracy, self.right, self.answers)
    }

    /// The format this learner engages with best, once there is enough signal.
    pub fn preferred_format(&self) -> Option<Format> {
        self.formats
            .iter()
            .filter(|(_, s)| s.n >= MIN_FORMAT_SIGNALS)
            .map(|(f, s)| (*f, s.sum / f64::from(s.n)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(f, _)| f)
    }

    /// `events` in order, applied on top of `base` (the model as of events no longer stored),
    /// noting when each skill first reached `proficient`.
    pub fn replay_from(base: Self, lib: &Library, events: &mut [Event], proficient: f64) -> Self {
        events.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let mut st = base;
        st.apply_all(lib, &events.iter().collect::<Vec<_>>(), proficient, |_, _, _| {});
        st
    }

    /// Applies `events` (sorted) and notes when each skill first reached `proficient`; calls
    /// `answered(skill, timestamp, mastery)` after each answer; returns the skills whose state
    /// changed.
    pub fn apply_all(
        &mut self,
        lib: &Library,
        events: &[&Event],
        proficient: f64,
        mut answered: impl FnMut(&SkillId, i64, f64),
    ) -> Vec<SkillId> {
        let mut touched = Vec::new();
        for e in events {
            for skill in self.apply(lib, e) {
                if let Some(st) = self.skills.get_mut(&skill) {
                    if st.proficient_at.is_none() && st.mastery >= proficient {
                        st.proficient_at = Some(e.timestamp);
                    }
                    answered(&skill, e.timestamp, st.mastery);
                }
                if !touched.contains(&skill) {
                    touched.push(skill);
                }
            }
        }
        touched
    }
}
