//! The agent's tools: `lookup_mastery`, `retrieve_components`, `render_format`,
//! `flag_struggle`. Each has a JSON schema (from `schemars`) and a description from
//! `prompts/tools/`. Arguments are validated; a bad call becomes an error result the model can
//! read and correct. No result ever holds an answer key: they come from component bodies and
//! the index, where keys never are.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::TurnCtx;
use super::context::trim_to_tokens;
use super::prompts::Prompts;
use crate::content::{Component, ComponentId, Format, Level, SkillId};
use crate::flags::{Evidence, Raise, Severity};
use crate::passport::{best_material, name_in_sentence, now_ms, skill_view};
use crate::retrieval::{SearchFilter, SearchRequest};

/// Arguments of `lookup_mastery`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupMasteryArgs {
    /// Skill ids to look up, e.g. ["fractions.divide"]. Leave out for the page's skills and
    /// their prerequisites.
    #[serde(default)]
    pub skills: Vec<String>,
}

/// Arguments of `retrieve_components`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrieveArgs {
    /// What to look for, in words.
    pub query: String,
    /// Only components teaching one of these skill ids.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Only this level: intro, developing, proficient or advanced.
    #[serde(default)]
    pub level: Option<String>,
    /// Only this format: explanation, worked_example, scenario, exercise, summary, reference.
    #[serde(default)]
    pub format: Option<String>,
    /// Only this course id (default: the page's course).
    #[serde(default)]
    pub course: Option<String>,
    /// How many components, 1 to 8 (default 4).
    #[serde(default)]
    pub k: Option<u32>,
}

/// Arguments of `render_format`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderArgs {
    /// The component to render (or give `skill`).
    #[serde(default)]
    pub component_id: Option<String>,
    /// The skill to render (or give `component_id`).
    #[serde(default)]
    pub skill: Option<String>,
    /// intro, developing, proficient or advanced.
    pub level: String,
    /// explanation, worked_example, scenario, summary or exercise.
    pub format: String,
}

/// Arguments of `flag_struggle`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagArgs {
    /// The skill id the learner struggles with.
    pub skill: String,
    /// A short factual reason an educator can act on.
    pub reason: String,
}

/// The tool names, in the order they are offered.
pub const TOOL_NAMES: [&str; 4] = ["lookup_mastery", "retrieve_components", "render_format", "flag_struggle"];

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: &'static str,
    pub description: String,
    pub parameters: Value,
}

fn schema<T: JsonSchema>() -> Value {
    let mut v = serde_json::to_value(schemars::schema_for!(T)).expect("schema serializes");
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    v
}

/// The four tools with their schemas and descriptions.
pub fn definitions(prompts: &Prompts) -> Vec<ToolDef> {
    TOOL_NAMES
        .iter()
        .map(|name| ToolDef {
            name,
            description: prompts.get(&format!("tools/{name}")).text.clone(),
            parameters: match *name {
                "lookup_mastery" => schema::<LookupMasteryArgs>(),
                "retrieve_components" => schema::<RetrieveArgs>(),
                "render_format" => schema::<RenderArgs>(),
                _ => schema::<FlagArgs>(),
            },
        })
        .collect()
}

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub name: String,
    pub ok: bool,
    /// The result as the model reads it (JSON).
    pub content: Value,
    /// One line for the trace.
    pub summary: String,
    /// Components the result drew on.
    pub citations: Vec<ComponentId>,
}

impl ToolOutcome {
    fn error(name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            name: name.into(),
            ok: false,
            summary: format!("error: {message}"),
            content: json!({"error": message}),
            citations: vec![],
        }
    }
}

fn args<T: DeserializeOwned>(raw: &str) -> Result<T, String> {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    serde_json::from_str(raw).map_err(|e| format!("invalid arguments: {e}; check the tool's schema and call it again"))
}

fn skill_id(ctx: &TurnCtx, raw: &str) -> Result<SkillId, String> {
    SkillId::parse(raw)
        .ok()
        .filter(|s| ctx.lib.skills.contains_key(s))
        .ok_or_else(|| format!("unknown skill '{raw}'; the page's skills are: {}", ctx.skill_list()))
}

