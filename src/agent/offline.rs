//! The offline engine: a deterministic, template-based policy over the same tools as the LLM
//! engine. It looks up mastery, retrieves, picks the course's own material at the learner's
//! level and preferred format, and assembles a cited answer from it. It declines what the
//! course does not cover, and never gives an exercise's answer. Its sentences are the sections
//! of `prompts/offline.md`.

use super::engine::{Engine, EngineFailure, EngineKind, Outcome};
use super::policy::{is_follow_up, is_on_topic, seeks_answer};
use super::prompts::fill;
use super::tools::{LookupMastery, LookupMasteryArgs, RenderArgs, RenderFormat, Retrieve, RetrieveArgs, authored};
use super::{Conversation, Emitter, TurnCtx, guard};
use crate::content::{Component, ComponentId, Format, Level, SkillId};
use crate::passport::{Band, best_material, name_in_sentence};

/// The offline engine.
pub struct OfflineEngine;

#[async_trait::async_trait]
impl Engine for OfflineEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Offline
    }

    async fn answer(&self, ctx: &TurnCtx, convo: &Conversation, emit: &mut Emitter) -> Result<Outcome, EngineFailure> {
        Ok(answer(ctx, &convo.message, emit).await)
    }
}

/// A search hit as the offline engine weighs it: the component and its skills.
type Found = (ComponentId, Vec<SkillId>);

fn excerpt(body: &str, max_words: usize) -> String {
    let mut out = Vec::new();
    let mut words = 0;
    for para in body.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let n = para.split_whitespace().count();
        if words > 0 && words + n > max_words {
            break;
        }
        if words == 0 && n > max_words {
            let cut: Vec<&str> = para.split_whitespace().take(max_words).collect();
            out.push(format!("{} …", cut.join(" ")));
            break;
        }
        out.push(para.to_owned());
        words += n;
    }
    // a heading with nothing after it says nothing
    while out.last().is_some_and(|p| p.starts_with('#')) {
        out.pop();
    }
    out.join("\n\n")
}

fn words_for(band: Band) -> usize {
    match band {
        Band::Intro => 130,
        Band::Developing => 170,
        Band::Proficient | Band::Mastered => 220,
    }
}

fn default_format(band: Band) -> Format {
    match band {
        Band::Intro => Format::Explanation,
        Band::Developing => Format::WorkedExample,
        Band::Proficient => Format::Explanation,
        Band::Mastered => Format::Explanation,
    }
}

/// A template of `prompts/offline.md`, filled.
fn t(ctx: &TurnCtx, name: &str, values: &[(&str, &str)]) -> String {
    fill(ctx.prompts.section("offline", name), values)
}

/// An answer that cites nothing: a template and the footer.
async fn say(ctx: &TurnCtx, emit: &mut Emitter, text: String) -> Outcome {
    emit.delta(&format!("{text}\n\n{}", t(ctx, "footer", &[]))).await;
    Outcome { declined: true, ..Outcome::default() }
}

/// Answers `message` for the learner in `ctx`, streaming the text through `emit`.
pub async fn answer(ctx: &TurnCtx, message: &str, emit: &mut Emitter) -> Outcome {
    ctx.tools.call::<LookupMastery>(ctx, emit, LookupMasteryArgs::default()).await;

    // an exercise's answer is never given: a hint and the method instead
    if seeks_answer(message) {
        return refuse_answer(ctx, message, emit).await;
    }
    let args = RetrieveArgs { query: message.to_owned(), k: Some(4), ..RetrieveArgs::default() };
    let hits: Vec<Found> = ctx
        .tools
        .call::<Retrieve>(ctx, emit, args)
        .await
        .map(|d| d.output.components.into_iter().map(|h| (h.component_id, h.skills)).collect())
        .unwrap_or_default();
    // "I don't get it" or "another example?" on a page is about the page
    let follow_up = ctx.page.is_some() && is_follow_up(message);
    if !follow_up && !is_on_topic(ctx, message, hits.iter().map(|(id, _)| id)) {
        return decline(ctx, emit).await;
    }
    let Some(skill) = choose_skill(ctx, &hits, follow_up) else {
        return say(ctx, emit, t(ctx, "not_found", &[])).await;
    };
    let band = Band::of(ctx.state.mastery(&ctx.lib, &skill), &ctx.config.passport);
    let format = choose_format(ctx, band, follow_up);
    let Some(variant) = material(ctx, emit, &skill, band.level(), format).await else {
        return say(ctx, emit, t(ctx, "not_found", &[])).await;
    };
    compose(ctx, emit, &skill, band, variant, &hits).await
}

