//! After the model, before its answer is final: the service checks what the model wrote,
//! whatever model it is. An answer must be grounded (cite at least one component the turn
//! drew on, and nothing else), give away no exercise answer, read at the learner's level,
//! say it will not give the answer when that was asked, and name the mistake the learner's
//! stated answer shows. What a model can fix gets one repair request; what the service can say
//! itself, it adds.

use std::collections::BTreeSet;

use serde::Serialize;

use super::guard::WITHHELD;
use super::policy::{Diagnosis, Mode, stems};
use crate::content::{Component, ComponentId, text_enum};
use crate::passport::Band;
use crate::text::{contains_any, flesch_kincaid_grade};

text_enum!(
    /// A check on a model's answer.
    CheckName, "check" {
        Grounded => "grounded",
        NoAnswer => "no_answer",
        Level => "level",
        NoMarkup => "no_markup",
        Refuses => "refuses",
        NamesMistake => "names_mistake",
        NoPrompt => "no_prompt",
    }
);

/// One check's result, as the `done` event reports it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CheckReport {
    pub check: CheckName,
    pub passed: bool,
    pub detail: String,
}

/// How far above the band's grade an answer may read before it is rewritten.
pub const LEVEL_SLACK: f64 = 2.0;

/// Phrases that say the tutor will not give the answer.
pub const REFUSALS: &[&str] = &[
    "won't give you the answer",
    "will not give you the answer",
    "can't give you the answer",
    "cannot give you the answer",
    "not going to give you the answer",
    "won't tell you the answer",
    "won't give the answer",
];

/// What the checks hold an answer to.
pub struct Expect<'a> {
    /// The components the answer may cite: what the turn retrieved and the page.
    pub allowed: &'a BTreeSet<ComponentId>,
    pub band: Band,
    pub mode: Mode,
    /// Answers the guard withheld from the text as it streamed.
    pub withheld: usize,
    /// Tool-call markup removed from the text that could not be run.
    pub unparsed_markup: usize,
    pub diagnosis: Option<&'a Diagnosis>,
    /// A known mistake from the learner's earlier answers, when the message states none.
    pub earlier_mistake: Option<&'a str>,
    /// The tutor's system prompt, which an answer must not repeat.
    pub prompt: &'a str,
}

/// Words in a row an answer may share with the tutor's prompt.
pub const PROMPT_RUN: usize = 8;

/// Whether `answer` repeats `PROMPT_RUN` words in a row of `prompt` (case and punctuation
/// aside): a model that prints its instructions.
pub fn repeats_prompt(answer: &str, prompt: &str) -> bool {
    let words = |t: &str| -> Vec<String> {
        t.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
    };
    let (a, p) = (words(answer), words(prompt));
    if a.len() < PROMPT_RUN {
        return false;
    }
    let runs: std::collections::HashSet<&[String]> = p.windows(PROMPT_RUN).collect();
    a.windows(PROMPT_RUN).any(|w| runs.contains(w))
}

/// Every `[id]` written in a text, as written (whether or not the course has it).
pub fn bracketed_ids(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in text.split('[').skip(1) {
        if let Some((id, _)) = part.split_once(']')
            && ComponentId::parse(id.trim()).is_ok()
            && id.contains('-')
            && !out.iter().any(|o| o == id.trim())
        {
            out.push(id.trim().to_owned());
        }
    }
    out
}

/// The checks of `answer`.
pub fn check(answer: &str, e: &Expect<'_>) -> Vec<CheckReport> {
    let mut out = Vec::new();
    let report = |check, passed, detail: String| CheckReport { check, passed, detail };
    let cited = bracketed_ids(answer);
    let outside: Vec<&String> = cited.iter().filter(|c| !e.allowed.iter().any(|a| a == c.as_str())).collect();
    let inside = cited.len() - outside.len();
    out.push(report(
        CheckName::Grounded,
        inside > 0 && outside.is_empty(),
        if outside.is_empty() {
            format!("cites {inside} component(s) the turn retrieved")
        } else {
            format!(
                "cites {} not retrieved: {}",
                outside.len(),
                outside.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            )
        },
    ));
    out.push(report(
        CheckName::NoAnswer,
        e.withheld == 0 && !answer.contains(WITHHELD),
        format!("{} exercise answer(s) withheld from the text", e.withheld),
    ));
    let grade = flesch_kincaid_grade(answer).unwrap_or(0.0);
    let max = e.band.max_grade() + LEVEL_SLACK;
    out.push(report(
        CheckName::Level,
        grade <= max,
        format!("reads at grade {grade:.1}; the {} band allows up to {max:.0}", e.band.as_str()),
    ));
    out.push(report(
        CheckName::NoMarkup,
        e.unparsed_markup == 0,
        format!("{} piece(s) of tool-call markup removed", e.unparsed_markup),
    ));
    let echoes = repeats_prompt(answer, e.prompt);
    out.push(report(
        CheckName::NoPrompt,
        !echoes,
        if echoes { "repeats the tutor's instructions".into() } else { "does not repeat the instructions".into() },
    ));
    if e.mode == Mode::RefuseAnswer {
        out.push(report(CheckName::Refuses, contains_any(answer, REFUSALS), "says it will not give the answer".into()));
    }
    if let Some(d) = e.diagnosis.filter(|d| d.mistake.is_some()) {
        out.push(report(CheckName::NamesMistake, names_mistake(answer, d), format!("about \"{}\"", d.response)));
    } else if let Some(m) = e.earlier_mistake {
        out.push(report(
            CheckName::NamesMistake,
            names_diagnosis(answer, m),
            "from the learner's earlier answers".into(),
        ));
    }
    out
}

