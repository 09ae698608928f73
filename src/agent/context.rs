//! What the model sees, within a token budget counted with `tiktoken-rs` (`o200k_base`): the
//! tutor's prompt, then this turn's context (the page, the learner's passport for the page's
//! skills, the mode, the course material the service retrieved, what the learner's stated
//! answer shows), the conversation so far (oldest turns dropped first, folded into a running
//! summary), the message, and the tool results of this turn (each trimmed; older ones shrunk
//! when the budget runs out).

use super::Conversation;
use super::ground::Grounding;
use super::policy::Mode;
use super::prompts::Prompts;
use super::transcript::{Role, Turn};
use crate::config::{Config, PassportConfig};
use crate::content::{Component, ComponentId, Library, SkillId, count_tokens, trim_course_text, trim_to_tokens};
use crate::passport::{Band, LearnerState, name_in_sentence};

/// Tokens a chat message costs beyond its text (role, separators), as OpenAI counts them.
pub const MESSAGE_OVERHEAD: usize = 4;
/// Tokens kept for the running summary of dropped turns.
pub const SUMMARY_TOKENS: usize = 300;

/// The page block of the system message.
pub fn page_block(page: Option<&Component>) -> String {
    match page {
        None => "The learner is not on a particular page.".into(),
        Some(c) => {
            let mut s = format!(
                "The learner is on the page \"{}\" (component {}, {} level, {}), teaching: {}.",
                c.title,
                c.id,
                c.level,
                c.format.as_str().replace('_', " "),
                c.skills.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            );
            if !c.objectives.is_empty() {
                s.push_str("\nObjectives:");
                for o in &c.objectives {
                    s.push_str(&format!("\n- {o}"));
                }
            }
            s
        }
    }
}

/// The passport lines for the given skills and their prerequisites.
pub fn passport_block(lib: &Library, cfg: &PassportConfig, state: &LearnerState, skills: &[SkillId]) -> String {
    let mut lines = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let with_pre = skills.iter().flat_map(|s| {
        std::iter::once(s.clone()).chain(lib.skills.get(s).map(|k| k.prerequisites.clone()).unwrap_or_default())
    });
    for s in with_pre {
        if !seen.insert(s.clone()) {
            continue;
        }
        let name = name_in_sentence(lib, &s);
        match state.skills.get(&s) {
            Some(st) if st.evidence > 0 => lines.push(format!(
                "- {name} ({s}): {} band, mastery {:.2} from {} answers",
                Band::of(st.mastery, cfg).as_str(),
                st.mastery,
                st.evidence
            )),
            _ => lines.push(format!("- {name} ({s}): no answers yet")),
        }
    }
    if lines.is_empty() {
        return "Nothing is known yet about this learner.".into();
    }
    format!("What this learner knows:\n{}", lines.join("\n"))
}

/// The conversation for a turn, within `budget` prompt tokens: the tutor's prompt, then this
/// turn's context (page, passport, mode, the course material the service retrieved, what the
/// learner's stated answer shows), then as much history as fits (the rest folded into the
/// returned running summary), then the message; room is kept for the tool definitions
/// (`tools_tokens`, none for the offline engine) and results.
#[allow(clippy::too_many_arguments)]
pub fn conversation(
    prompts: &Prompts,
    config: &Config,
    lib: &Library,
    page: Option<&Component>,
    state: &LearnerState,
    history: &[Turn],
    message: &str,
    grounding: Grounding,
    budget: usize,
    tools_tokens: usize,
) -> (Conversation, Option<String>) {
    let skills = page.map(|p| p.skills.clone()).unwrap_or_default();
    let tutor = prompts.get("tutor");
    let base = format!("{}\n\n{}", page_block(page), passport_block(lib, &config.passport, state, &skills));
    let message_tokens = count_tokens(message);
    // room kept for the tool definitions and this turn's tool results
    let tools_room = tools_tokens + (budget / 6).min(500);
    // the course material takes up to two thirds of what is left, the history the rest
    let base_tokens = count_tokens(&base);
    let left = budget.saturating_sub(tutor.tokens + base_tokens + message_tokens + 3 * MESSAGE_OVERHEAD + tools_room);
    let material = (left * 2 / 3).min(config.agent.tool_result_tokens);
    let (block, block_tokens) = turn_block(lib, page, &grounding, material);
    let context = format!("{base}\n\n{block}");
    // counted by parts (a join adds at most a token), so the material is not encoded again
    let context_tokens = base_tokens + 1 + block_tokens;
    let fixed = tutor.tokens + context_tokens + message_tokens + 3 * MESSAGE_OVERHEAD;
    let fitted = fit_history(history, budget.saturating_sub(fixed + tools_room), "");
    let tokens = fixed
        + fitted.turns.iter().map(|t| t.tokens + MESSAGE_OVERHEAD).sum::<usize>()
        + fitted.summary.as_deref().map_or(0, |s| count_tokens(s) + MESSAGE_OVERHEAD);
    let convo = Conversation {
        system: tutor.text.clone(),
        system_tokens: tutor.tokens,
        context,
        context_tokens,
        grounding,
        message_tokens,
        summary: fitted.summary.clone(),
        history: fitted.turns,
        message: message.to_owned(),
        budget,
        tokens,
    };
    (convo, fitted.summary)
}