/// Says the course does not cover the question, and what it does cover.
async fn decline(ctx: &TurnCtx, emit: &mut Emitter) -> Outcome {
    let scope = ctx.page.as_ref().map(|p| p.course.clone());
    let course_names: Vec<String> = ctx
        .lib
        .courses
        .values()
        .filter(|c| scope.as_ref().is_none_or(|s| s == &c.id))
        .map(|c| format!("{} ({})", c.title, c.id))
        .collect();
    let skills: Vec<String> = ctx
        .lib
        .skills
        .values()
        .filter(|s| scope.as_ref().is_none_or(|c| c == &s.course))
        .take(4)
        .map(|s| s.name.to_lowercase())
        .collect();
    say(ctx, emit, t(ctx, "decline", &[("courses", &course_names.join(" and ")), ("skills", &skills.join(", "))])).await
}

/// The skill to answer on: on a page, the page's skill that the best matching hit teaches (the
/// learner asks about the page), else the best hit's own; a follow-up whose hits miss the page
/// is about the page's first skill.
fn choose_skill(ctx: &TurnCtx, hits: &[Found], follow_up: bool) -> Option<SkillId> {
    let on_page = hits.iter().find(|(_, sk)| sk.iter().any(|s| ctx.skills.contains(s)));
    match on_page.or(hits.first()) {
        Some((top, top_skills)) if !follow_up || top_skills.iter().any(|s| ctx.skills.contains(s)) => Some(
            top_skills
                .iter()
                .find(|s| ctx.skills.contains(s))
                .or(top_skills.first())
                .cloned()
                .or_else(|| ctx.lib.components.get(top).map(|c| c.skills[0].clone()))
                .unwrap_or_else(|| ctx.skills.first().cloned().unwrap_or_else(|| top_skills[0].clone())),
        ),
        _ => ctx.skills.first().cloned(),
    }
}

/// The format to show: the learner's preferred one, else the band's default; for a follow-up,
/// another way in than the page itself.
fn choose_format(ctx: &TurnCtx, band: Band, follow_up: bool) -> Format {
    if follow_up {
        let own = ctx.page.as_ref().map(|p| p.format);
        return [Format::WorkedExample, Format::Scenario, Format::Explanation]
            .into_iter()
            .find(|f| Some(*f) != own)
            .unwrap_or(Format::WorkedExample);
    }
    ctx.state.preferred_format().filter(|f| *f != Format::Exercise).unwrap_or(default_format(band))
}

/// The course's material on `skill` at `level` in `format` (through `render_format`); on an
/// exercise page, never material that works out one of its items (that would give the answer
/// away): then the nearest material on the skill that does not.
async fn material<'a>(
    ctx: &'a TurnCtx,
    emit: &mut Emitter,
    skill: &SkillId,
    level: Level,
    format: Format,
) -> Option<&'a Component> {
    let args = RenderArgs {
        skill: Some(skill.to_string()),
        level: level.to_string(),
        format: format.to_string(),
        ..Default::default()
    };
    let rendered = ctx.tools.call::<RenderFormat>(ctx, emit, args).await?;
    let variant = rendered.citations.first().and_then(|id| ctx.lib.components.get(id))?;
    let page_keys = guard::page_exercise_keys(&ctx.lib, ctx.page.as_ref());
    let gives_away = |c: &Component| guard::redact(&c.body, &page_keys) != c.body;
    if !gives_away(variant) {
        return Some(variant);
    }
    let alternative = ctx
        .lib
        .components
        .values()
        .filter(|c| c.format != Format::Exercise && c.skills.contains(skill) && !gives_away(c))
        .min_by_key(|c| (c.level.distance(level), c.skills.first() != Some(skill), c.format != format, c.id.clone()));
    let Some(alt) = alternative else {
        return Some(variant);
    };
    let args = RenderArgs {
        component_id: Some(alt.id.to_string()),
        level: alt.level.to_string(),
        format: alt.format.to_string(),
        ..Default::default()
    };
    let again = ctx.tools.call::<RenderFormat>(ctx, emit, args).await;
    Some(again.and_then(|d| d.citations.first().and_then(|id| ctx.lib.components.get(id))).unwrap_or(variant))
}

/// The answer: an opening for the level, a known misconception, the excerpt, the sources, one
/// next step, the footer.
async fn compose(
    ctx: &TurnCtx,
    emit: &mut Emitter,
    skill: &SkillId,
    band: Band,
    variant: &Component,
    hits: &[Found],
) -> Outcome {
    let name = name_in_sentence(&ctx.lib, skill);
    let mut parts = Vec::new();
    let opening = if band >= Band::Proficient { "opening_expert" } else { "opening_novice" };
    let format_name = variant.format.as_str().replace('_', " ");
    parts.push(t(ctx, opening, &[("skill", &name), ("level", variant.level.as_str()), ("format", &format_name)]));
    if let Some(m) = ctx.state.skills.get(skill).and_then(|s| s.misconceptions.last()) {
        parts.push(t(ctx, "misconception", &[("diagnosis", &m.diagnosis)]));
    }
    parts.push(excerpt(&variant.body, words_for(band)));
    let mut citations = vec![variant.id.clone()];
    let mut source = t(ctx, "sources", &[("id", variant.id.as_str()), ("title", &variant.title)]);
    if let Some((other, _)) = hits
        .iter()
        .find(|(id, _)| *id != variant.id && ctx.lib.components.get(id).is_some_and(|c| c.format != Format::Exercise))
    {
        let title = ctx.lib.components.get(other).map_or("", |c| c.title.as_str());
        source.push(' ');
        source.push_str(&t(ctx, "see_also", &[("id", other.as_str()), ("title", title)]));
        citations.push(other.clone());
    }
    parts.push(source);
    if let Some((next, cited)) = next_step(ctx, skill, band.level(), &name) {
        parts.push(next);
        citations.push(cited);
    }
    parts.push(t(ctx, "footer", &[]));
    for (i, p) in parts.iter().enumerate() {
        emit.delta(&if i == 0 { p.clone() } else { format!("\n\n{p}") }).await;
    }
    Outcome { citations, ..Outcome::default() }
}

