//! The tutor's policy checks on a learner's message, the same for every engine: is it asking
//! for an exercise's answer (or trying to get around the rule), is it a follow-up on the page,
//! is it something the course covers.

use super::TurnCtx;
use crate::content::ComponentId;
use crate::text::{contains_any, normalize_phrase};

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
    let lower = normalize_phrase(text);
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
    contains_any(message, FOLLOW_UPS)
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
    contains_any(message, ANSWER_SEEKING)
}
