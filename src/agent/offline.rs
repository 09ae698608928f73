//! The offline engine: a deterministic, template-based policy over the same tools as the LLM
//! engine. It looks up mastery, retrieves, picks the course's own material at the learner's
//! level and preferred format, and assembles a cited answer from it. It declines what the
//! course does not cover, and never gives an exercise's answer.

use super::guard;
use super::prompts::fill;
use super::tools::{self, ToolOutcome};
use super::{Emitter, TurnCtx};
use crate::content::{ComponentId, Format, SkillId};
use crate::passport::{Band, name_in_sentence};

/// What the offline engine answered.
pub struct Offline {
    pub citations: Vec<ComponentId>,
    pub declined: bool,
}

const STOPWORDS: &[&str] = &[
    "the",
    "and",
    "for",
    "are",
    "but",
    "not",
    "you",
    "your",
    "all",
    "any",
    "can",
    "had",
    "her",
    "was",
    "one",
    "our",
    "out",
    "has",
    "him",
    "his",
    "how",
    "its",
    "may",
    "new",
    "now",
    "old",
    "see",
    "two",
    "who",
    "did",
    "does",
    "doing",
    "get",
    "got",
    "let",
    "say",
    "she",
    "too",
    "use",
    "what",
    "whats",
    "what's",
    "when",
    "where",
    "which",
    "while",
    "why",
    "with",
    "would",
    "could",
    "should",
    "this",
    "that",
    "these",
    "those",
    "there",
    "their",
    "them",
    "then",
    "than",
    "they",
    "have",
    "from",
    "into",
    "just",
    "like",
    "more",
    "most",
    "much",
    "some",
    "such",
    "very",
    "will",
    "about",
    "again",
    "also",
    "been",
    "being",
    "each",
    "here",
    "only",
    "other",
    "over",
    "same",
    "want",
    "know",
    "tell",
    "explain",
    "please",
    "help",
    "need",
    "mean",
    "means",
    "thing",
    "things",
    "way",
    "really",
    "i'm",
    "don't",
    "dont",
    "isn't",
    "it's",
    "understand",
    "make",
    "makes",
    "work",
    "works",
    "show",
    "give",
    "question",
    "idea",
];

/// Content words of a text: lowercase, 3+ characters, not stopwords.
/// Numbers and fractions (`0.5`, `1/5`, `12`) count too: in a course on fractions they are
/// the topic.
pub fn content_words(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut out: Vec<String> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '.' || c == '/'))
        .flat_map(|w| {
            let w = w.trim_matches(|c: char| c == '\'' || c == '.' || c == '/');
            if w.chars().any(|c| c.is_ascii_digit()) && w.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '/') {
                vec![w]
            } else {
                w.split(['.', '/']).collect()
            }
        })
        .filter(|w| {
            let number = !w.is_empty() && w.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '/');
            (number && w.chars().count() >= 2) || (w.chars().count() >= 3 && !STOPWORDS.contains(w))
        })
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn stem(w: &str) -> &str {
    for suffix in ["ers", "ing", "es", "s", "ed", "er"] {
        if let Some(s) = w.strip_suffix(suffix)
            && s.len() >= 4
        {
            return s;
        }
    }
    w
}

/// How many of the question's content words the text has (by a crude common stem).
fn overlap(question: &[String], text: &str) -> usize {
    let words: std::collections::BTreeSet<String> = content_words(text).iter().map(|w| stem(w).to_owned()).collect();
    question.iter().filter(|w| words.contains(stem(w))).count()
}

/// Whether the best hits cover more than half of the question's content words, or at least
/// two of them (by a crude common stem): a question the course answers shares its key words
/// with the material; one stray word in common is not enough.
pub fn is_on_topic<'a>(ctx: &TurnCtx, message: &str, hits: impl Iterator<Item = &'a ComponentId>) -> bool {
    let question = content_words(message);
    if question.is_empty() {
        return false;
    }
    let text: String = hits
        .take(3)
        .filter_map(|id| ctx.lib.components.get(id))
        .map(|c| format!("{} {} {}\n", c.title, c.objectives.join(" "), c.retrievable_text()))
        .collect();
    let covered = overlap(&question, &text);
    covered * 2 > question.len()
}

