//! What the API shows: the passport of a learner and the plan for a page, each reason written
//! for a person.

use std::collections::BTreeMap;

use serde::Serialize;

use super::event::LearnerId;
use super::model::{LearnerState, SkillState};
use crate::config::PassportConfig;
use crate::content::{Component, ComponentId, Demand, Format, Level, Library, SkillId};

/// A mastery band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Intro,
    Developing,
    Proficient,
    Mastered,
}

impl Band {
    /// The band of a mastery value.
    pub fn of(mastery: f64, cfg: &PassportConfig) -> Self {
        if mastery >= cfg.mastered {
            Band::Mastered
        } else if mastery >= cfg.proficient {
            Band::Proficient
        } else if mastery >= cfg.developing {
            Band::Developing
        } else {
            Band::Intro
        }
    }

    /// The level of material that suits a learner in this band.
    pub fn level(self) -> Level {
        match self {
            Band::Intro => Level::Intro,
            Band::Developing => Level::Developing,
            Band::Proficient => Level::Proficient,
            Band::Mastered => Level::Advanced,
        }
    }

    /// The highest Flesch–Kincaid grade of text for a learner in this band: plain English for
    /// `intro` (8), then 10, 12 and 14.
    pub fn max_grade(self) -> f64 {
        match self {
            Band::Intro => 8.0,
            Band::Developing => 10.0,
            Band::Proficient => 12.0,
            Band::Mastered => 14.0,
        }
    }

    /// The band as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Intro => "intro",
            Band::Developing => "developing",
            Band::Proficient => "proficient",
            Band::Mastered => "mastered",
        }
    }
}

/// Results on items of one cognitive demand.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DemandView {
    pub attempts: u32,
    pub correct: u32,
    pub rate: f64,
}

/// One skill of a passport.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SkillView {
    pub skill: SkillId,
    pub name: String,
    pub course: String,
    pub mastery: f64,
    pub band: Band,
    pub evidence: u32,
    /// `low` under 3 answers, `medium` under 8, else `high`.
    pub confidence: &'static str,
    pub correct: u32,
    /// `rising`, `falling` or `steady` over the recent answers.
    pub trend: &'static str,
    pub trend_delta: f64,
    pub recent: String,
    pub last_seen: Option<String>,
    pub hints_used: u32,
    pub misconceptions: Vec<super::model::MisconceptionHit>,
    pub by_demand: BTreeMap<Demand, DemandView>,
    /// e.g. "strong at recall, weak at reasoning"; absent until there is enough evidence.
    pub demand_summary: Option<String>,
}

/// A prerequisite below the proficient threshold under a skill in progress.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Gap {
    pub skill: SkillId,
    pub name: String,
    pub mastery: f64,
    pub band: Band,
    pub evidence: u32,
    pub needed_by: Vec<SkillId>,
}

/// A learner's format preference.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct FormatPreference {
    pub preferred: Option<Format>,
    pub formats: Vec<FormatView>,
}

/// Engagement with one format.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FormatView {
    pub format: Format,
    pub score: f64,
    pub signals: u32,
}

/// `GET /v1/learners/{id}/passport`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Passport {
    pub learner: LearnerId,
    pub skills: Vec<SkillView>,
    pub prerequisite_gaps: Vec<Gap>,
    pub format_preference: FormatPreference,
}

/// A skill's name to use inside a sentence ("Dividing fractions" → "dividing fractions", but
/// "MFA basics" stays).
pub fn name_in_sentence(lib: &Library, skill: &SkillId) -> String {
    let name = lib.skills.get(skill).map_or_else(|| skill.to_string(), |s| s.name.clone());
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(a), Some(b)) if a.is_uppercase() && b.is_lowercase() => {
            a.to_lowercase().chain(name.chars().skip(1)).collect()
        }
        _ => name,
    }
}

pub(super) fn recent_sentence(st: &SkillState, name: &str) -> String {
    let last: Vec<bool> = st.recent.iter().rev().take(5).copied().collect();
    if last.is_empty() {
        return format!("no answers on {name} yet");
    }
    let right = last.iter().filter(|c| **c).count();
    if right * 2 >= last.len() {
        format!("{right} of your last {} answers on {name} were right", last.len())
    } else {
        format!("{} of your last {} answers on {name} were wrong", last.len() - right, last.len())
    }
}