/// The turn's block: the mode, the course material the service retrieved (within `max`
/// tokens), and what the learner's stated answer shows; with its tokens, counted by parts.
pub fn turn_block(lib: &Library, page: Option<&Component>, g: &Grounding, max: usize) -> (String, usize) {
    let mut material_tokens = 0;
    let mut out = match g.mode {
        Mode::RefuseAnswer => {
            let mut s = "This turn's mode: refuse_answer. The learner asks for an exercise's answer, or tries to change your rules. Say plainly that you won't give the answer, then help them work it out.".to_owned();
            if let Some(r) = &g.refusal {
                if let (Some(ex), Some((n, hint))) = (&r.exercise, &r.hint) {
                    s.push_str(&format!(" A hint you may give for question {n} of [{ex}]: {hint}"));
                }
                if let Some(m) = &r.method {
                    s.push_str(&format!(" The method on other numbers is in [{m}]."));
                }
            }
            s
        }
        Mode::Decline => "This turn's mode: decline. The course does not cover this question.".to_owned(),
        Mode::Normal if g.search_unavailable => "This turn's mode: normal, but the course search is unavailable right now. Tell the learner you cannot search the course just now; answer only from the page's material below if there is any, otherwise ask them to try again in a moment.".to_owned(),
        Mode::Normal => "This turn's mode: normal. Answer from the course material below.".to_owned(),
    };
    let mut ids: Vec<&ComponentId> = Vec::new();
    ids.extend(g.material.iter());
    if let Some(r) = &g.refusal {
        ids.extend(r.method.iter());
    }
    ids.extend(g.hits.iter().map(|h| &h.component_id));
    let mut seen = std::collections::BTreeSet::new();
    // no exercise but the one the learner is on: a small model repeats an exercise's text as
    // if it were the answer
    let exercise_ok = |id: &ComponentId| {
        lib.components
            .get(id)
            .is_some_and(|c| c.format != crate::content::Format::Exercise || page.is_some_and(|p| p.id == c.id))
    };
    let ids: Vec<&ComponentId> = ids.into_iter().filter(|id| exercise_ok(id) && seen.insert(*id)).collect();
    // at least 60 tokens of each component shown: fewer components when room is short
    let ids = &ids[..ids.len().min(max / 60)];
    // everything but the material, which is counted while it is trimmed
    let mut frame = out.clone();
    if !ids.is_empty() {
        let intro = "\n\nCourse material the service retrieved for this message (cite what you use by its id):";
        out.push_str(intro);
        frame.push_str(intro);
        let per = max / ids.len();
        for (n, id) in ids.iter().enumerate() {
            let Some(c) = lib.components.get(*id) else { continue };
            let level = if n == 0 && g.material.as_ref() == Some(*id) { ", at this learner's level" } else { "" };
            let (text, tokens) = trim_course_text(&c.retrievable_text(), per);
            material_tokens += tokens + 1;
            let header = format!(
                "\n\n[{}] \"{}\" ({} {}{level}):\n",
                c.id,
                c.title,
                c.level,
                c.format.as_str().replace('_', " "),
            );
            out.push_str(&header);
            frame.push_str(&header);
            out.push_str(&text);
        }
    }
    let mut push = |t: &str| {
        out.push_str(t);
        frame.push_str(t);
    };
    if let Some(m) = &g.earlier_mistake {
        push(&format!(
            "\n\nThe learner's earlier answers show a known mistake: {m} Name it kindly and explain the right idea; never present the mistake as correct."
        ));
    }
    if let Some(d) = &g.diagnosis {
        push(&format!(
            "\n\nThe learner's message states the answer \"{}\" to question {} of [{}]. ",
            d.response, d.number, d.component
        ));
        match &d.mistake {
            Some(m) => push(&format!(
                "That is a known mistake: {m} Name this mistake kindly and explain the right idea; do not give the correct answer."
            )),
            None => push("That answer is right: say so without writing the answer again, and explain why it works."),
        }
    }
    let tokens = count_tokens(&frame) + material_tokens;
    (out, tokens)
}

