//! What a learner should study next, each with the material and a reason that names the
//! evidence ([`recommendations`]), the learner's feedback on them ([`Feedback`]), and why the
//! passport thinks what it does about a skill: the answers that moved the estimate
//! ([`evidence_trail`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::event::{Event, LearnerId, Verb};
use super::model::{LearnerState, SkillState, misconception_of};
use super::view::{Band, best_material, capitalize, name_in_sentence, recent_sentence, rfc3339};
use crate::config::PassportConfig;
use crate::content::{Component, ComponentId, Format, Level, Library, SkillId};

/// What a learner said about a recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Feedback {
    /// It helped: kept where it is.
    Helpful,
    /// Later: hidden for a day.
    NotNow,
    /// The learner says they know it: a short check is offered instead of trusting it blindly.
    AlreadyKnow,
    /// Not for me: hidden for two weeks.
    Dismiss,
}

impl Feedback {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Feedback::Helpful => "helpful",
            Feedback::NotNow => "not_now",
            Feedback::AlreadyKnow => "already_know",
            Feedback::Dismiss => "dismiss",
        }
    }

    /// Parses the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        [Feedback::Helpful, Feedback::NotNow, Feedback::AlreadyKnow, Feedback::Dismiss]
            .into_iter()
            .find(|f| f.as_str() == s)
    }

    /// How long a recommendation stays hidden after this feedback, in ms.
    fn hides_for(self) -> i64 {
        const DAY: i64 = 86_400_000;
        match self {
            Feedback::NotNow => DAY,
            Feedback::Dismiss => 14 * DAY,
            Feedback::Helpful | Feedback::AlreadyKnow => 0,
        }
    }
}

/// A learner's newest feedback on one recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Given {
    pub recommendation: String,
    pub feedback: Feedback,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// Why a skill is recommended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A prerequisite below proficient under a skill in progress.
    PrerequisiteGap,
    /// A skill in progress that is weak or falling.
    Fragile,
    /// The learner said they know it: a short check.
    Check,
    /// A new skill whose prerequisites are met (or where a course starts).
    Next,
}

/// One recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Recommendation {
    /// Stable across calls (the skill it is about): feedback is given on it.
    pub id: String,
    pub kind: Kind,
    pub skill: SkillId,
    pub name: String,
    pub course: String,
    /// The material at the learner's level and format (an exercise for a check).
    pub component_id: ComponentId,
    pub title: String,
    pub level: Level,
    pub format: Format,
    /// One sentence naming the evidence.
    pub reason: String,
    /// Whether the learner's educators marked the skill a priority.
    pub priority: bool,
}

/// `GET /v1/learners/{id}/recommendations`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Recommendations {
    pub learner: LearnerId,
    pub recommendations: Vec<Recommendation>,
}