pub(super) fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn demand_summary(by: &BTreeMap<Demand, DemandView>) -> Option<String> {
    let pick = |f: &dyn Fn(f64) -> bool| -> Vec<&str> {
        by.iter().filter(|(_, v)| v.attempts >= 2 && f(v.rate)).map(|(d, _)| d.as_str()).collect()
    };
    let strong = pick(&|r| r >= 0.75);
    let weak = pick(&|r| r <= 0.5);
    let mut parts = Vec::new();
    if !strong.is_empty() {
        parts.push(format!("strong at {}", strong.join(" and ")));
    }
    if !weak.is_empty() {
        parts.push(format!("weak at {}", weak.join(" and ")));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// One skill's row of the passport.
pub fn skill_view(lib: &Library, cfg: &PassportConfig, skill: &SkillId, st: &SkillState) -> SkillView {
    let by_demand: BTreeMap<Demand, DemandView> = st
        .by_demand
        .iter()
        .map(|(d, t)| {
            (
                *d,
                DemandView {
                    attempts: t.attempts,
                    correct: t.correct,
                    rate: f64::from(t.correct) / f64::from(t.attempts.max(1)),
                },
            )
        })
        .collect();
    let trend = st.trend();
    SkillView {
        skill: skill.clone(),
        name: lib.skills.get(skill).map_or_else(|| skill.to_string(), |s| s.name.clone()),
        course: lib.skills.get(skill).map(|s| s.course.clone()).unwrap_or_default(),
        mastery: st.mastery,
        band: Band::of(st.mastery, cfg),
        evidence: st.evidence,
        confidence: match st.evidence {
            0..3 => "low",
            3..8 => "medium",
            _ => "high",
        },
        correct: st.correct,
        trend: if trend > 0.05 {
            "rising"
        } else if trend < -0.05 {
            "falling"
        } else {
            "steady"
        },
        trend_delta: trend,
        recent: recent_sentence(st, &name_in_sentence(lib, skill)),
        last_seen: (st.evidence > 0).then(|| rfc3339(st.last_seen)).flatten(),
        hints_used: st.hints_used,
        misconceptions: st.misconceptions.clone(),
        demand_summary: demand_summary(&by_demand),
        by_demand,
    }
}

/// Prerequisites of skills in progress that are below the proficient threshold.
fn gaps(lib: &Library, cfg: &PassportConfig, state: &LearnerState) -> Vec<Gap> {
    let mut gaps: BTreeMap<SkillId, Gap> = BTreeMap::new();
    for (skill, st) in &state.skills {
        if st.evidence == 0 || Band::of(st.mastery, cfg) == Band::Mastered {
            continue;
        }
        for pre in lib.skills.get(skill).map(|s| s.prerequisites.as_slice()).unwrap_or_default() {
            let Some(p) = state.skills.get(pre).filter(|p| p.evidence > 0 && p.mastery < cfg.proficient) else {
                continue;
            };
            gaps.entry(pre.clone())
                .or_insert_with(|| Gap {
                    skill: pre.clone(),
                    name: lib.skills.get(pre).map_or_else(|| pre.to_string(), |s| s.name.clone()),
                    mastery: p.mastery,
                    band: Band::of(p.mastery, cfg),
                    evidence: p.evidence,
                    needed_by: Vec::new(),
                })
                .needed_by
                .push(skill.clone());
        }
    }
    gaps.into_values().collect()
}

/// Builds the passport view.
pub fn passport(lib: &Library, cfg: &PassportConfig, learner: &LearnerId, state: &LearnerState) -> Passport {
    Passport {
        learner: learner.clone(),
        skills: state.skills.iter().map(|(s, st)| skill_view(lib, cfg, s, st)).collect(),
        prerequisite_gaps: gaps(lib, cfg, state),
        format_preference: FormatPreference {
            preferred: state.preferred_format(),
            formats: state
                .formats
                .iter()
                .map(|(f, s)| FormatView { format: *f, score: s.sum / f64::from(s.n.max(1)), signals: s.n })
                .collect(),
        },
    }
}

/// Whether the page may offer to skip its component.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SkipOffer {
    /// An offer for the page to put to the learner, never a forced skip.
    pub offered: bool,
    pub reason: String,
}

/// The material to show this learner.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Variant {
    pub component_id: ComponentId,
    pub title: String,
    pub level: Level,
    pub format: Format,
    pub reason: String,
}

/// A prerequisite worth reviewing first.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Review {
    pub skill: SkillId,
    pub component_id: Option<ComponentId>,
    pub title: Option<String>,
    pub reason: String,
}

/// `GET /v1/learners/{id}/plan?component=…`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Plan {
    pub learner: LearnerId,
    pub component: ComponentId,
    pub skip_offer: SkipOffer,
    pub variant: Variant,
    pub review: Vec<Review>,
}

