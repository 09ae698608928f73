//! What the model sees, within a token budget counted with `tiktoken-rs` (`o200k_base`): the
//! system prompt, the page, the learner's passport for the page's skills, the conversation so
//! far (oldest turns dropped first, folded into a running summary), the message, and the tool
//! results of this turn (each trimmed; older ones shrunk when the budget runs out).

use super::Conversation;
use super::prompts::Prompts;
use super::transcript::{Role, Turn};
use crate::config::{Config, PassportConfig};
use crate::content::{Component, Library, SkillId, count_tokens, tokenizer};
use crate::passport::{Band, LearnerState, name_in_sentence};

/// Tokens a chat message costs beyond its text (role, separators), as OpenAI counts them.
pub const MESSAGE_OVERHEAD: usize = 4;
/// Tokens kept for the running summary of dropped turns.
pub const SUMMARY_TOKENS: usize = 300;

/// Cuts `text` to at most `max` tokens, marking the cut.
pub fn trim_to_tokens(text: &str, max: usize) -> String {
    trim_counted(text, max).0
}

/// [`trim_to_tokens`], with the tokens of the result (counted once, while trimming).
pub fn trim_counted(text: &str, max: usize) -> (String, usize) {
    // tokens average about four bytes of text, so encoding a prefix of 6 bytes per token is
    // enough to find the cut without encoding all of a long text
    let mut end = text.len().min(max.saturating_mul(6));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let bpe = tokenizer();
    let toks = bpe.encode_ordinary(&text[..end]);
    if toks.len() <= max && end == text.len() {
        return (text.to_owned(), toks.len());
    }
    const MARK: &str = " … [trimmed]";
    if toks.len() + 8 <= max {
        // the prefix fits: keep all of it
        return (format!("{}{MARK}", &text[..end]), toks.len() + 5);
    }
    // a cut inside a multi-byte character does not decode: back off a token at a time
    let mut keep = max.saturating_sub(8).min(toks.len());
    let kept = loop {
        match bpe.decode(&toks[..keep]) {
            Ok(t) => break t,
            Err(_) if keep > 0 => keep -= 1,
            Err(_) => break String::new(),
        }
    };
    (format!("{kept}{MARK}"), keep + 5)
}

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

/// The conversation for a turn, within the budget: the system prompt with the page and the
/// learner's passport first, then as much history as fits (the rest folded into the returned
/// running summary), then the message; room is kept for tool definitions and results.
pub fn conversation(
    prompts: &Prompts,
    config: &Config,
    lib: &Library,
    page: Option<&Component>,
    state: &LearnerState,
    history: &[Turn],
    message: &str,
) -> (Conversation, Option<String>) {
    let skills = page.map(|p| p.skills.clone()).unwrap_or_default();
    let budget = config.agent.context_tokens;
    let tutor = prompts.get("tutor");
    let about = format!("\n\n{}\n\n{}", page_block(page), passport_block(lib, &config.passport, state, &skills));
    let system = format!("{}{about}", tutor.text);
    // the fixed prompt is counted once at start; a token may merge across the join
    let system_tokens = tutor.tokens + count_tokens(&about) + 1;
    let message_tokens = count_tokens(message);
    let fixed = system_tokens + message_tokens + 2 * MESSAGE_OVERHEAD;
    // room kept for tool definitions and this turn's tool results
    let tools_room = (budget / 3).min(1500);
    let fitted = fit_history(history, budget.saturating_sub(fixed + tools_room), "");
    let tokens = fixed
        + fitted.turns.iter().map(|t| t.tokens + MESSAGE_OVERHEAD).sum::<usize>()
        + fitted.summary.as_deref().map_or(0, |s| count_tokens(s) + MESSAGE_OVERHEAD);
    let convo = Conversation {
        system,
        system_tokens,
        message_tokens,
        summary: fitted.summary.clone(),
        history: fitted.turns,
        message: message.to_owned(),
        budget,
        tokens,
    };
    (convo, fitted.summary)
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

    #[test]
    fn trimming_inside_multi_byte_text_keeps_the_text() {
        let long = "分数の割り算は逆数を掛けることです。🍕🍕🍕 ".repeat(60);
        let (t, n) = trim_counted(&long, 40);
        assert!(t.len() > 40, "{t}");
        assert!(t.starts_with("分数"));
        assert!(n <= 40 && count_tokens(&t) <= 45, "{n}");
    }

    #[test]
    fn trimming_marks_the_cut() {
        let long = "word ".repeat(500);
        let t = trim_to_tokens(&long, 50);
        assert!(count_tokens(&t) <= 50, "{}", count_tokens(&t));
        assert!(t.ends_with("[trimmed]"));
        assert_eq!(trim_to_tokens("short", 50), "short");
    }
}