/// One next step: a weak prerequisite to review first, else practice on the skill.
fn next_step(ctx: &TurnCtx, skill: &SkillId, level: Level, name: &str) -> Option<(String, ComponentId)> {
    let cfg = &ctx.config.passport;
    let gap = ctx.lib.skills.get(skill).and_then(|k| {
        k.prerequisites
            .iter()
            .find(|p| ctx.state.skills.get(*p).is_some_and(|s| s.evidence > 0 && s.mastery < cfg.proficient))
    });
    match gap {
        Some(p) => best_material(&ctx.lib, p, level_for(ctx, p), Format::Explanation, None).map(|c| {
            let prerequisite = name_in_sentence(&ctx.lib, p);
            let text = t(
                ctx,
                "next_review",
                &[("prerequisite", &prerequisite), ("skill", name), ("id", c.id.as_str()), ("title", &c.title)],
            );
            (text, c.id.clone())
        }),
        None => authored(ctx, skill, level, Format::Exercise, None)
            .map(|(c, _)| (t(ctx, "next_practice", &[("id", c.id.as_str()), ("title", &c.title)]), c.id.clone())),
    }
}

/// The level of material for a skill, from the learner's band on it (its prior when there is
/// no evidence yet).
fn level_for(ctx: &TurnCtx, skill: &SkillId) -> Level {
    Band::of(ctx.state.mastery(&ctx.lib, skill), &ctx.config.passport).level()
}

async fn refuse_answer(ctx: &TurnCtx, message: &str, emit: &mut Emitter) -> Outcome {
    // the exercise in question: the page's, else the nearest exercise on the page's skill
    let exercise = ctx.page.as_ref().filter(|p| p.format == Format::Exercise).map(|p| p.id.clone()).or_else(|| {
        ctx.skills
            .first()
            .and_then(|s| authored(ctx, s, level_for(ctx, s), Format::Exercise, None))
            .map(|(c, _)| c.id.clone())
    });
    let mut text = t(ctx, "refuse", &[]);
    let mut citations = Vec::new();
    if let Some(ex) = exercise.as_ref().and_then(|id| ctx.lib.components.get(id)) {
        if let Some(hint) = hint_for(ctx, ex, message) {
            text.push_str("\n\n");
            text.push_str(&hint);
            citations.push(ex.id.clone());
        }
        let skill = &ex.skills[0];
        let args = RenderArgs {
            skill: Some(skill.to_string()),
            level: level_for(ctx, skill).to_string(),
            format: Format::WorkedExample.to_string(),
            ..Default::default()
        };
        let shown = ctx.tools.call::<RenderFormat>(ctx, emit, args).await;
        if let Some(we) = shown.and_then(|d| d.citations.first().and_then(|id| ctx.lib.components.get(id))) {
            text.push_str("\n\n");
            text.push_str(&t(ctx, "refuse_method", &[("id", we.id.as_str()), ("title", &we.title)]));
            citations.push(we.id.clone());
        }
    }
    text.push_str(&format!("\n\n{}\n\n{}", t(ctx, "refuse_close", &[]), t(ctx, "footer", &[])));
    emit.delta(&text).await;
    Outcome { citations, ..Outcome::default() }
}

/// The first hint of the item the message names ("q2", "question 2"), else of the first item.
fn hint_for(ctx: &TurnCtx, ex: &Component, message: &str) -> Option<String> {
    let lower = message.to_lowercase();
    let (n, item) = ex
        .items
        .iter()
        .enumerate()
        .find(|(n, i)| lower.contains(&i.id) || lower.contains(&format!("question {}", n + 1)))
        .or_else(|| ex.items.first().map(|i| (0, i)))?;
    let hint = ctx.lib.answer_key(&ex.id, &item.id).and_then(|k| k.hints.first())?;
    let hint = guard::redact(hint, &ctx.keys);
    Some(t(ctx, "refuse_hint", &[("n", &(n + 1).to_string()), ("id", ex.id.as_str()), ("hint", &hint)]))
}
