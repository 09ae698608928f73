//! Phrase matching on learner and model text: one normalisation for every list of phrases
//! (confusion, follow-ups, answer-seeking, the eval's markers), so that "I’m lost" and
//! "I'm lost" are the same words everywhere.

/// Lowercases and folds typographic apostrophes and quotes to their ASCII forms.
pub fn normalize_phrase(text: &str) -> String {
    text.to_lowercase().replace(['’', '‘', 'ʼ'], "'").replace(['“', '”'], "\"")
}

/// Whether `text` holds any of `phrases` (written lowercase, with ASCII apostrophes).
pub fn contains_any(text: &str, phrases: &[&str]) -> bool {
    let t = normalize_phrase(text);
    phrases.iter().any(|p| t.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apostrophes_and_case_fold_the_same_way_for_every_phrase_list() {
        assert_eq!(normalize_phrase("I’m LOST, it ‘doesn’t’ “work”"), "i'm lost, it 'doesn't' \"work\"");
        assert!(contains_any("Just TELL me what’s the correct one", &["what's the correct"]));
        assert!(!contains_any("nothing here", &["what's the correct"]));
    }
}
