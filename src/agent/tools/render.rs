//! `render_format`: material on a skill or component in a given format at a given level — the
//! course's authored variant when one fits, else one generated from the course's nearest
//! material (cached), else that nearest material itself.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Done, Tool, ToolName, parse_format, parse_level, skill_id};
use crate::agent::TurnCtx;
use crate::content::trim_course_text;
use crate::content::{Component, ComponentId, Format, Level, SkillId};
use crate::passport::best_material;

/// Arguments of `render_format`.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderArgs {
    /// The component to render (or give `skill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_id: Option<String>,
    /// The skill to render (or give `component_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    /// intro, developing, proficient or advanced.
    pub level: String,
    /// explanation, worked_example, scenario, summary or exercise.
    pub format: String,
    /// Only the course's own material, never generated (the service's own calls; a model
    /// cannot set it).
    #[serde(skip)]
    #[schemars(skip)]
    pub authored_only: bool,
}

/// The course's own material, as `render_format` returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Material {
    pub component_id: ComponentId,
    pub title: String,
    pub level: Level,
    pub format: Format,
    /// Says why this is not exactly what was asked for.
    pub note: Option<String>,
    pub text: String,
}

/// The result of `render_format`, by where the text came from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum RenderOutput {
    /// The course's own material at exactly the level and format asked for.
    Authored(Material),
    /// The course's nearest material, when nothing fits exactly and nothing is generated.
    NearestAuthored(Material),
    /// Written by the model from the course's nearest material.
    Generated { based_on: Vec<ComponentId>, level: Level, format: Format, text: String },
}

/// The `render_format` tool.
pub struct RenderFormat;

/// The exercise on `skill` nearest `level` (its prompts only; keys are never part of it).
fn nearest_exercise<'a>(ctx: &'a TurnCtx, skill: &SkillId, level: Level) -> Option<&'a Component> {
    ctx.lib
        .components
        .values()
        .filter(|c| c.format == Format::Exercise && c.skills.contains(skill))
        .min_by_key(|c| (c.level.distance(level), c.id.clone()))
}

/// The authored material closest to (skill, level, format), and whether it matches exactly.
pub fn authored<'a>(
    ctx: &'a TurnCtx,
    skill: &SkillId,
    level: Level,
    format: Format,
    own: Option<&ComponentId>,
) -> Option<(&'a Component, bool)> {
    let c = if format == Format::Exercise {
        nearest_exercise(ctx, skill, level)
    } else {
        best_material(&ctx.lib, skill, level, format, own)
    }?;
    Some((c, c.level == level && c.format == format))
}

impl Tool for RenderFormat {
    const NAME: ToolName = ToolName::RenderFormat;
    type Args = RenderArgs;
    type Output = RenderOutput;

    async fn call(&self, ctx: &TurnCtx, a: RenderArgs) -> Result<Done<RenderOutput>, String> {
        let level = parse_level(&a.level)?;
        let format = parse_format(&a.format)?;
        let (skill, own) = match (&a.component_id, &a.skill) {
            (Some(c), _) => {
                let id = ComponentId::parse(c).map_err(|e| e.0)?;
                let comp = ctx.lib.components.get(&id).ok_or_else(|| format!("unknown component '{c}'"))?;
                (comp.skills[0].clone(), Some(id))
            }
            (None, Some(s)) => (skill_id(ctx, s)?, None),
            (None, None) => return Err("give component_id or skill".into()),
        };
        let Some((chosen, exact)) = authored(ctx, &skill, level, format, own.as_ref()) else {
            return Err(format!("the course has no material on {skill}"));
        };
        let text = trim_course_text(&chosen.retrievable_text(), ctx.config.agent.tool_result_tokens).0;
        if exact || a.authored_only || ctx.llm.is_none() || format == Format::Exercise {
            return Ok(as_authored(chosen, exact, level, format, text));
        }
        let generated = generate(ctx, &skill, own.as_ref(), chosen, level, format, &text).await?;
        Ok(Done {
            summary: format!("generated {} at {} from {}", format.as_str(), level, chosen.id),
            output: RenderOutput::Generated { based_on: vec![chosen.id.clone()], level, format, text: generated },
            citations: vec![chosen.id.clone()],
        })
    }
}

fn as_authored(chosen: &Component, exact: bool, level: Level, format: Format, text: String) -> Done<RenderOutput> {
    let note = (!exact).then(|| {
        format!(
            "the course has no {} at {} level on this; this is its nearest material",
            format.as_str().replace('_', " "),
            level
        )
    });
    let m = Material {
        component_id: chosen.id.clone(),
        title: chosen.title.clone(),
        level: chosen.level,
        format: chosen.format,
        note,
        text,
    };
    let (source, output) = if exact {
        ("authored", RenderOutput::Authored(m))
    } else {
        ("nearest_authored", RenderOutput::NearestAuthored(m))
    };
    Done {
        summary: format!("{source}: {} ({}, {})", chosen.id, chosen.level, chosen.format.as_str()),
        output,
        citations: vec![chosen.id.clone()],
    }
}

/// Text generated from the course's own material, cached per (component or skill, level,
/// format, prompt version, model).
async fn generate(
    ctx: &TurnCtx,
    skill: &SkillId,
    own: Option<&ComponentId>,
    chosen: &Component,
    level: Level,
    format: Format,
    text: &str,
) -> Result<String, String> {
    let llm = ctx.llm.as_ref().ok_or("no model to generate with")?;
    let prompt = ctx.prompts.get(&format!("render/{}", format.as_str()));
    let key = format!(
        "{}|{}|{}|{}|{}",
        own.map_or(skill.to_string(), |c| c.to_string()),
        level,
        format.as_str(),
        prompt.version,
        llm.model()
    );
    if let Some(t) = ctx.sessions.render(&key).await.ok().flatten() {
        return Ok(t);
    }
    let skill_info = ctx.lib.skills.get(skill).map(|k| format!("{}: {}", k.name, k.description)).unwrap_or_default();
    let user = format!("Skill: {skill_info}\n\nCourse source [{}] \"{}\":\n{text}", chosen.id, chosen.title);
    let t = llm
        .complete_counted(
            &prompt.text.replace("{level}", level.as_str()),
            &user,
            ctx.config.agent.max_completion_tokens,
            &ctx.side_calls,
        )
        .await
        .map_err(|e| format!("generating failed ({e}); use the course's material: [{}]", chosen.id))?;
    let t = crate::agent::guard::redact(&t, &ctx.keys);
    let _ = ctx.sessions.put_render(&key, &t).await;
    Ok(t)
}
