//! Text measures shared by the service and the eval suite: phrase matching with one
//! normalisation for every list of phrases (confusion, follow-ups, answer-seeking, the eval's
//! markers), so that "I’m lost" and "I'm lost" are the same words everywhere; and readability
//! (the Flesch–Kincaid grade of what a reader reads).

/// Lowercases and folds typographic apostrophes and quotes to their ASCII forms.
pub fn normalize_phrase(text: &str) -> String {
    text.to_lowercase().replace(['’', '‘', 'ʼ'], "'").replace(['“', '”'], "\"")
}

/// Whether `text` holds any of `phrases` (written lowercase, with ASCII apostrophes).
pub fn contains_any(text: &str, phrases: &[&str]) -> bool {
    let t = normalize_phrase(text);
    phrases.iter().any(|p| t.contains(p))
}

/// Text a reader reads: no citations, markdown marks, code or the engine's footer.
pub fn plain_text(answer: &str) -> String {
    let mut out = String::new();
    for line in answer.lines() {
        let l = line.trim();
        if l.starts_with("_(") || l.starts_with("```") || l.starts_with('|') {
            continue;
        }
        let l = l.trim_start_matches(['#', '-', '*', '>', ' ']);
        let mut kept = String::new();
        let mut depth = 0;
        for c in l.chars() {
            match c {
                '[' => depth += 1,
                ']' if depth > 0 => depth -= 1,
                '*' | '_' | '`' => {}
                _ if depth == 0 => kept.push(c),
                _ => {}
            }
        }
        let kept = kept.trim();
        if !kept.is_empty() {
            out.push_str(kept);
            // a line without an end mark (a heading, a list item) still ends a sentence
            if !kept.ends_with(['.', '!', '?', ':']) {
                out.push('.');
            }
            out.push('\n');
        }
    }
    out
}

fn syllables(word: &str) -> usize {
    let w: Vec<char> = word.to_lowercase().chars().filter(|c| c.is_ascii_alphabetic()).collect();
    if w.is_empty() {
        return 0;
    }
    let vowel = |c: char| "aeiouy".contains(c);
    let mut count = 0;
    let mut prev = false;
    for &c in &w {
        let v = vowel(c);
        if v && !prev {
            count += 1;
        }
        prev = v;
    }
    // a silent final e ("make"), but not "-le" ("table")
    if w.len() > 2
        && w[w.len() - 1] == 'e'
        && !vowel(w[w.len() - 2])
        && (w[w.len() - 2] != 'l' || vowel(w[w.len() - 3]))
    {
        count -= 1;
    }
    count.max(1)
}

/// The Flesch–Kincaid grade level: `0.39 × words/sentence + 11.8 × syllables/word − 15.59`.
/// `None` for a text without words.
pub fn flesch_kincaid_grade(text: &str) -> Option<f64> {
    let plain = plain_text(text);
    let words: Vec<&str> = plain.split_whitespace().filter(|w| w.chars().any(|c| c.is_alphabetic())).collect();
    if words.is_empty() {
        return None;
    }
    let sentences =
        plain.split(['.', '!', '?', ':', ';']).filter(|s| s.chars().any(char::is_alphabetic)).count().max(1);
    let syl: usize = words.iter().map(|w| syllables(w)).sum();
    Some(0.39 * words.len() as f64 / sentences as f64 + 11.8 * syl as f64 / words.len() as f64 - 15.59)
}

/// A number written in text: a whole number, a decimal, a fraction or a mixed number
/// (`12`, `-0.375`, `3/8`, `2 1/2`), with where it stands and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Number {
    /// Byte range in the text.
    pub start: usize,
    pub end: usize,
    pub value: f64,
}

impl Number {
    /// The number as written.
    pub fn text<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start..self.end]
    }
}

/// The numbers in `text`, in order. A number inside a word or an identifier (`q2`, `abc123`,
/// `v1.2.3`) is not one; a fraction with a zero denominator has no value and is left out.
pub fn numbers(text: &str) -> Vec<Number> {
    let b = text.as_bytes();
    let digits = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut out: Vec<Number> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let glued = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.');
        if !b[i].is_ascii_digit() || glued {
            i += 1;
            continue;
        }
        let start = if i > 0 && b[i - 1] == b'-' && (i < 2 || !b[i - 2].is_ascii_alphanumeric()) { i - 1 } else { i };
        let mut end = digits(i);
        let whole: f64 = text[i..end].parse().unwrap_or(0.0);
        let mut value = whole;
        if end + 1 < b.len() && b[end] == b'.' && b[end + 1].is_ascii_digit() {
            let e = digits(end + 1);
            value = text[i..e].parse().unwrap_or(value);
            end = e;
        } else if end + 1 < b.len() && b[end] == b'/' && b[end + 1].is_ascii_digit() {
            let e = digits(end + 1);
            let den: f64 = text[end + 1..e].parse().unwrap_or(0.0);
            if den == 0.0 {
                i = e;
                continue;
            }
            value = whole / den;
            end = e;
        }
        if end < b.len()
            && (b[end].is_ascii_alphabetic()
                || b[end] == b'_'
                || (b[end] == b'.' && end + 1 < b.len() && b[end + 1].is_ascii_digit()))
        {
            i = end;
            continue;
        }
        let negative = start < i;
        // a whole number, a space and a fraction: a mixed number
        if let Some(prev) = out.last_mut()
            && prev.end + 1 == start
            && b[prev.end] == b' '
            && !text[prev.start..prev.end].contains(['.', '/'])
            && text[start..end].contains('/')
            && value < 1.0
            && !negative
        {
            prev.value += if prev.value < 0.0 { -value } else { value };
            prev.end = end;
        } else {
            out.push(Number { start, end, value: if negative { -value } else { value } });
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_found_with_their_values() {
        let t = "3/8 is 0.375, and 2 1/2 - 12 = -9 1/2; q2 and v1.2 are not numbers, 5/0 has none.";
        let found: Vec<(&str, f64)> = numbers(t).iter().map(|n| (n.text(t), n.value)).collect();
        assert_eq!(found, vec![("3/8", 0.375), ("0.375", 0.375), ("2 1/2", 2.5), ("12", 12.0), ("-9 1/2", -9.5)]);
    }

    #[test]
    fn apostrophes_and_case_fold_the_same_way_for_every_phrase_list() {
        assert_eq!(normalize_phrase("I’m LOST, it ‘doesn’t’ “work”"), "i'm lost, it 'doesn't' \"work\"");
        assert!(contains_any("Just TELL me what’s the correct one", &["what's the correct"]));
        assert!(!contains_any("nothing here", &["what's the correct"]));
    }

    #[test]
    fn grades_follow_flesch_kincaid() {
        let easy = flesch_kincaid_grade("The cat sat on the mat. The dog ran to the cat.").unwrap();
        let hard = flesch_kincaid_grade(
            "Multiplicative inverses facilitate computational simplification of rational expressions considerably.",
        )
        .unwrap();
        assert!(easy < 2.0, "{easy}");
        assert!(hard > 16.0, "{hard}");
        assert_eq!(syllables("table"), 2);
        assert_eq!(syllables("make"), 1);
        assert_eq!(syllables("fraction"), 2);
        assert_eq!(plain_text("## Title\n**Bold** text [a-b].\n_(footer)_"), "Title.\nBold text .\n");
    }
}