/// The best component teaching `skill` at `level` in `format` (exercises excluded): the
/// nearest level (a level below costing a little more than one above, and material whose main
/// skill is another a little more than a level), then the format, then the page's own component.
pub fn best_material<'a>(
    lib: &'a Library,
    skill: &SkillId,
    level: Level,
    format: Format,
    own: Option<&ComponentId>,
) -> Option<&'a Component> {
    lib.components
        .values()
        .filter(|c| c.format != Format::Exercise && c.skills.first() == Some(skill))
        .chain(
            lib.components.values().filter(|c| {
                c.format != Format::Exercise && c.skills.first() != Some(skill) && c.skills.contains(skill)
            }),
        )
        .min_by_key(|c| {
            // material that only touches the skill (a course summary) costs more than one level
            // step: a skill's own material a level off beats it, two levels off does not
            let secondary = i32::from(c.skills.first() != Some(skill));
            (
                c.level.distance(level) * 4 + i32::from(c.level < level) + secondary * 6,
                secondary,
                i32::from(c.format != format),
                i32::from(Some(&c.id) != own),
                c.id.clone(),
            )
        })
}

/// Builds the plan for one component page.
pub fn plan(
    lib: &Library,
    cfg: &PassportConfig,
    learner: &LearnerId,
    state: &LearnerState,
    component: &Component,
    priorities: &std::collections::BTreeSet<SkillId>,
) -> Plan {
    let states: Vec<(&SkillId, SkillState)> =
        component.skills.iter().map(|s| (s, state.skill_or_prior(lib, s))).collect();

    // skip offer: every skill mastered, each with enough evidence
    let not_yet: Vec<String> = states
        .iter()
        .filter(|(_, st)| st.mastery < cfg.mastered || st.evidence < cfg.min_evidence)
        .map(|(s, st)| {
            let name = name_in_sentence(lib, s);
            if st.evidence < cfg.min_evidence {
                format!("{} answer(s) on {name} so far, {} needed", st.evidence, cfg.min_evidence)
            } else {
                format!("{name} is at {:.2} ({})", st.mastery, Band::of(st.mastery, cfg).as_str())
            }
        })
        .collect();
    let skip_offer = if not_yet.is_empty() {
        let why: Vec<String> = states.iter().map(|(s, st)| recent_sentence(st, &name_in_sentence(lib, s))).collect();
        SkipOffer { offered: true, reason: format!("You may already know this: {}.", why.join("; ")) }
    } else {
        SkipOffer { offered: false, reason: format!("Not yet: {}.", not_yet.join("; ")) }
    };

    // variant: the level of the weakest skill, in the learner's format when there is one
    let (weak_skill, weak) =
        states.iter().min_by(|a, b| a.1.mastery.total_cmp(&b.1.mastery)).expect("a component has skills");
    let band = Band::of(weak.mastery, cfg);
    let preferred = state.preferred_format();
    let own_format = if component.format == Format::Exercise { Format::Explanation } else { component.format };
    let format = preferred.unwrap_or(own_format);
    let primary = &component.skills[0];
    let chosen = best_material(lib, primary, band.level(), format, Some(&component.id)).unwrap_or(component);
    let weak_name = name_in_sentence(lib, weak_skill);
    let mut reason = if weak.evidence == 0 {
        format!("No answers on {weak_name} yet, so {} level", chosen.level)
    } else {
        format!(
            "{} level, because {weak_name} is {} ({:.2} after {} answers)",
            chosen.level,
            band.as_str(),
            weak.mastery,
            weak.evidence
        )
    };
    match preferred {
        Some(f) if f == chosen.format => {
            reason.push_str(&format!("; {} is the format you do best with", f.as_str().replace('_', " ")))
        }
        Some(f) => reason.push_str(&format!(
            "; no {} at this level, so {}",
            f.as_str().replace('_', " "),
            chosen.format.as_str().replace('_', " ")
        )),
        None => {}
    }
    reason.push('.');
    let variant = Variant {
        component_id: chosen.id.clone(),
        title: chosen.title.clone(),
        level: chosen.level,
        format: chosen.format,
        reason,
    };

    // review: prerequisites with evidence below proficient
    let mut review = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (s, _) in &states {
        for pre in lib.skills.get(*s).map(|k| k.prerequisites.as_slice()).unwrap_or_default() {
            let Some(p) = state.skills.get(pre).filter(|p| p.evidence > 0 && p.mastery < cfg.proficient) else {
                continue;
            };
            if !seen.insert(pre.clone()) {
                continue;
            }
            let material = best_material(lib, pre, Band::of(p.mastery, cfg).level(), format, None);
            let mut reason = format!(
                "{}; {} comes before {}.",
                capitalize(&recent_sentence(p, &name_in_sentence(lib, pre))),
                name_in_sentence(lib, pre),
                name_in_sentence(lib, s)
            );
            if priorities.contains(pre) {
                reason.push_str(" Your educators marked it a priority.");
            }
            review.push(Review {
                skill: pre.clone(),
                component_id: material.map(|c| c.id.clone()),
                title: material.map(|c| c.title.clone()),
                reason,
            });
        }
    }
    // the skills educators marked a priority first, otherwise in the order found
    review.sort_by_key(|r| !priorities.contains(&r.skill));
    Plan { learner: learner.clone(), component: component.id.clone(), skip_offer, variant, review }
}

pub(super) fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}
