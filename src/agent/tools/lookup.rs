//! `lookup_mastery`: what the learner knows about the given skills (by default the page's
//! skills and their prerequisites).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Done, Tool, ToolName, skill_id};
use crate::agent::TurnCtx;
use crate::content::{Format, SkillId};
use crate::passport::{Band, skill_view};

/// Arguments of `lookup_mastery`.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupMasteryArgs {
    /// Skill ids to look up, e.g. ["fractions.divide"]. Leave out for the page's skills and
    /// their prerequisites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
}

/// One skill as the model reads it.
#[derive(Debug, Clone, Serialize)]
pub struct MasteryRow {
    pub skill: SkillId,
    pub name: String,
    /// Rounded to two decimals.
    pub mastery: f64,
    pub band: Band,
    pub evidence: u32,
    pub trend: &'static str,
    pub recent: String,
    /// Diagnoses of the learner's recent known mistakes.
    pub misconceptions: Vec<String>,
    pub demand: Option<String>,
}

/// The result of `lookup_mastery`.
#[derive(Debug, Clone, Serialize)]
pub struct MasteryOutput {
    pub skills: Vec<MasteryRow>,
    pub preferred_format: Option<Format>,
}

/// The `lookup_mastery` tool.
pub struct LookupMastery;

/// The page's skills and their prerequisites.
pub fn page_skills_with_prerequisites(ctx: &TurnCtx) -> Vec<SkillId> {
    let mut out: Vec<SkillId> = Vec::new();
    for s in &ctx.skills {
        for k in std::iter::once(s).chain(ctx.lib.skills.get(s).map(|k| k.prerequisites.as_slice()).unwrap_or_default())
        {
            if !out.contains(k) {
                out.push(k.clone());
            }
        }
    }
    out
}

impl Tool for LookupMastery {
    const NAME: ToolName = ToolName::LookupMastery;
    type Args = LookupMasteryArgs;
    type Output = MasteryOutput;

    async fn call(&self, ctx: &TurnCtx, a: LookupMasteryArgs) -> Result<Done<MasteryOutput>, String> {
        let skills: Vec<SkillId> = if a.skills.is_empty() {
            let page = page_skills_with_prerequisites(ctx);
            if page.is_empty() {
                // no page: what the learner has worked on
                ctx.state.skills.iter().filter(|(_, s)| s.evidence > 0).map(|(k, _)| k.clone()).take(12).collect()
            } else {
                page
            }
        } else {
            a.skills.iter().map(|s| skill_id(ctx, s)).collect::<Result<_, _>>()?
        };
        // a service token's turn shows nothing of the learner's other courses
        let skills: Vec<SkillId> = skills.into_iter().filter(|s| ctx.may_show(s)).collect();
        let rows = skills
            .iter()
            .map(|s| {
                let v = skill_view(&ctx.lib, &ctx.config.passport, s, &ctx.state.skill_or_prior(&ctx.lib, s));
                MasteryRow {
                    skill: s.clone(),
                    name: v.name,
                    mastery: (v.mastery * 100.0).round() / 100.0,
                    band: v.band,
                    evidence: v.evidence,
                    trend: v.trend,
                    recent: v.recent,
                    misconceptions: v.misconceptions.iter().map(|m| m.diagnosis.clone()).collect(),
                    demand: v.demand_summary,
                }
            })
            .collect();
        let summary = skills
            .iter()
            .map(|s| match ctx.state.skills.get(s) {
                Some(st) => format!("{s} {:.2}", st.mastery),
                None => format!("{s} new"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let output = MasteryOutput { skills: rows, preferred_format: ctx.state.preferred_format() };
        Ok(Done { output, summary, citations: vec![] })
    }
}