/// Whether the answer names the mistake: its wrong answer, or two of the diagnosis' key words
/// (all of them when it has fewer).
pub fn names_mistake(answer: &str, d: &Diagnosis) -> bool {
    let lower = answer.to_lowercase();
    if lower.contains(&format!("\"{}\"", d.response.to_lowercase()))
        || lower.contains(&format!("“{}”", d.response.to_lowercase()))
    {
        return true;
    }
    names_diagnosis(answer, d.mistake.as_deref().unwrap_or_default())
}

/// Whether the answer names a diagnosis: two of its key words (all of them when it has fewer).
pub fn names_diagnosis(answer: &str, diagnosis: &str) -> bool {
    let lower = answer.to_lowercase();
    let words: BTreeSet<String> = diagnosis
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 6)
        .map(str::to_owned)
        .collect();
    let needed = words.len().min(2);
    needed > 0 && words.iter().filter(|w| lower.contains(w.as_str())).count() >= needed
}

/// The components an answer that cites nothing draws on: those sharing at least half of its
/// content words (by a crude common stem), best first, at most two. An answer written from the
/// course's material shares most of its words with it (a paraphrase of the page's explanation:
/// 0.62 here); one that wanders off does not (0.05 against another course's page).
pub fn supporting<'a>(answer: &str, candidates: impl Iterator<Item = &'a Component>) -> Vec<ComponentId> {
    let words = stems(answer);
    if words.len() < 6 {
        return Vec::new();
    }
    let mut scored: Vec<(usize, &Component)> = candidates
        .map(|c| (stems(&format!("{} {}", c.title, c.retrievable_text())).intersection(&words).count(), c))
        .filter(|(shared, _)| shared * 2 >= words.len())
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    scored.into_iter().take(2).map(|(_, c)| c.id.clone()).collect()
}

/// Whether a check failed that no repair may fix: the answer is replaced by the offline one.
pub fn beyond_repair(reports: &[CheckReport]) -> Option<&CheckReport> {
    reports.iter().find(|r| !r.passed && r.check == CheckName::NoPrompt)
}

/// The failed checks a model can fix with one repair request.
pub fn repairable(reports: &[CheckReport]) -> Vec<&CheckReport> {
    reports
        .iter()
        .filter(|r| !r.passed && matches!(r.check, CheckName::Grounded | CheckName::NoAnswer | CheckName::Level))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_supported_by_the_material_it_paraphrases_and_not_by_other_material() {
        let lib = crate::content::load_library(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/content")),
            &crate::content::LoadOptions::default(),
        )
        .unwrap();
        let c = |id: &str| lib.components.get(&ComponentId::parse(id).unwrap()).unwrap();
        // a real small model's answer (Qwen2.5-Coder-1.5B), which cited nothing
        let answer = "Dividing by a fraction gives a bigger number because fractions represent parts of a whole. \
            When you divide a whole by a smaller fraction, you are essentially asking, \"How many parts of the smaller \
            fraction fit into the whole?\" This results in more parts, making the number larger than if you were \
            dividing by a larger fraction.";
        let page = c("fractions-divide-explain-intro");
        let other = c("security-phishing-recognize-explain-intro");
        assert_eq!(supporting(answer, [page, other].into_iter()), vec![page.id.clone()]);
        assert!(supporting(answer, [other].into_iter()).is_empty());
        assert!(supporting("Yes, right.", [page].into_iter()).is_empty());
    }

    #[test]
    fn citations_inside_and_outside_the_retrieved_set_are_told_apart() {
        let allowed: BTreeSet<ComponentId> = [ComponentId::parse("a-b").unwrap()].into_iter().collect();
        let e = Expect {
            allowed: &allowed,
            band: Band::Proficient,
            mode: Mode::Normal,
            withheld: 0,
            unparsed_markup: 0,
            diagnosis: None,
            earlier_mistake: None,
            prompt: "You are the tutor inside a course page. Never give the answer to an exercise item.",
        };
        let grounded = |t: &str| check(t, &e).iter().find(|r| r.check == CheckName::Grounded).unwrap().passed;
        assert!(grounded("See [a-b]."));
        assert!(!grounded("See [a-b] and [made-up]."));
        assert!(!grounded("No citation at all."));
        assert!(grounded("Ignore [1] and [note] but see [a-b]."));
    }

    #[test]
    fn an_answer_that_repeats_eight_words_of_the_prompt_is_caught() {
        let prompt = "You are the tutor inside a course page. Never give the answer to an exercise item.";
        assert!(repeats_prompt("My rules: you are the TUTOR inside a course page, never give...", prompt));
        assert!(!repeats_prompt("I'm the tutor here; I won't give the answer to this item.", prompt));
        assert!(!repeats_prompt("Short.", prompt));
    }
}