/// What to study next, across the skill graph of `courses`: prerequisite gaps first, then
/// fragile skills, then checks of what the learner said they know, then the next skills whose
/// prerequisites are met (mastered skills skipped); within each, the skills in `priorities`
/// first. A learner with no evidence in a course gets where its skill graph starts. Hidden:
/// what the learner dismissed or put off, for a while (`feedback`, newest per id, at `now`).
#[allow(clippy::too_many_arguments)]
pub fn recommendations(
    lib: &Library,
    cfg: &PassportConfig,
    learner: &LearnerId,
    state: &LearnerState,
    courses: &[String],
    priorities: &BTreeSet<SkillId>,
    feedback: &[Given],
    now: i64,
    limit: usize,
) -> Recommendations {
    let given: BTreeMap<&str, &Given> = feedback.iter().map(|g| (g.recommendation.as_str(), g)).collect();
    // the format preference is counted over every course: only a caller who sees them all uses it
    let format =
        if courses.len() >= lib.courses.len() { state.preferred_format() } else { None }.unwrap_or(Format::Explanation);
    let known = |s: &SkillId| state.skills.get(s).filter(|st| st.evidence > 0);
    let proficient = |s: &SkillId| known(s).is_some_and(|st| st.mastery >= cfg.proficient);
    let in_scope = |s: &SkillId| lib.skills.get(s).is_some_and(|k| courses.contains(&k.course));
    let mut out: BTreeMap<SkillId, (Kind, String)> = BTreeMap::new();

    // prerequisite gaps: under a skill in progress, below proficient
    for (skill, st) in state.skills.iter().filter(|(s, st)| st.evidence > 0 && in_scope(s)) {
        if Band::of(st.mastery, cfg) == Band::Mastered {
            continue;
        }
        for pre in lib.skills.get(skill).map(|k| k.prerequisites.as_slice()).unwrap_or_default() {
            if let Some(p) = known(pre).filter(|p| p.mastery < cfg.proficient)
                && in_scope(pre)
                && !out.contains_key(pre)
            {
                let reason = format!(
                    "{}, and {} needs it.",
                    capitalize(&recent_sentence(p, &name_in_sentence(lib, pre))),
                    name_in_sentence(lib, skill)
                );
                out.insert(pre.clone(), (Kind::PrerequisiteGap, reason));
            }
        }
    }
    // fragile: in progress, below proficient or falling
    for (skill, st) in state.skills.iter().filter(|(s, st)| st.evidence > 0 && in_scope(s)) {
        let band = Band::of(st.mastery, cfg);
        if out.contains_key(skill) || band == Band::Mastered || (st.mastery >= cfg.proficient && st.trend() > -0.05) {
            continue;
        }
        let name = name_in_sentence(lib, skill);
        let reason = if st.trend() <= -0.05 {
            format!(
                "{}: your estimate on {name} fell by {:.2} over your recent answers, to {:.2} ({}).",
                capitalize(&recent_sentence(st, &name)),
                -st.trend(),
                st.mastery,
                band.as_str()
            )
        } else {
            format!(
                "{}, so {name} is still {} ({:.2}).",
                capitalize(&recent_sentence(st, &name)),
                band.as_str(),
                st.mastery
            )
        };
        out.insert(skill.clone(), (Kind::Fragile, reason));
    }
    // next: new skills whose prerequisites are met, in the courses' order; where a course starts
    for course in courses.iter().filter_map(|c| lib.courses.get(c)) {
        let started = course.skills.iter().any(|s| known(s).is_some());
        for skill in &course.skills {
            if out.contains_key(skill) || known(skill).is_some() {
                continue;
            }
            let pres = lib.skills.get(skill).map(|k| k.prerequisites.as_slice()).unwrap_or_default();
            let name = name_in_sentence(lib, skill);
            let reason = if pres.is_empty() && !started {
                format!("{} is where {} starts, and you have no answers on it yet.", capitalize(&name), course.title)
            } else if pres.is_empty() {
                format!("{} needs nothing before it, and you have not tried it yet.", capitalize(&name))
            } else if started && pres.iter().all(proficient) {
                // a prerequisite of another course is not named to a caller who does not see it
                let names: Vec<String> =
                    pres.iter().filter(|p| in_scope(p)).map(|p| name_in_sentence(lib, p)).collect();
                if names.is_empty() {
                    format!("You are ready for {name}: you know what it builds on.")
                } else {
                    format!("You are ready for {name}: you are proficient at {}.", names.join(" and "))
                }
            } else {
                continue;
            };
            out.insert(skill.clone(), (Kind::Next, reason));
        }
    }
    // feedback: hidden for a while, or a check instead of trusting "I know it"
    let mut recs: Vec<Recommendation> = Vec::new();
    for (skill, (mut kind, mut reason)) in out {
        if let Some(g) = given.get(skill.as_str()) {
            if now - g.at < g.feedback.hides_for() {
                continue;
            }
            // "I know it" stands until the learner answers on the skill; then the answers speak
            let answered_since = state.skills.get(&skill).is_some_and(|st| st.evidence > 0 && st.last_seen > g.at);
            if g.feedback == Feedback::AlreadyKnow && !answered_since {
                let st = state.skill_or_prior(lib, &skill);
                kind = Kind::Check;
                reason = format!(
                    "You said you already know {}: a short check will confirm it ({} answer(s) on it so far).",
                    name_in_sentence(lib, &skill),
                    st.evidence
                );
            }
        }
        let st = state.skill_or_prior(lib, &skill);
        let level = Band::of(st.mastery, cfg).level();
        let material = if kind == Kind::Check {
            check_exercise(lib, &skill, level)
        } else {
            best_material(lib, &skill, level, format, None)
        };
        let (Some(c), Some(k)) = (material, lib.skills.get(&skill)) else {
            continue;
        };
        let priority = priorities.contains(&skill);
        if priority {
            reason.push_str(" Your educators marked it a priority.");
        }
        recs.push(Recommendation {
            id: skill.to_string(),
            kind,
            skill: skill.clone(),
            name: k.name.clone(),
            course: k.course.clone(),
            component_id: c.id.clone(),
            title: c.title.clone(),
            level: c.level,
            format: c.format,
            reason,
            priority,
        });
    }
    // by kind, priorities first, then in the order of the skill graph
    let order = |s: &SkillId| {
        courses
            .iter()
            .filter_map(|c| lib.courses.get(c))
            .flat_map(|c| c.skills.iter())
            .position(|x| x == s)
            .unwrap_or(usize::MAX)
    };
    recs.sort_by_key(|r| (r.kind, !r.priority, order(&r.skill)));
    recs.truncate(limit);
    Recommendations { learner: learner.clone(), recommendations: recs }
}

