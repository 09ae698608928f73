//! Before any engine answers: the service itself looks up the learner's mastery and retrieves
//! the course material for the message (through the same tools a model calls, so the trace
//! shows them), and its policy checks decide the turn's [`Mode`]. A model that never calls a
//! tool still answers from the course; the offline engine composes its answer from the same
//! [`Grounding`].

use std::collections::BTreeSet;

use super::policy::{
    Diagnosis, Mode, asks_an_item, diagnose, is_follow_up, is_on_topic, names_a_page_item, seeks_answer,
};
use super::tools::{
    LookupMastery, LookupMasteryArgs, MasteryOutput, RenderArgs, RenderFormat, Retrieve, RetrieveArgs, Retrieved,
    authored,
};
use super::{Emitter, TurnCtx, guard};
use crate::content::{Component, ComponentId, Format, Level, SkillId};
use crate::passport::Band;

/// What the service found before the model: the mode, the learner's mastery, the course
/// material, and what the learner's stated answer shows.
#[derive(Debug, Clone)]
pub struct Grounding {
    pub mode: Mode,
    pub mastery: Option<MasteryOutput>,
    /// The components retrieved for the message, best first (none in `refuse_answer` mode).
    pub hits: Vec<Retrieved>,
    /// The search failed (the index is unreachable): no hits, and the answer says so, from the
    /// page's own skills when there is a page.
    pub search_unavailable: bool,
    /// "I don't get it" on a page: about the page.
    pub follow_up: bool,
    /// The skill the answer is about, and the learner's band on it.
    pub skill: Option<SkillId>,
    pub band: Band,
    /// The course's material at the learner's level on that skill (`render_format`).
    pub material: Option<ComponentId>,
    /// In `refuse_answer` mode: the exercise in question, a hint, and material showing the
    /// method on other numbers.
    pub refusal: Option<Refusal>,
    pub diagnosis: Option<Diagnosis>,
    /// The newest known mistake in the learner's earlier answers on the skill the answer is
    /// about (or the page's skills), when the message states none.
    pub earlier_mistake: Option<String>,
}

/// How the service helps instead of giving an answer.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub exercise: Option<ComponentId>,
    /// The item's number and its first hint.
    pub hint: Option<(usize, String)>,
    /// A worked example on the exercise's skill, at the learner's level.
    pub method: Option<ComponentId>,
}

impl Grounding {
    /// Every component this grounding drew on: what a grounded answer may cite.
    pub fn components(&self) -> BTreeSet<ComponentId> {
        let mut out: BTreeSet<ComponentId> = self.hits.iter().map(|h| h.component_id.clone()).collect();
        out.extend(self.material.clone());
        if let Some(r) = &self.refusal {
            out.extend(r.exercise.clone());
            out.extend(r.method.clone());
        }
        if let Some(d) = &self.diagnosis {
            out.insert(d.component.clone());
        }
        out
    }
}

/// The level of material for a skill, from the learner's band on it (its prior when there is
/// no evidence yet).
pub fn level_for(ctx: &TurnCtx, skill: &SkillId) -> Level {
    Band::of(ctx.state.mastery(&ctx.lib, skill), &ctx.config.passport).level()
}

/// Grounds the turn: mastery, the policy's mode, retrieval and material (see the module docs).
pub async fn ground(ctx: &TurnCtx, emit: &mut Emitter, message: &str) -> Grounding {
    let mastery = ctx.tools.call::<LookupMastery>(ctx, emit, LookupMasteryArgs::default()).await.map(|d| d.output);
    let mut g = Grounding {
        mode: Mode::Normal,
        mastery,
        hits: Vec::new(),
        search_unavailable: false,
        follow_up: false,
        skill: None,
        band: Band::Intro,
        material: None,
        refusal: None,
        diagnosis: diagnose(&ctx.lib, ctx.page.as_ref(), &ctx.skills, message),
        earlier_mistake: None,
    };
    // an exercise's answer is never given: a hint and the method instead
    if seeks_answer(message) || asks_an_item(ctx.page.as_ref(), message) {
        g.mode = Mode::RefuseAnswer;
        g.refusal = Some(refusal(ctx, emit, message).await);
        return g;
    }
    let args = RetrieveArgs { query: message.to_owned(), k: Some(4), ..RetrieveArgs::default() };
    match ctx.tools.call::<Retrieve>(ctx, emit, args).await {
        Some(d) => g.hits = d.output.components,
        // the arguments are valid, so the search itself failed (its error is in the trace)
        None => g.search_unavailable = true,
    }
    // "I don't get it" or "another example?" on a page is about the page
    g.follow_up = ctx.page.is_some() && (is_follow_up(message) || names_a_page_item(ctx.page.as_ref(), message));
    // with no search there is no telling whether the course covers it: not declined
    if !g.follow_up
        && !g.search_unavailable
        && g.diagnosis.is_none()
        && !is_on_topic(ctx, message, g.hits.iter().map(|h| &h.component_id))
    {
        g.mode = Mode::Decline;
        return g;
    }
    g.skill = choose_skill(ctx, &g.hits, g.follow_up);
    if g.diagnosis.is_none() {
        let on = g.skill.iter().chain(ctx.skills.iter());
        g.earlier_mistake = on
            .filter_map(|s| ctx.state.skills.get(s).and_then(|st| st.misconceptions.last()))
            .map(|m| m.diagnosis.clone())
            .next();
    }
    if let Some(skill) = &g.skill {
        g.band = Band::of(ctx.state.mastery(&ctx.lib, skill), &ctx.config.passport);
        let format = choose_format(ctx, g.band, g.follow_up);
        g.material = material(ctx, emit, skill, g.band.level(), format).await.map(|c| c.id.clone());
    }
    g
}

