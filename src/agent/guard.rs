//! The last line of defence for answer keys: whatever a model writes, an exercise's answer
//! never reaches the learner. Answer keys are never in a tool result (they are not indexed and
//! not part of a component); this guard also redacts them from streamed text, holding back just
//! enough characters that a key split across two deltas is still caught — the accepted answers
//! as written, and any number worth the same as a numeric answer (`6/4` or `1.5` for `3/2`),
//! except numbers the items' own prompts use. Answers too short to find on their own (`5`,
//! `b`, `>`, `less`, `no`, `B, A, C`) are withheld where they stand as an answer: after "the
//! answer is", "answer:", "the correct option is", "q4 is", "pick" and the like — never every
//! "5" of an explanation.

use crate::content::{Format, Library, SkillId};
use crate::text::numbers;

/// What replaces a withheld answer.
pub const WITHHELD: &str = "[answer withheld]";

/// The answers a text must not contain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Guarded {
    /// Accepted answers as written, lowercased, longest first.
    pub keys: Vec<String>,
    /// Values of the numeric answers: any number worth one of these is withheld...
    values: Vec<f64>,
    /// ...unless it is worth one of the numbers in the items' prompts.
    exempt: Vec<f64>,
    /// Answers too short to find on their own, lowercased: withheld only where they stand as
    /// the answer (see [`answer_context`]).
    short: Vec<String>,
    /// The guarded items' ids, lowercased ("q4"), for "q4 is 5".
    items: Vec<String>,
}

impl Guarded {
    /// Only these literal answers (no numeric equivalents).
    pub fn literal(keys: Vec<String>) -> Self {
        Self { keys, ..Self::default() }
    }

    /// Whether nothing is guarded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.values.is_empty() && self.short.is_empty()
    }

    fn of<'a>(items: impl Iterator<Item = (&'a str, &'a str, &'a crate::content::AnswerKey)>) -> Self {
        let with_ids: Vec<(&str, &str, &crate::content::AnswerKey)> = items.collect();
        let ids: Vec<String> = with_ids.iter().map(|(id, _, _)| id.to_lowercase()).collect();
        let items: Vec<(&str, &crate::content::AnswerKey)> = with_ids.iter().map(|(_, p, k)| (*p, *k)).collect();
        let keys = specific(items.iter().map(|(_, k)| *k));
        let mut short: Vec<String> = items
            .iter()
            .flat_map(|(_, k)| std::iter::once(&k.answer).chain(&k.accept))
            .map(|a| a.trim().to_lowercase())
            .filter(|a| !a.is_empty() && a.chars().count() <= 24 && !keys.contains(a))
            .collect();
        short.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        short.dedup();
        let mut values: Vec<f64> = Vec::new();
        for (_, k) in &items {
            for a in std::iter::once(&k.answer).chain(&k.accept) {
                // a numeric answer specific enough to spot ("4" is not): the whole answer is one
                // number of two characters or more
                let a = a.trim();
                if let [n] = numbers(a).as_slice()
                    && n.start == 0
                    && n.end == a.len()
                    && a.chars().count() >= 2
                {
                    values.push(n.value);
                }
            }
        }
        let exempt = items.iter().flat_map(|(prompt, _)| numbers(prompt)).map(|n| n.value).collect();
        Self { keys, values, exempt, short, items: ids }
    }

    fn withholds(&self, value: f64) -> bool {
        let same = |a: f64, b: f64| (a - b).abs() < 1e-9;
        self.values.iter().any(|v| same(*v, value)) && !self.exempt.iter().any(|v| same(*v, value))
    }
}

/// The answers to guard for a page: every accepted answer of the exercises on its skills
/// that is specific enough to find in text: it holds a digit or a `/`, or is at least 12
/// characters long. (A bare "no" or "less" cannot be told apart from ordinary words.) Off a
/// page nothing is guarded: there is no exercise in front of the learner, and guarding every
/// answer of the course would blank out "1/2" from every explanation.)
pub fn guarded_keys(lib: &Library, skills: &[SkillId]) -> Guarded {
    Guarded::of(
        lib.components
            .values()
            .filter(|c| c.format == Format::Exercise && c.skills.iter().any(|s| skills.contains(s)))
            .flat_map(|c| {
                c.items
                    .iter()
                    .filter_map(|i| lib.answer_key(&c.id, &i.id).map(|k| (i.id.as_str(), i.prompt.as_str(), k)))
            }),
    )
}