fn parse_level(raw: &str) -> Result<Level, String> {
    raw.parse::<Level>().map_err(|e| e.to_string())
}

fn parse_format(raw: &str) -> Result<Format, String> {
    raw.parse::<Format>().map_err(|e| e.to_string())
}

/// Runs one tool call (a `tracing` span per call, with its outcome).
#[tracing::instrument(skip(ctx, raw_args), fields(ok))]
pub async fn call(ctx: &TurnCtx, name: &str, raw_args: &str) -> ToolOutcome {
    let result = match name {
        "lookup_mastery" => match args::<LookupMasteryArgs>(raw_args) {
            Ok(a) => lookup_mastery(ctx, a),
            Err(e) => Err(e),
        },
        "retrieve_components" => match args::<RetrieveArgs>(raw_args) {
            Ok(a) => retrieve(ctx, a).await,
            Err(e) => Err(e),
        },
        "render_format" => match args::<RenderArgs>(raw_args) {
            Ok(a) => render(ctx, a).await,
            Err(e) => Err(e),
        },
        "flag_struggle" => match args::<FlagArgs>(raw_args) {
            Ok(a) => flag(ctx, a).await,
            Err(e) => Err(e),
        },
        other => Err(format!("unknown tool '{other}'; the tools are {}", TOOL_NAMES.join(", "))),
    };
    let outcome = match result {
        Ok(mut o) => {
            o.name = name.to_owned();
            o
        }
        Err(e) => ToolOutcome::error(name, e),
    };
    tracing::Span::current().record("ok", outcome.ok);
    tracing::debug!(summary = %outcome.summary, "tool call");
    outcome
}

fn ok(content: Value, summary: String, citations: Vec<ComponentId>) -> Result<ToolOutcome, String> {
    Ok(ToolOutcome { name: String::new(), ok: true, content, summary, citations })
}

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