/// Phrases that ask about what is already on the page rather than something new.
const FOLLOW_UPS: &[&str] = &[
    "another example",
    "one more example",
    "explain again",
    "explain it again",
    "say that again",
    "differently",
    "another way",
    "don't get",
    "dont get",
    "don't understand",
    "dont understand",
    "makes no sense",
    "doesn't make sense",
    "confused",
    "i'm lost",
    "still stuck",
    "i'm stuck",
    "what does this mean",
];

/// Whether the message asks about the page in front of the learner ("I don't get it").
pub fn is_follow_up(message: &str) -> bool {
    let m = message.to_lowercase().replace('’', "'");
    FOLLOW_UPS.iter().any(|p| m.contains(p))
}

/// Phrases asking for an answer outright, and instructions trying to override the tutor.
const ANSWER_SEEKING: &[&str] = &[
    "the answer",
    "answer key",
    "answers to",
    "the solution",
    "solve it for me",
    "just tell me",
    "what is the correct",
    "what's the correct",
    "correct answer",
    "ignore previous",
    "ignore all previous",
    "ignore your instructions",
    "system prompt",
];

/// Whether the learner is asking for an exercise's answer (or trying to get around the rule).
pub fn seeks_answer(message: &str) -> bool {
    let m = message.to_lowercase();
    ANSWER_SEEKING.iter().any(|p| m.contains(p))
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

fn default_format(band: Band) -> Format {
    match band {
        Band::Intro => Format::Explanation,
        Band::Developing => Format::WorkedExample,
        Band::Proficient => Format::Explanation,
        Band::Mastered => Format::Explanation,
    }
}

async fn use_tool(ctx: &TurnCtx, emit: &mut Emitter, name: &str, args: serde_json::Value) -> ToolOutcome {
    let raw = args.to_string();
    let o = tools::call(ctx, name, &raw).await;
    emit.tool(&o, &raw).await;
    o
}

/// A template of `prompts/offline.md`, filled.
fn t(ctx: &TurnCtx, name: &str, values: &[(&str, &str)]) -> String {
    fill(ctx.prompts.section("offline", name), values)
}

/// Answers `message` for the learner in `ctx`, streaming the text through `emit`.
pub async fn answer(ctx: &TurnCtx, message: &str, emit: &mut Emitter) -> Offline {
    let cfg = &ctx.config.passport;
    use_tool(ctx, emit, "lookup_mastery", serde_json::json!({})).await;

    // an exercise's answer is never given: a hint and the method instead
    if seeks_answer(message) {
        return refuse_answer(ctx, message, emit).await;
    }

    let found = use_tool(ctx, emit, "retrieve_components", serde_json::json!({"query": message, "k": 4})).await;
    let hits: Vec<(ComponentId, Vec<SkillId>)> = found.content["components"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| {
                    let id = ComponentId::parse(h["component_id"].as_str()?).ok()?;
                    let skills =
                        h["skills"].as_array()?.iter().filter_map(|s| SkillId::parse(s.as_str()?).ok()).collect();
                    Some((id, skills))
                })
                .collect()
        })
        .unwrap_or_default();
    // "I don't get it" or "another example?" on a page is about the page
    let follow_up = ctx.page.is_some() && is_follow_up(message);
    let on_topic = follow_up || is_on_topic(ctx, message, hits.iter().map(|(id, _)| id));
    if !on_topic {
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
        let text = format!(
            "{}\n\n{}",
            t(ctx, "decline", &[("courses", &course_names.join(" and ")), ("skills", &skills.join(", "))]),
            t(ctx, "footer", &[])
        );
        emit.delta(&text).await;
        return Offline { citations: vec![], declined: true };
    }

    // the skill: the page's when the best hit teaches it, else the best hit's own
    // on a page, the best hit that teaches one of its skills: the learner asks about the page
    let on_page = hits.iter().find(|(_, sk)| sk.iter().any(|s| ctx.skills.contains(s)));
    let skill = match on_page.or(hits.first()) {
        Some((top, top_skills)) if !follow_up || top_skills.iter().any(|s| ctx.skills.contains(s)) => top_skills
            .iter()
            .find(|s| ctx.skills.contains(s))
            .or(top_skills.first())
            .cloned()
            .or_else(|| ctx.lib.components.get(top).map(|c| c.skills[0].clone()))
            .unwrap_or_else(|| ctx.skills.first().cloned().unwrap_or_else(|| top_skills[0].clone())),
        _ => match ctx.skills.first() {
            Some(s) => s.clone(),
            None => {
                let text = format!("{}\n\n{}", t(ctx, "not_found", &[]), t(ctx, "footer", &[]));
                emit.delta(&text).await;
                return Offline { citations: vec![], declined: true };
            }
        },
    };
    let state = ctx.state.skills.get(&skill);
    let mastery =
        state.map_or_else(|| ctx.lib.skills.get(&skill).and_then(|k| k.bkt).unwrap_or_default().prior, |s| s.mastery);
    let band = Band::of(mastery, cfg);
    let level = band.level();
    let mut format = ctx.state.preferred_format().filter(|f| *f != Format::Exercise).unwrap_or(default_format(band));
    if follow_up {
        // another way in than the page itself
        let own = ctx.page.as_ref().map(|p| p.format);
        format = [Format::WorkedExample, Format::Scenario, Format::Explanation]
            .into_iter()
            .find(|f| Some(*f) != own)
            .unwrap_or(Format::WorkedExample);
    }
    let rendered =
        use_tool(ctx, emit, "render_format", serde_json::json!({"skill": skill, "level": level, "format": format}))
            .await;
    let Some(mut variant) = rendered.citations.first().and_then(|id| ctx.lib.components.get(id)) else {
        let text = format!("{}\n\n{}", t(ctx, "not_found", &[]), t(ctx, "footer", &[]));
        emit.delta(&text).await;
        return Offline { citations: vec![], declined: true };
    };
    // on an exercise page, material that works out one of its items would give the answer
    // away: take the nearest material on the skill that does not
    let page_keys = guard::page_exercise_keys(&ctx.lib, ctx.page.as_ref());
    let gives_away = |c: &crate::content::Component| guard::redact(&c.body, &page_keys) != c.body;
    if gives_away(variant) {
        let rank =
            |l: crate::content::Level| crate::content::Level::ALL.iter().position(|x| *x == l).unwrap_or(0) as i32;
        let alternative = ctx
            .lib
            .components
            .values()
            .filter(|c| c.format != Format::Exercise && c.skills.contains(&skill) && !gives_away(c))
            .min_by_key(|c| {
                (
                    (rank(c.level) - rank(level)).abs(),
                    c.skills.first() != Some(&skill),
                    c.format != format,
                    c.id.clone(),
                )
            });
        if let Some(alt) = alternative {
            let again = use_tool(
                ctx,
                emit,
                "render_format",
                serde_json::json!({"component_id": alt.id, "level": alt.level, "format": alt.format}),
            )
            .await;
            if let Some(c) = again.citations.first().and_then(|id| ctx.lib.components.get(id)) {
                variant = c;
            }
        }
    }
    let name = name_in_sentence(&ctx.lib, &skill);

    let mut parts = Vec::new();
    let opening = if band >= Band::Proficient { "opening_expert" } else { "opening_novice" };
    let format_name = variant.format.as_str().replace('_', " ");
    parts.push(t(ctx, opening, &[("skill", &name), ("level", variant.level.as_str()), ("format", &format_name)]));
    if let Some(m) = state.and_then(|s| s.misconceptions.last()) {
        parts.push(t(ctx, "misconception", &[("diagnosis", &m.diagnosis)]));
    }
    parts.push(excerpt(&variant.body, words_for(band)));
    let mut citations = vec![variant.id.clone()];
    let mut source = t(ctx, "sources", &[("id", variant.id.as_str()), ("title", &variant.title)]);
    if let Some((other, _)) = hits
        .iter()
        .find(|(id, _)| *id != variant.id && ctx.lib.components.get(id).is_some_and(|c| c.format != Format::Exercise))
    {
        source.push(' ');
        let title = ctx.lib.components.get(other).map_or("", |c| c.title.as_str());
        source.push_str(&t(ctx, "see_also", &[("id", other.as_str()), ("title", title)]));
        citations.push(other.clone());
    }
    parts.push(source);

    // one next step: a weak prerequisite first, else practice
    let gap = ctx.lib.skills.get(&skill).and_then(|k| {
        k.prerequisites
            .iter()
            .find(|p| ctx.state.skills.get(*p).is_some_and(|s| s.evidence > 0 && s.mastery < cfg.proficient))
    });
    let next = match gap {
        Some(p) => crate::passport::best_material(&ctx.lib, p, level_for(ctx, p), Format::Explanation, None).map(|c| {
            citations.push(c.id.clone());
            t(
                ctx,
                "next_review",
                &[
                    ("prerequisite", &name_in_sentence(&ctx.lib, p)),
                    ("skill", &name),
                    ("id", c.id.as_str()),
                    ("title", &c.title),
                ],
            )
        }),
        None => tools::authored(ctx, &skill, level, Format::Exercise, None).map(|(c, _)| {
            citations.push(c.id.clone());
            t(ctx, "next_practice", &[("id", c.id.as_str()), ("title", &c.title)])
        }),
    };
    if let Some(n) = next {
        parts.push(n);
    }
    parts.push(t(ctx, "footer", &[]));
    for (i, p) in parts.iter().enumerate() {
        emit.delta(&if i == 0 { p.clone() } else { format!("\n\n{p}") }).await;
    }
    Offline { citations, declined: false }
}