/// The answers of the exercise the learner is on (when the page is one), as specific as
/// [`guarded_keys`] needs them: what course text shown on that page must not contain.
pub fn page_exercise_keys(lib: &Library, page: Option<&crate::content::Component>) -> Guarded {
    let Some(page) = page.filter(|p| p.format == Format::Exercise) else { return Guarded::default() };
    Guarded::of(
        page.items
            .iter()
            .filter_map(|i| lib.answer_key(&page.id, &i.id).map(|k| (i.id.as_str(), i.prompt.as_str(), k))),
    )
}

/// The accepted answers of `keys` specific enough to find in text, lowercased, longest first
/// (so that "1 1/2" is matched before "1/2").
fn specific<'a>(keys: impl Iterator<Item = &'a crate::content::AnswerKey>) -> Vec<String> {
    let mut out: Vec<String> = keys
        .flat_map(|k| std::iter::once(&k.answer).chain(&k.accept))
        .map(|a| a.trim().to_lowercase())
        .filter(|a| {
            a.chars().count() >= 2 && (a.contains(|c: char| c.is_ascii_digit() || c == '/') || a.chars().count() >= 12)
        })
        .collect();
    out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    out.dedup();
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '/'
}

/// Replaces every guarded answer standing on its own (not inside a longer number or word),
/// and every number worth a numeric answer.
pub fn redact(text: &str, g: &Guarded) -> String {
    redact_counted(text, g).0
}

/// [`redact`], and how many answers it withheld.
pub fn redact_counted(text: &str, g: &Guarded) -> (String, usize) {
    redact_after("", text, g)
}

/// [`redact_counted`] of `text` that follows `before` (already sent): `before` is the context
/// a short answer is judged in.
fn redact_after(before: &str, text: &str, g: &Guarded) -> (String, usize) {
    if g.is_empty() {
        return (text.to_owned(), 0);
    }
    let (text, n_short) = redact_short(before, text, g);
    let (literal, n) = redact_literal(&text, &g.keys);
    let n = n + n_short;
    if g.values.is_empty() {
        return (literal, n);
    }
    let mut out = String::with_capacity(literal.len());
    let mut last = 0;
    let mut more = 0;
    for num in numbers(&literal).into_iter().filter(|num| g.withholds(num.value)) {
        out.push_str(&literal[last..num.start]);
        out.push_str(WITHHELD);
        last = num.end;
        more += 1;
    }
    out.push_str(&literal[last..]);
    (out, n + more)
}

/// Replaces, scanning left to right, each key of `keys` (lowercase, longest first) found at a
/// position of `text` where `holds(start, end, key)` accepts it; the count withheld. The one
/// scan both kinds of keys share.
fn withhold(text: &str, keys: &[String], holds: impl Fn(usize, usize, &str) -> bool) -> (String, usize) {
    if keys.is_empty() {
        return (text.to_owned(), 0);
    }
    // ASCII lowercasing keeps byte offsets
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut withheld) = (0, 0);
    'outer: while i < text.len() {
        for k in keys {
            let end = i + k.len();
            if end <= text.len() && lower.is_char_boundary(end) && &lower[i..end] == k && holds(i, end, k) {
                out.push_str(WITHHELD);
                withheld += 1;
                i = end;
                continue 'outer;
            }
        }
        let c = text[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    (out, withheld)
}

fn redact_literal(text: &str, keys: &[String]) -> (String, usize) {
    // a number stands alone unless digits go on ("12cm" gives 12 away, "120" does not);
    // a word answer, unless letters go on
    let numeric = |edge: Option<char>| edge.is_some_and(|c| c.is_ascii_digit());
    let joins =
        |c: char, at_edge: Option<char>| if numeric(at_edge) { c.is_ascii_digit() || c == '/' } else { is_word(c) };
    withhold(text, keys, |i, end, k| {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| joins(c, k.chars().next()) || (c == '.' && numeric(k.chars().next()))) {
            return false;
        }
        let mut next = text[end..].chars();
        match next.next() {
            None => true,
            // "12." ends a sentence, "1.5" continues a number
            Some('.') | Some(',') => next.next().is_none_or(|c| !c.is_ascii_digit()),
            Some(c) => !joins(c, k.chars().next_back()),
        }
    })
}

/// Withholds each short answer of `g` that stands as an answer: as a token of its own, right
/// after words that give an answer ([`answer_context`]).
fn redact_short(before: &str, text: &str, g: &Guarded) -> (String, usize) {
    withhold(text, &g.short, |i, end, k| {
        stands_alone(&text[..i], &text[end..], k)
            && !reads_as_a_word(k, &text[end..])
            && (answer_context(&context_before(before, &text[..i]), &g.items) || named_right(&text[end..]))
    })
}