/// The skill to answer on: on a page, the page's skill that the best matching hit teaches (the
/// learner asks about the page), else the best hit's own; a follow-up whose hits miss the page
/// is about the page's first skill.
fn choose_skill(ctx: &TurnCtx, hits: &[Retrieved], follow_up: bool) -> Option<SkillId> {
    let on_page = hits.iter().find(|h| h.skills.iter().any(|s| ctx.skills.contains(s)));
    match on_page.or(hits.first()) {
        Some(top) if !follow_up || top.skills.iter().any(|s| ctx.skills.contains(s)) => Some(
            top.skills
                .iter()
                .find(|s| ctx.skills.contains(s))
                .or(top.skills.first())
                .cloned()
                .or_else(|| ctx.lib.components.get(&top.component_id).map(|c| c.skills[0].clone()))
                .unwrap_or_else(|| ctx.skills.first().cloned().unwrap_or_else(|| top.skills[0].clone())),
        ),
        _ => ctx.skills.first().cloned(),
    }
}

/// The format of material for a band; for a follow-up, another way in than the page itself.
fn choose_format(ctx: &TurnCtx, band: Band, follow_up: bool) -> Format {
    if follow_up {
        let own = ctx.page.as_ref().map(|p| p.format);
        return [Format::WorkedExample, Format::Scenario, Format::Explanation]
            .into_iter()
            .find(|f| Some(*f) != own)
            .unwrap_or(Format::WorkedExample);
    }
    let default = match band {
        Band::Intro | Band::Proficient | Band::Mastered => Format::Explanation,
        Band::Developing => Format::WorkedExample,
    };
    ctx.state.preferred_format().filter(|f| *f != Format::Exercise).unwrap_or(default)
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
        authored_only: true,
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
        authored_only: true,
        ..Default::default()
    };
    let again = ctx.tools.call::<RenderFormat>(ctx, emit, args).await;
    Some(again.and_then(|d| d.citations.first().and_then(|id| ctx.lib.components.get(id))).unwrap_or(variant))
}

/// The exercise in question (the page's, else the nearest exercise on the page's skill), the
/// first hint of the item the message names, and a worked example on its skill.
async fn refusal(ctx: &TurnCtx, emit: &mut Emitter, message: &str) -> Refusal {
    let exercise = ctx.page.as_ref().filter(|p| p.format == Format::Exercise).map(|p| p.id.clone()).or_else(|| {
        ctx.skills
            .first()
            .and_then(|s| authored(ctx, s, level_for(ctx, s), Format::Exercise, None))
            .map(|(c, _)| c.id.clone())
    });
    let mut r = Refusal { exercise: exercise.clone(), hint: None, method: None };
    let Some(ex) = exercise.as_ref().and_then(|id| ctx.lib.components.get(id)) else {
        return r;
    };
    r.hint = hint_for(ctx, ex, message);
    let skill = &ex.skills[0];
    let args = RenderArgs {
        skill: Some(skill.to_string()),
        level: level_for(ctx, skill).to_string(),
        format: Format::WorkedExample.to_string(),
        authored_only: true,
        ..Default::default()
    };
    let shown = ctx.tools.call::<RenderFormat>(ctx, emit, args).await;
    r.method = shown.and_then(|d| d.citations.first().cloned()).filter(|id| ctx.lib.components.contains_key(id));
    r
}

/// The first hint of the item the message names ("q2", "question 2"), else of the first item.
fn hint_for(ctx: &TurnCtx, ex: &Component, message: &str) -> Option<(usize, String)> {
    let lower = message.to_lowercase();
    let (n, item) = ex
        .items
        .iter()
        .enumerate()
        .find(|(n, i)| lower.contains(&i.id) || lower.contains(&format!("question {}", n + 1)))
        .or_else(|| ex.items.first().map(|i| (0, i)))?;
    let hint = ctx.lib.answer_key(&ex.id, &item.id).and_then(|k| k.hints.first())?;
    Some((n + 1, guard::redact(hint, &ctx.keys)))
}