/// The level of material for a skill, from the learner's band on it.
fn level_for(ctx: &TurnCtx, skill: &SkillId) -> crate::content::Level {
    let m = ctx.state.skills.get(skill).map_or(0.0, |s| s.mastery);
    Band::of(m, &ctx.config.passport).level()
}

async fn refuse_answer(ctx: &TurnCtx, message: &str, emit: &mut Emitter) -> Offline {
    // the exercise in question: the page's, else the nearest exercise on the page's skill
    let exercise = ctx.page.as_ref().filter(|p| p.format == Format::Exercise).map(|p| p.id.clone()).or_else(|| {
        ctx.skills
            .first()
            .and_then(|s| tools::authored(ctx, s, level_for(ctx, s), Format::Exercise, None))
            .map(|(c, _)| c.id.clone())
    });
    let lower = message.to_lowercase();
    let mut text = t(ctx, "refuse", &[]);
    let mut citations = Vec::new();
    if let Some(ex) = exercise.as_ref().and_then(|id| ctx.lib.components.get(id)) {
        let item = ex
            .items
            .iter()
            .enumerate()
            .find(|(n, i)| lower.contains(&i.id) || lower.contains(&format!("question {}", n + 1)))
            .map_or(ex.items.first(), |(_, i)| Some(i));
        if let Some(item) = item
            && let Some(hint) = ctx.lib.answer_key(&ex.id, &item.id).and_then(|k| k.hints.first())
        {
            let n = ex.items.iter().position(|i| i.id == item.id).unwrap_or(0) + 1;
            let hint = super::guard::redact(hint, &ctx.keys);
            text.push_str("\n\n");
            text.push_str(&t(ctx, "refuse_hint", &[("n", &n.to_string()), ("id", ex.id.as_str()), ("hint", &hint)]));
            citations.push(ex.id.clone());
        }
        let skill = &ex.skills[0];
        let shown = use_tool(
            ctx,
            emit,
            "render_format",
            serde_json::json!({"skill": skill, "level": level_for(ctx, skill), "format": "worked_example"}),
        )
        .await;
        if let Some(we) = shown.citations.first().and_then(|id| ctx.lib.components.get(id)) {
            text.push_str("\n\n");
            text.push_str(&t(ctx, "refuse_method", &[("id", we.id.as_str()), ("title", &we.title)]));
            citations.push(we.id.clone());
        }
    }
    text.push_str(&format!("\n\n{}\n\n{}", t(ctx, "refuse_close", &[]), t(ctx, "footer", &[])));
    emit.delta(&text).await;
    Offline { citations, declined: false }
}