/// The last characters before a candidate answer: enough for [`answer_context`], without
/// copying all that was said before.
fn context_before(before: &str, head: &str) -> String {
    const KEEP: usize = 60;
    let from_head: Vec<char> = head.chars().rev().take(KEEP).collect();
    let mut out: String = if from_head.len() < KEEP {
        let need = KEEP - from_head.len();
        let tail: Vec<char> = before.chars().rev().take(need).collect();
        tail.into_iter().rev().collect()
    } else {
        String::new()
    };
    out.extend(from_head.into_iter().rev());
    out
}

/// Whether an answer that is also an English word is used as one: "a" or "i" followed by a word
/// ("the answer is a fraction").
fn reads_as_a_word(key: &str, tail: &str) -> bool {
    matches!(key, "a" | "i") && {
        let mut rest = tail.chars();
        rest.next() == Some(' ') && rest.next().is_some_and(char::is_alphabetic)
    }
}

/// Whether the text after a candidate answer names it as the answer: "B is correct", "5 is the
/// answer".
fn named_right(tail: &str) -> bool {
    let t = tail.trim_start_matches(['*', '"', '\'', '`', ')', ']']).to_ascii_lowercase();
    ["is correct", "is right", "is the answer", "is the correct", "is the right"]
        .iter()
        .any(|p| t.strip_prefix(' ').is_some_and(|r| r.starts_with(p)))
}

/// Whether a short answer found between `head` and `tail` is a token of its own ("b" in "is
/// b.", not in "bread"; "5" in "is 5", not in "50").
fn stands_alone(head: &str, tail: &str, key: &str) -> bool {
    let wordy = |c: char| c.is_alphanumeric() || c == '/' || c == '_';
    let first_wordy = key.chars().next().is_some_and(wordy);
    let last_wordy = key.chars().next_back().is_some_and(wordy);
    let before_ok = !first_wordy || head.chars().next_back().is_none_or(|c| !wordy(c));
    let mut rest = tail.chars();
    let after_ok = !last_wordy
        || match rest.next() {
            None => true,
            Some('.') | Some(',') => rest.next().is_none_or(|c| !c.is_ascii_digit()),
            Some(c) => !wordy(c),
        };
    before_ok && after_ok
}

/// Whether text ending in `head` is about to state an answer: it ends in a connector ("is",
/// ":", "=", "be", "pick", "option", …) and its last words name the answer ("answer",
/// "solution", "correct", "option", "choice", "letter") or an item ("q4", "question 4").
pub fn answer_context(head: &str, items: &[String]) -> bool {
    let tail: String = {
        let chars: Vec<char> = head.chars().collect();
        chars[chars.len().saturating_sub(60)..].iter().collect::<String>().to_lowercase()
    };
    let t = tail
        .trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '"' | '\'' | '`' | '(' | '[' | '“' | '‘'));
    // "the answer is definitely b"
    const HEDGES: &[&str] =
        &[" definitely", " probably", " clearly", " actually", " simply", " just", " obviously", " really", " surely"];
    let t = HEDGES.iter().find_map(|h| t.strip_suffix(h)).unwrap_or(t);
    let t = t
        .strip_suffix("option")
        .or_else(|| t.strip_suffix("choice"))
        .or_else(|| t.strip_suffix("letter"))
        .map_or(t, str::trim_end);
    const CONNECTORS: &[&str] =
        &[" is", ":", "=", " be", " are", " was", "→", "->", " pick", " choose", " select", " tick"];
    const NOUNS: &[&str] = &["answer", "solution", "correct", "right", "option", "choice", "letter", "result"];
    let spaced = format!(" {t}");
    let connected = CONNECTORS.iter().any(|c| spaced.ends_with(c));
    if !connected {
        return false;
    }
    // the clause the connector ends: back to the last sentence break
    let clause = t.rsplit(['.', '!', '?', '\n', ';']).next().unwrap_or(t);
    let names_item = items.iter().any(|id| {
        let spaced = id.strip_prefix('q').map(|n| format!("question {n}"));
        clause.split(|c: char| !c.is_alphanumeric()).any(|w| w == id)
            || spaced.is_some_and(|s| clause.contains(&s))
            || clause.contains(&format!("item {id}"))
    });
    let words: Vec<&str> = clause.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    names_item
        || words.iter().any(|w| NOUNS.iter().any(|n| w == n || w.strip_suffix('s') == Some(n)))
        || ["pick", "choose", "select", "tick"]
            .iter()
            .any(|v| clause.trim_start().starts_with(v) || clause.contains(&format!(" {v}")))
}