/// An exercise on `skill` (its own first), nearest `level`.
fn check_exercise<'a>(lib: &'a Library, skill: &SkillId, level: Level) -> Option<&'a Component> {
    lib.components
        .values()
        .filter(|c| c.format == Format::Exercise && c.skills.contains(skill))
        .min_by_key(|c| (i32::from(c.skills.first() != Some(skill)), c.level.distance(level), c.id.clone()))
}

/// One answer that moved a skill's estimate.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Step {
    /// RFC 3339.
    pub at: String,
    pub component_id: ComponentId,
    pub title: String,
    pub item: String,
    pub correct: bool,
    /// The learner's own answer, when the page sent it.
    pub response: Option<String>,
    pub hints_used: u32,
    pub mastery_before: f64,
    pub mastery_after: f64,
    /// What the wrong answer showed, when it matched a known misconception.
    pub misconception: Option<String>,
    /// The step in words.
    pub sentence: String,
}

/// `GET /v1/learners/{id}/skills/{skill}/evidence`: why the passport thinks what it does.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Trail {
    pub learner: LearnerId,
    pub skill: SkillId,
    pub name: String,
    pub mastery: f64,
    pub band: Band,
    /// Newest first (at most 100).
    pub steps: Vec<Step>,
    /// Answers that count in the estimate but are no longer stored (deleted under the
    /// retention policy; the model they built is kept).
    pub earlier: u32,
    /// The whole trail in a sentence.
    pub summary: String,
}

