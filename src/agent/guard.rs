//! The last line of defence for answer keys: whatever a model writes, an exercise's answer
//! never reaches the learner. Answer keys are never in a tool result (they are not indexed and
//! not part of a component); this guard also redacts them from streamed text, holding back just
//! enough characters that a key split across two deltas is still caught.

use crate::content::{Format, Library, SkillId};

/// What replaces a withheld answer.
pub const WITHHELD: &str = "[answer withheld]";

/// The answers to guard for a page: every accepted answer of the exercises on its skills
/// that is specific enough to find in text: it holds a digit or a `/`, or is at least 12
/// characters long. (A bare "no" or "less" cannot be told apart from ordinary words.) Off a
/// page nothing is guarded: there is no exercise in front of the learner, and guarding every
/// answer of the course would blank out "1/2" from every explanation.)
pub fn guarded_keys(lib: &Library, skills: &[SkillId]) -> Vec<String> {
    specific(
        lib.answer_keys()
            .filter(|(c, _, _)| {
                lib.components
                    .get(*c)
                    .is_some_and(|c| c.format == Format::Exercise && c.skills.iter().any(|s| skills.contains(s)))
            })
            .map(|(_, _, k)| k),
    )
}

/// The answers of the exercise the learner is on (when the page is one), as specific as
/// [`guarded_keys`] needs them: what course text shown on that page must not contain.
pub fn page_exercise_keys(lib: &Library, page: Option<&crate::content::Component>) -> Vec<String> {
    let Some(page) = page.filter(|p| p.format == Format::Exercise) else { return Vec::new() };
    specific(page.items.iter().filter_map(|i| lib.answer_key(&page.id, &i.id)))
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

/// Replaces every guarded key standing on its own (not inside a longer number or word).
pub fn redact(text: &str, keys: &[String]) -> String {
    if keys.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let bytes = text.as_bytes();
    'outer: while i < text.len() {
        let before = text[..i].chars().next_back();
        for k in keys {
            // a number stands alone unless digits go on ("12cm" gives 12 away, "120" does not);
            // a word answer, unless letters go on
            let numeric = |edge: Option<char>| edge.is_some_and(|c| c.is_ascii_digit());
            let joins = |c: char, at_edge: Option<char>| {
                if numeric(at_edge) { c.is_ascii_digit() || c == '/' } else { is_word(c) }
            };
            if before.is_some_and(|c| joins(c, k.chars().next()) || (c == '.' && numeric(k.chars().next()))) {
                continue;
            }
            let end = i + k.len();
            if end <= text.len() && bytes[i..end].eq_ignore_ascii_case(k.as_bytes()) && text.is_char_boundary(end) {
                let rest = &text[end..];
                let mut next = rest.chars();
                let after_ok = match next.next() {
                    None => true,
                    // "12." ends a sentence, "1.5" continues a number
                    Some('.') | Some(',') => next.next().is_none_or(|c| !c.is_ascii_digit()),
                    Some(c) => !joins(c, k.chars().next_back()),
                };
                if after_ok {
                    out.push_str(WITHHELD);
                    i = end;
                    continue 'outer;
                }
            }
        }
        let c = text[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Redacts a stream of text deltas.
pub struct Redactor {
    keys: Vec<String>,
    /// Characters held back: the longest key and the character after it.
    hold: usize,
    pending: String,
}

impl Redactor {
    pub fn new(keys: Vec<String>) -> Self {
        let hold = keys.iter().map(|k| k.chars().count()).max().map_or(0, |m| m + 2);
        Self { keys, hold, pending: String::new() }
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
            // a key with a space in it ("1 1/2") may start before the cut and run past it
            let straddling = self.keys.iter().find_map(|k| {
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
        redact(&ready, &self.keys)
    }

    /// Everything still held.
    pub fn finish(&mut self) -> String {
        redact(&std::mem::take(&mut self.pending), &self.keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        vec!["1 1/2".into(), "3/2".into(), "12".into()]
    }

    #[test]
    fn keys_standing_alone_are_withheld_and_others_kept() {
        let r = |t: &str| redact(t, &keys());
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
            let mut red = Redactor::new(keys());
            let mut out = String::new();
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(split) {
                out.push_str(&red.push(&piece.iter().collect::<String>()));
            }
            out.push_str(&red.finish());
            assert_eq!(out, redact(text, &keys()), "split {split}");
            assert!(!out.contains("3/2 ") && !out.contains("12 more"), "{out}");
        }
    }
}