/// Redacts a stream of text deltas.
pub struct Redactor {
    guarded: Guarded,
    /// Characters held back: the longest key and the character after it.
    hold: usize,
    pending: String,
    /// Answers withheld so far.
    withheld: usize,
    /// The end of the text already sent, as written: the context of a short answer.
    sent: String,
}

impl Redactor {
    pub fn new(guarded: Guarded) -> Self {
        let longest = guarded.keys.iter().map(|k| k.chars().count()).max();
        // a number worth an answer may be written longer than any key ("12/8" for "3/2")
        let hold = match (longest, guarded.values.is_empty() && guarded.short.is_empty()) {
            (None, true) => 0,
            (l, _) => l.unwrap_or(0).max(24) + 2,
        };
        Self { guarded, hold, pending: String::new(), withheld: 0, sent: String::new() }
    }

    /// How many answers were withheld so far.
    pub fn withheld(&self) -> usize {
        self.withheld
    }

    fn redact(&mut self, text: &str) -> String {
        let (out, n) = redact_after(&self.sent, text, &self.guarded);
        self.withheld += n;
        self.sent.push_str(text);
        let keep = self.sent.char_indices().rev().nth(80).map_or(0, |(i, _)| i);
        self.sent.drain(..keep);
        out
    }

    /// Takes a delta; returns what can be sent now.
    pub fn push(&mut self, delta: &str) -> String {
        self.pending.push_str(delta);
        if self.hold == 0 {
            return std::mem::take(&mut self.pending);
        }
        let chars = self.pending.chars().count();
        if chars <= self.hold {
            return String::new();
        }
        // cut where no key can straddle: before the held tail, and not inside a word
        let mut cut = self.pending.char_indices().nth(chars - self.hold).map_or(self.pending.len(), |(i, _)| i);
        loop {
            while cut > 0 && self.pending[..cut].chars().next_back().is_some_and(|c| is_word(c) || c == '.') {
                cut -= self.pending[..cut].chars().next_back().map_or(1, char::len_utf8);
            }
            // a mixed number ("1 1/2") may be cut at its space
            let head = &self.pending[..cut];
            if head.ends_with(' ') && head[..head.len() - 1].ends_with(|c: char| c.is_ascii_digit()) {
                cut = head[..head.len() - 1].trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').len();
                continue;
            }
            // a key with a space in it ("1 1/2") may start before the cut and run past it
            let straddling = self.guarded.keys.iter().chain(&self.guarded.short).find_map(|k| {
                ((cut + 1).saturating_sub(k.len())..cut).find(|&p| {
                    self.pending.is_char_boundary(p)
                        && k.len() > cut - p
                        && k.as_bytes()[..cut - p].eq_ignore_ascii_case(&self.pending.as_bytes()[p..cut])
                })
            });
            match straddling {
                Some(p) => cut = p,
                None => break,
            }
        }
        if cut == 0 {
            return String::new();
        }
        let rest = self.pending.split_off(cut);
        let ready = std::mem::replace(&mut self.pending, rest);
        self.redact(&ready)
    }

    /// Everything still held.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.redact(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` through a [`Redactor`] in pieces of `split` characters: what came out, and how
    /// many answers it withheld.
    fn streamed(g: &Guarded, text: &str, split: usize) -> (String, usize) {
        let mut red = Redactor::new(g.clone());
        let mut out = String::new();
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(split) {
            out.push_str(&red.push(&piece.iter().collect::<String>()));
        }
        out.push_str(&red.finish());
        (out, red.withheld())
    }

    fn numeric() -> Guarded {
        let key = crate::content::AnswerKey {
            answer: "3/2".into(),
            accept: vec!["1 1/2".into(), "1.5".into()],
            explanation: None,
            hints: vec![],
            misconceptions: vec![],
        };
        Guarded::of(std::iter::once(("q1", "What is 3/4 ÷ 1/2?", &key)))
    }

    fn short_keys() -> Guarded {
        let key = |answer: &str| crate::content::AnswerKey {
            answer: answer.into(),
            accept: vec![],
            explanation: None,
            hints: vec![],
            misconceptions: vec![],
        };
        let (five, b, less, order) = (key("5"), key("b"), key("less"), key("B, A, C"));
        Guarded::of(
            [
                ("q4", "How many?", &five),
                ("q2", "Which one?", &b),
                ("q3", "More or less?", &less),
                ("q5", "Order them", &order),
            ]
            .into_iter(),
        )
    }

