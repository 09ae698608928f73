//! The offline engine: a deterministic, template-based policy over the same tools as the LLM
//! engine. It looks up mastery, retrieves, picks the course's own material at the learner's
//! level and preferred format, and assembles a cited answer from it. It declines what the
//! course does not cover, and never gives an exercise's answer. Its sentences are the sections
//! of `prompts/offline.md`.

use super::engine::{Engine, EngineFailure, EngineKind, Outcome};
use super::ground::{Grounding, level_for};
use super::policy::{Diagnosis, Mode};
use super::prompts::fill;
use super::tools::authored;
use super::{Conversation, Emitter, TurnCtx};
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
        Ok(answer(ctx, &convo.grounding, emit).await)
    }
}

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

/// A template of `prompts/offline.md`, filled.
pub fn t(ctx: &TurnCtx, name: &str, values: &[(&str, &str)]) -> String {
    fill(ctx.prompts.section("offline", name), values)
}

/// An answer that cites nothing: a template and the footer.
async fn say(ctx: &TurnCtx, emit: &mut Emitter, text: String) -> Outcome {
    emit.delta(&format!("{text}\n\n{}", t(ctx, "footer", &[]))).await;
    Outcome { declined: true, ..Outcome::default() }
}

/// Answers from the turn's grounding, streaming the text through `emit`.
pub async fn answer(ctx: &TurnCtx, g: &Grounding, emit: &mut Emitter) -> Outcome {
    match g.mode {
        Mode::RefuseAnswer => refuse_answer(ctx, g, emit).await,
        Mode::Decline => decline(ctx, emit).await,
        Mode::Normal => {
            let (Some(skill), Some(variant)) =
                (&g.skill, g.material.as_ref().and_then(|id| ctx.lib.components.get(id)))
            else {
                let why = if g.search_unavailable { "unavailable_none" } else { "not_found" };
                return say(ctx, emit, t(ctx, why, &[])).await;
            };
            if g.search_unavailable {
                emit.delta(&format!("{}\n\n", t(ctx, "unavailable", &[]))).await;
            }
            compose(ctx, emit, g, skill, variant).await
        }
    }
}

/// Says the course does not cover the question, and what it does cover.
pub async fn decline(ctx: &TurnCtx, emit: &mut Emitter) -> Outcome {
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

/// What the service says about an answer the learner stated: the known mistake it shows, or
/// that it is right. (Never the key.)
pub fn about_stated_answer(ctx: &TurnCtx, d: &Diagnosis) -> String {
    match &d.mistake {
        Some(diagnosis) => t(ctx, "mistake", &[("response", &d.response), ("diagnosis", diagnosis)]),
        None => t(ctx, "stated_right", &[("n", &d.number.to_string()), ("id", d.component.as_str())]),
    }
}

/// The answer: an opening for the level, what the learner's stated answer shows, a known
/// misconception, the excerpt, the sources, one next step, the footer.
async fn compose(ctx: &TurnCtx, emit: &mut Emitter, g: &Grounding, skill: &SkillId, variant: &Component) -> Outcome {
    let name = name_in_sentence(&ctx.lib, skill);
    let mut parts = Vec::new();
    let opening = if g.band >= Band::Proficient { "opening_expert" } else { "opening_novice" };
    let format_name = variant.format.as_str().replace('_', " ");
    parts.push(t(ctx, opening, &[("skill", &name), ("level", variant.level.as_str()), ("format", &format_name)]));
    if let Some(d) = &g.diagnosis {
        parts.push(about_stated_answer(ctx, d));
    } else if let Some(m) = ctx.state.skills.get(skill).and_then(|s| s.misconceptions.last()) {
        parts.push(t(ctx, "misconception", &[("diagnosis", &m.diagnosis)]));
    }
    parts.push(excerpt(&variant.body, words_for(g.band)));
    let mut citations = vec![variant.id.clone()];
    let mut source = t(ctx, "sources", &[("id", variant.id.as_str()), ("title", &variant.title)]);
    if let Some(other) = g
        .hits
        .iter()
        .map(|h| &h.component_id)
        .find(|id| **id != variant.id && ctx.lib.components.get(*id).is_some_and(|c| c.format != Format::Exercise))
    {
        let title = ctx.lib.components.get(other).map_or("", |c| c.title.as_str());
        source.push(' ');
        source.push_str(&t(ctx, "see_also", &[("id", other.as_str()), ("title", title)]));
        citations.push(other.clone());
    }
    parts.push(source);
    if let Some((next, cited)) = next_step(ctx, skill, g.band.level(), &name) {
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

/// The refusal: the service will not give the answer; a hint, the method on other numbers,
/// and an invitation to say what was tried.
async fn refuse_answer(ctx: &TurnCtx, g: &Grounding, emit: &mut Emitter) -> Outcome {
    let mut text = t(ctx, "refuse", &[]);
    let mut citations = Vec::new();
    if let Some(r) = &g.refusal {
        if let (Some(ex), Some((n, hint))) = (&r.exercise, &r.hint) {
            text.push_str("\n\n");
            text.push_str(&t(ctx, "refuse_hint", &[("n", &n.to_string()), ("id", ex.as_str()), ("hint", hint)]));
            citations.push(ex.clone());
        }
        if let Some(we) = r.method.as_ref().and_then(|id| ctx.lib.components.get(id)) {
            text.push_str("\n\n");
            text.push_str(&t(ctx, "refuse_method", &[("id", we.id.as_str()), ("title", &we.title)]));
            citations.push(we.id.clone());
        }
    }
    text.push_str(&format!("\n\n{}\n\n{}", t(ctx, "refuse_close", &[]), t(ctx, "footer", &[])));
    emit.delta(&text).await;
    Outcome { citations, ..Outcome::default() }
}
