//! `retrieve_components`: search the course, with filters.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Done, Tool, ToolName, parse_format, parse_level, skill_id};
use crate::agent::TurnCtx;
use crate::content::trim_course_text;
use crate::content::{ComponentId, Format, Level, SkillId};
use crate::retrieval::{SearchFilter, SearchRequest};

/// Arguments of `retrieve_components`.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrieveArgs {
    /// What to look for, in words.
    pub query: String,
    /// Only components teaching one of these skill ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// Only this level: intro, developing, proficient or advanced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Only this format: explanation, worked_example, scenario, exercise, summary, reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Only this course id (default: the page's course).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub course: Option<String>,
    /// How many components, 1 to 8 (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u32>,
}

/// One component found, as the model reads it.
#[derive(Debug, Clone, Serialize)]
pub struct Retrieved {
    pub component_id: ComponentId,
    pub title: String,
    pub skills: Vec<SkillId>,
    pub level: Level,
    pub format: Format,
    /// Rounded to three decimals.
    pub score: f32,
    /// The matching text, trimmed to the tool budget.
    pub text: String,
}

/// The result of `retrieve_components`, best first.
#[derive(Debug, Clone, Serialize)]
pub struct RetrieveOutput {
    pub components: Vec<Retrieved>,
}

/// The `retrieve_components` tool.
pub struct Retrieve;

impl Tool for Retrieve {
    const NAME: ToolName = ToolName::RetrieveComponents;
    type Args = RetrieveArgs;
    type Output = RetrieveOutput;

    async fn call(&self, ctx: &TurnCtx, a: RetrieveArgs) -> Result<Done<RetrieveOutput>, String> {
        if a.query.trim().is_empty() {
            return Err("query must not be empty".into());
        }
        let k = a.k.unwrap_or(4);
        if !(1..=8).contains(&k) {
            return Err(format!("k = {k} is out of range 1..=8"));
        }
        let filter = SearchFilter {
            course: a.course.clone().or_else(|| ctx.page.as_ref().map(|p| p.course.clone())),
            skills: a.skills.iter().map(|s| skill_id(ctx, s)).collect::<Result<_, _>>()?,
            levels: a.level.as_deref().map(parse_level).transpose()?.into_iter().collect(),
            formats: a.format.as_deref().map(parse_format).transpose()?.into_iter().collect(),
        };
        let hits = ctx
            .retriever
            .search(&SearchRequest { text: a.query.chars().take(1000).collect(), filter, k: k as usize })
            .await
            .map_err(|e| format!("search is unavailable right now ({e})"))?;
        let per_hit = (ctx.config.agent.tool_result_tokens / hits.len().max(1)).max(60);
        let citations: Vec<ComponentId> = hits.iter().map(|h| h.component_id.clone()).collect();
        let summary = if hits.is_empty() {
            "no matching component".into()
        } else {
            citations.iter().map(ComponentId::as_str).collect::<Vec<_>>().join(", ")
        };
        let components = hits
            .into_iter()
            .map(|h| Retrieved {
                text: trim_course_text(&h.text, per_hit).0,
                component_id: h.component_id,
                title: h.title,
                skills: h.skills,
                level: h.level,
                format: h.format,
                score: (h.score * 1000.0).round() / 1000.0,
            })
            .collect();
        Ok(Done { output: RetrieveOutput { components }, summary, citations })
    }
}