    #[test]
    fn short_answers_are_withheld_where_they_stand_as_the_answer_only() {
        let g = short_keys();
        let r = |t: &str| redact(t, &g);
        assert_eq!(r("q4 is 5."), "q4 is [answer withheld].");
        assert_eq!(r("The answer is b"), "The answer is [answer withheld]");
        assert_eq!(r("The correct option is **B**."), "The correct option is **[answer withheld]**.");
        assert_eq!(r("For question 3 the answer: less"), "For question 3 the answer: [answer withheld]");
        assert_eq!(r("The right order is B, A, C."), "The right order is [answer withheld].");
        assert_eq!(r("So the answer to q5 is B, A, C."), "So the answer to q5 is [answer withheld].");
        assert_eq!(r("Pick b."), "Pick [answer withheld].");
        // the same characters in an explanation stay
        assert_eq!(
            r("5 + 3 = 8, and 5 is less than 8; b is a letter."),
            "5 + 3 = 8, and 5 is less than 8; b is a letter."
        );
        assert_eq!(
            r("There are 5 apples. Is it less? Think about it."),
            "There are 5 apples. Is it less? Think about it."
        );
        assert_eq!(r("The answer is 50, not bread."), "The answer is 50, not bread.");
        // hedged, bracketed, or named as right after it
        assert_eq!(r("The answer is definitely b."), "The answer is definitely [answer withheld].");
        assert_eq!(r("The correct option is [b]."), "The correct option is [[answer withheld]].");
        assert_eq!(r("I think b is correct here."), "I think [answer withheld] is correct here.");
        // an incorrect guess, or results, do not name the answer
        assert_eq!(r("An incorrect idea is 5 + 3."), "An incorrect idea is 5 + 3.");
    }

    #[test]
    fn a_one_letter_answer_that_is_a_word_is_left_where_it_is_a_word() {
        let key = crate::content::AnswerKey {
            answer: "a".into(),
            accept: vec![],
            explanation: None,
            hints: vec![],
            misconceptions: vec![],
        };
        let g = Guarded::of(std::iter::once(("q1", "Which?", &key)));
        assert_eq!(redact("The answer is a fraction.", &g), "The answer is a fraction.");
        assert_eq!(redact("The answer is a.", &g), "The answer is [answer withheld].");
    }

    #[test]
    fn a_short_answer_after_context_sent_earlier_is_still_withheld() {
        let text = "Think about the sizes first. Then the answer to q4 is 5 and that is all.";
        for split in 1..8 {
            let (out, _) = streamed(&short_keys(), text, split);
            assert_eq!(
                out, "Think about the sizes first. Then the answer to q4 is [answer withheld] and that is all.",
                "split {split}"
            );
        }
    }

    #[test]
    fn numbers_worth_a_numeric_answer_are_withheld_but_the_prompts_numbers_are_not() {
        let g = numeric();
        assert_eq!(
            redact("3/4 ÷ 1/2 = 6/4 = 1.50, not 0.375", &g),
            "3/4 ÷ 1/2 = [answer withheld] = [answer withheld], not 0.375"
        );
        let text = "So 3/4 ÷ 1/2 is 12/8, or 1 1/2 once simplified.";
        for split in 1..7 {
            let (out, withheld) = streamed(&g, text, split);
            assert_eq!(
                out, "So 3/4 ÷ 1/2 is [answer withheld], or [answer withheld] once simplified.",
                "split {split}"
            );
            assert_eq!(withheld, 2);
        }
    }

    fn keys() -> Guarded {
        Guarded::literal(vec!["1 1/2".into(), "3/2".into(), "12".into()])
    }

    #[test]
    fn keys_standing_alone_are_withheld_and_others_kept() {
        let r = |t: &str| redact(t, &keys());
        assert_eq!(redact_counted("3/2 and 12", &keys()).1, 2);
        assert_eq!(r("The answer is 3/2."), "The answer is [answer withheld].");
        assert_eq!(r("It is 1 1/2, or 12, so"), "It is [answer withheld], or [answer withheld], so");
        assert_eq!(r("13/2 and 3/20 and 120 and 1.5 and 12.5 stay"), "13/2 and 3/20 and 120 and 1.5 and 12.5 stay");
        assert_eq!(r("12"), "[answer withheld]");
        assert_eq!(r("about 12cm, 答案是3/2"), "about [answer withheld]cm, 答案是[answer withheld]");
        assert_eq!(r("x12 and 112 and 0.12"), "x[answer withheld] and 112 and 0.12");
    }

    #[test]
    fn a_key_split_across_deltas_is_still_withheld() {
        let text = "So 3/4 ÷ 1/2 gives 3/2 which is 1 1/2 in all; 12 more";
        for split in 1..6 {
            let (out, _) = streamed(&keys(), text, split);
            assert_eq!(out, redact(text, &keys()), "split {split}");
            assert!(!out.contains("3/2 ") && !out.contains("12 more"), "{out}");
        }
    }
}