/// The history that fits, oldest first, and the summary of what was dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub summary: Option<String>,
    pub turns: Vec<Turn>,
    pub dropped: usize,
}

/// Keeps the newest turns that fit in `budget` tokens; the dropped learner messages become a
/// running summary (newest kept first, within [`SUMMARY_TOKENS`]), together with the session's
/// earlier summary.
pub fn fit_history(turns: &[Turn], budget: usize, earlier_summary: &str) -> Fitted {
    let mut used = 0;
    let mut start = turns.len();
    while start > 0 {
        let t = &turns[start - 1];
        let cost = t.tokens + MESSAGE_OVERHEAD;
        if used + cost > budget.saturating_sub(SUMMARY_TOKENS + MESSAGE_OVERHEAD) {
            break;
        }
        used += cost;
        start -= 1;
    }
    // never start on a tutor reply without its question
    while start < turns.len() && turns[start].role != Role::Learner {
        start += 1;
    }
    let dropped = &turns[..start];
    let mut asked: Vec<String> = dropped
        .iter()
        .filter(|t| t.role == Role::Learner)
        .map(|t| t.content.split_whitespace().take(20).collect::<Vec<_>>().join(" "))
        .collect();
    let mut summary = None;
    if !asked.is_empty() || !earlier_summary.is_empty() {
        // the newest dropped questions matter most: drop from the oldest until it fits
        loop {
            let mut s = String::from("Earlier in this conversation");
            if !earlier_summary.is_empty() {
                s.push_str(&format!(" ({earlier_summary})"));
            }
            if !asked.is_empty() {
                s.push_str(&format!(
                    ", the learner asked: {}",
                    asked.iter().map(|q| format!("\"{q}\"")).collect::<Vec<_>>().join("; ")
                ));
            }
            s.push('.');
            if count_tokens(&s) <= SUMMARY_TOKENS || asked.is_empty() {
                summary = Some(trim_to_tokens(&s, SUMMARY_TOKENS));
                break;
            }
            asked.remove(0);
        }
    }
    Fitted { summary, turns: turns[start..].to_vec(), dropped: start }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(role: Role, content: &str) -> Turn {
        Turn {
            seq: 0,
            role,
            content: content.into(),
            tokens: count_tokens(content),
            meta: serde_json::Value::Null,
            at: 0,
        }
    }

    #[test]
    fn history_keeps_the_newest_turns_within_budget_and_summarises_the_rest() {
        let turns: Vec<Turn> = (0..200)
            .map(|i| {
                if i % 2 == 0 {
                    turn(Role::Learner, &format!("question number {i} about fractions and pizza slices"))
                } else {
                    turn(Role::Tutor, &"an answer with many words ".repeat(20))
                }
            })
            .collect();
        let f = fit_history(&turns, 2000, "");
        let used: usize = f.turns.iter().map(|t| t.tokens + MESSAGE_OVERHEAD).sum();
        let summary = f.summary.unwrap();
        assert!(used + count_tokens(&summary) + MESSAGE_OVERHEAD <= 2000, "{used}");
        assert!(f.dropped > 100 && f.turns.len() >= 2);
        assert_eq!(f.turns[0].role, Role::Learner);
        assert!(summary.contains(&format!("question number {}", f.dropped - 2)), "{summary}");
        assert!(count_tokens(&summary) <= SUMMARY_TOKENS);
    }
}