/// The answers on `skill` in `events` with how each moved the estimate, replayed from `base`
/// (the model as of the events no longer stored).
pub fn evidence_trail(
    lib: &Library,
    cfg: &PassportConfig,
    learner: &LearnerId,
    base: &LearnerState,
    events: &[Event],
    skill: &SkillId,
) -> Trail {
    let mut st = base.clone();
    let mut steps = Vec::new();
    let name = name_in_sentence(lib, skill);
    // in the passport's order, whatever order the store gave them in
    let mut ordered: Vec<&Event> = events.iter().collect();
    ordered.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    for e in ordered {
        let touches =
            e.verb == Verb::Answered && lib.components.get(&e.component).is_some_and(|c| c.skills.contains(skill));
        let before = st.mastery(lib, skill);
        let first = !st.skills.contains_key(skill);
        let (right_so_far, answers_so_far) = (st.right, st.answers);
        st.apply(lib, e);
        if !touches {
            continue;
        }
        let after = st.mastery(lib, skill);
        let correct = e.success.unwrap_or(false);
        let item = e.item.clone().unwrap_or_default();
        let misconception = (!correct)
            .then_some(e.response.as_deref())
            .flatten()
            .and_then(|r| misconception_of(lib, &e.component, &item, r))
            .map(str::to_owned);
        let title = lib.components.get(&e.component).map(|c| c.title.clone()).unwrap_or_default();
        let hints = e.hints_used.unwrap_or(0);
        let moved = match (correct, after >= before) {
            (true, _) => "rose",
            (false, false) => "fell",
            // BKT counts every attempt as a chance to learn: a wrong answer from a low
            // estimate can nudge it up (the summary says why, once)
            (false, true) => "stayed low",
        };
        let mut sentence = format!(
            "{} on {item} of “{title}”{}: {name} {moved}, {before:.2} → {after:.2}.",
            if correct { "Right" } else { "Wrong" },
            match hints {
                0 => String::new(),
                1 => " with 1 hint".into(),
                n => format!(" with {n} hints"),
            },
        );
        if let Some(m) = &misconception {
            sentence.push_str(&format!(" What it showed: {}", m.trim()));
            if !sentence.ends_with(['.', '!', '?']) {
                sentence.push('.');
            }
        }
        let prior = lib.bkt(skill).prior;
        if first && (before - prior).abs() >= 0.005 {
            // the individualised prior of a fitted model moved where this skill started
            sentence.push_str(&format!(
                " It started at {before:.2} rather than {prior:.2}: you got {right_so_far} of {answers_so_far} answers right on the skills you met before{}.",
                if before > prior { ", so the tutor expected you to know more" } else { ", so the tutor expected you to need more practice" }
            ));
        }
        steps.push(Step {
            at: rfc3339(e.timestamp).unwrap_or_default(),
            component_id: e.component.clone(),
            title,
            item,
            correct,
            response: e.response.clone(),
            hints_used: hints,
            mastery_before: before,
            mastery_after: after,
            misconception,
            sentence,
        });
    }
    let now = st.skill_or_prior(lib, skill);
    let earlier = base.skills.get(skill).map_or(0, |s| s.evidence);
    let stored = steps.len();
    steps.reverse();
    steps.truncate(MAX_STEPS);
    let summary = summary(&now, lib.bkt(skill).prior, steps.len(), stored - steps.len() + earlier as usize, &name, cfg);
    Trail {
        learner: learner.clone(),
        skill: skill.clone(),
        name: lib.skills.get(skill).map_or_else(|| skill.to_string(), |s| s.name.clone()),
        mastery: now.mastery,
        band: Band::of(now.mastery, cfg),
        steps,
        earlier,
        summary,
    }
}

/// The most steps a trail lists (the newest).
const MAX_STEPS: usize = 100;

/// The trail in a sentence; `unlisted` answers count in the estimate but are not listed (older
/// than the newest [`MAX_STEPS`], or deleted under the retention policy).
fn summary(st: &SkillState, prior: f64, shown: usize, unlisted: usize, name: &str, cfg: &PassportConfig) -> String {
    if st.evidence == 0 {
        if (st.mastery - prior).abs() >= 0.005 {
            return format!(
                "No answers on {name} yet: the estimate starts at {:.2} rather than {prior:.2}, from how you did on the skills you met before.",
                st.mastery
            );
        }
        return format!("No answers on {name} yet: the estimate is where every learner starts ({:.2}).", st.mastery);
    }
    let mut s = format!(
        "{} answer(s) on {name}, {} right, brought the estimate to {:.2} ({})",
        st.evidence,
        st.correct,
        st.mastery,
        Band::of(st.mastery, cfg).as_str()
    );
    if unlisted > 0 {
        s.push_str(&format!("; the newest {shown} are listed, {unlisted} older ones are not"));
    }
    if st.mastery < cfg.developing && st.evidence > st.correct {
        s.push_str(". A wrong answer from a low estimate barely moves it: every attempt is also a chance to learn");
    }
    s.push('.');
    s
}