fn lookup_mastery(ctx: &TurnCtx, a: LookupMasteryArgs) -> Result<ToolOutcome, String> {
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
    let cfg = &ctx.config.passport;
    let rows: Vec<Value> = skills
        .iter()
        .map(|s| {
            let prior = ctx.lib.skills.get(s).and_then(|k| k.bkt).unwrap_or_default().prior;
            let st = ctx.state.skills.get(s).cloned().unwrap_or_else(|| crate::passport::SkillState::new(prior));
            let v = skill_view(&ctx.lib, cfg, s, &st);
            json!({
                "skill": s, "name": v.name, "mastery": (v.mastery * 100.0).round() / 100.0, "band": v.band,
                "evidence": v.evidence, "trend": v.trend, "recent": v.recent,
                "misconceptions": v.misconceptions.iter().map(|m| m.diagnosis.clone()).collect::<Vec<_>>(),
                "demand": v.demand_summary,
            })
        })
        .collect();
    let preferred = ctx.state.preferred_format();
    let summary = skills
        .iter()
        .map(|s| {
            let m = ctx.state.skills.get(s).map(|x| x.mastery);
            match m {
                Some(m) => format!("{s} {m:.2}"),
                None => format!("{s} new"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    ok(json!({"skills": rows, "preferred_format": preferred}), summary, vec![])
}

async fn retrieve(ctx: &TurnCtx, a: RetrieveArgs) -> Result<ToolOutcome, String> {
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
    let rows: Vec<Value> = hits
        .iter()
        .map(|h| {
            json!({"component_id": h.component_id, "title": h.title, "skills": h.skills, "level": h.level,
                   "format": h.format, "score": (h.score * 1000.0).round() / 1000.0, "text": trim_to_tokens(&h.text, per_hit)})
        })
        .collect();
    let citations = hits.iter().filter_map(|h| ComponentId::parse(&h.component_id).ok()).collect();
    let summary = if hits.is_empty() {
        "no matching component".into()
    } else {
        hits.iter().map(|h| h.component_id.as_str()).collect::<Vec<_>>().join(", ")
    };
    ok(json!({"components": rows}), summary, citations)
}

/// The exercise on `skill` nearest `level` (its prompts only; keys are never part of it).
fn nearest_exercise<'a>(ctx: &'a TurnCtx, skill: &SkillId, level: Level) -> Option<&'a Component> {
    ctx.lib.components.values().filter(|c| c.format == Format::Exercise && c.skills.contains(skill)).min_by_key(|c| {
        (
            (Level::ALL.iter().position(|l| *l == c.level).unwrap_or(0) as i32
                - Level::ALL.iter().position(|l| *l == level).unwrap_or(0) as i32)
                .abs(),
            c.id.clone(),
        )
    })
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

async fn render(ctx: &TurnCtx, a: RenderArgs) -> Result<ToolOutcome, String> {
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
    let text = trim_to_tokens(&chosen.retrievable_text(), ctx.config.agent.tool_result_tokens);
    if exact || ctx.llm.is_none() || format == Format::Exercise {
        let source = if exact { "authored" } else { "nearest_authored" };
        let note = (!exact).then(|| {
            format!(
                "the course has no {} at {} level on this; this is its nearest material",
                format.as_str().replace('_', " "),
                level
            )
        });
        return ok(
            json!({"source": source, "component_id": chosen.id, "title": chosen.title, "level": chosen.level,
                   "format": chosen.format, "note": note, "text": text}),
            format!("{source}: {} ({}, {})", chosen.id, chosen.level, chosen.format.as_str()),
            vec![chosen.id.clone()],
        );
    }
    // generated from the course's own material, cached per prompt version and model
    let llm = ctx.llm.as_ref().expect("checked above");
    let prompt = ctx.prompts.get(&format!("render/{}", format.as_str()));
    let key = format!(
        "{}|{}|{}|{}|{}",
        own.as_ref().map_or(skill.to_string(), |c| c.to_string()),
        level,
        format.as_str(),
        prompt.version,
        llm.model()
    );
    let cached = ctx.store.render(&key).await.ok().flatten();
    let generated = match cached {
        Some(t) => t,
        None => {
            let skill_info =
                ctx.lib.skills.get(&skill).map(|k| format!("{}: {}", k.name, k.description)).unwrap_or_default();
            let user = format!("Skill: {skill_info}\n\nCourse source [{}] \"{}\":\n{text}", chosen.id, chosen.title);
            let t = llm
                .complete(
                    &prompt.text.replace("{level}", level.as_str()),
                    &user,
                    ctx.config.agent.max_completion_tokens,
                )
                .await
                .map_err(|e| format!("generating failed ({e}); use the course's material: [{}]", chosen.id))?;
            let t = super::guard::redact(&t, &ctx.keys);
            let _ = ctx.store.put_render(&key, &t).await;
            t
        }
    };
    ok(
        json!({"source": "generated", "based_on": [chosen.id], "level": level, "format": format, "text": generated}),
        format!("generated {} at {} from {}", format.as_str(), level, chosen.id),
        vec![chosen.id.clone()],
    )
}

async fn flag(ctx: &TurnCtx, a: FlagArgs) -> Result<ToolOutcome, String> {
    let skill = skill_id(ctx, &a.skill)?;
    let reason = a.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err("reason must be 1 to 500 characters".into());
    }
    let raise = Raise {
        learner: ctx.learner.to_string(),
        course: ctx.lib.skills.get(&skill).map(|k| k.course.clone()).unwrap_or_default(),
        component: ctx.page.as_ref().map(|p| p.id.clone()),
        severity: Severity::Medium,
        evidence: Evidence {
            rule: "model".into(),
            detail: reason.to_owned(),
            mastery: ctx.state.skills.get(&skill).map(|s| s.mastery),
            excerpt: None,
            at: now_ms(),
        },
        skill: skill.clone(),
    };
    let (f, opened) = ctx.flags.raise(&raise).await.map_err(|e| format!("the flag could not be stored ({e})"))?;
    let summary = format!(
        "{} flag {} on {}",
        if opened { "opened" } else { "added to" },
        f.id,
        name_in_sentence(&ctx.lib, &skill)
    );
    ctx.raised.lock().expect("raised lock").push((f.clone(), opened));
    // no flag id for the model: it has no use for it, and it would make replays differ per run
    ok(json!({"opened": opened, "evidence_items": f.evidence.len()}), summary, vec![])
}
