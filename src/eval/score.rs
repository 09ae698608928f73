//! Scoring: one check per expectation of a case, the pedagogical dimensions of the BEA 2025
//! shared task (MRBench), and the measures they use (Flesch–Kincaid grade, language).

use std::collections::BTreeMap;

use serde::Serialize;

use super::case::{Case, ReadingLevel, ToolExpect};
use crate::agent::ToolTrace;
use crate::agent::guard;
use crate::passport::Band;
use crate::text::{contains_any, flesch_kincaid_grade, plain_text};

/// What a case's run produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    /// One answer per turn.
    pub answers: Vec<String>,
    pub tools: Vec<ToolTrace>,
    /// Citations of the last turn.
    pub citations: Vec<String>,
    /// Skills with an open flag for the learner after the case.
    pub flags_open: Vec<String>,
    /// The largest prompt of any model call in the case (or the context of the offline engine).
    pub peak_prompt: usize,
    /// The plan's skip offer for the page, when there is a page.
    pub skip_offer: Option<bool>,
    /// The learner's band on the page's first skill (intro when off a page).
    pub band: Option<Band>,
    /// The accepted answers of the page's exercise (when the page is one), checked
    /// automatically.
    pub keys: Vec<String>,
    /// Diagnoses of the misconceptions the learner showed.
    pub diagnoses: Vec<String>,
    pub engines: Vec<String>,
    /// The last answer cites at least one component, and every id it cites is one of the
    /// course's.
    pub grounded: bool,
    /// Per turn: the mode the service chose, and what it did about failed checks.
    pub modes: Vec<String>,
    pub actions: Vec<Vec<String>>,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

fn check(name: &str, passed: bool, detail: impl Into<String>) -> Check {
    Check { name: name.into(), passed, detail: detail.into() }
}

const ENGLISH: &[&str] = &[
    "the", "a", "an", "and", "or", "of", "to", "in", "is", "it", "that", "this", "you", "your", "for", "on", "with",
    "as", "are", "be", "by", "at", "not", "can", "if", "so", "what", "how", "we", "i", "from", "have", "has", "do",
    "does",
];

/// The language of a text, as far as these checks need: `en` or `unknown`.
pub fn language(text: &str) -> &'static str {
    let words: Vec<String> = plain_text(text)
        .split_whitespace()
        .map(|w| w.to_lowercase().trim_matches(|c: char| !c.is_alphabetic()).to_owned())
        .collect();
    let hits = words.iter().filter(|w| ENGLISH.contains(&w.as_str())).count();
    if !words.is_empty() && hits * 100 >= words.len() * 12 { "en" } else { "unknown" }
}

const DECLINES: &[&str] = &[
    "does not cover",
    "doesn't cover",
    "not covered",
    "outside this course",
    "not part of this course",
    "isn't covered",
];
const REFUSALS: &[&str] = &[
    "won't give you the answer",
    "will not give you the answer",
    "can't give you the answer",
    "cannot give you the answer",
    "not going to give you the answer",
    "won't tell you the answer",
    "won't give the answer",
];
const GUIDANCE: &[&str] = &["hint", "next step", "try ", "example", "step by step", "step 1", "first,", "watch for"];
const ACTIONS: &[&str] =
    &["try ", "review ", "practise", "practice", "read ", "tell me what you tried", "work out", "check "];
const DISCOURAGING: &[&str] = &["stupid", "obviously", "you should know", "that's easy", "wrong!", "lazy"];
const SUPPORTIVE: &[&str] =
    &["let's", "you know", "help", "step by step", "well done", "good", "great", "you can", "you're", "ready"];

fn args_hold(t: &ToolTrace, e: &ToolExpect) -> Result<(), String> {
    let args: serde_json::Value = serde_json::from_str(&t.raw_arguments).unwrap_or(serde_json::Value::Null);
    let p = &e.args;
    for (k, v) in &p.equals {
        if &args[k] != v {
            return Err(format!("{k} is {} not {v}", args[k]));
        }
    }
    if let Some(s) = &p.skills_include
        && !args["skills"].as_array().is_some_and(|a| a.iter().any(|x| x == s))
        && args["skill"] != *s
    {
        return Err(format!("skills do not include {s}"));
    }
    if let Some(q) = &p.query_contains
        && !args["query"].as_str().is_some_and(|x| x.to_lowercase().contains(&q.to_lowercase()))
    {
        return Err(format!("query does not contain {q:?}"));
    }
    if let Some(l) = &p.level
        && args["level"] != *l
    {
        return Err(format!("level is {}", args["level"]));
    }
    if let Some(f) = &p.format
        && args["format"] != *f
    {
        return Err(format!("format is {}", args["format"]));
    }
    Ok(())
}

fn leaked_keys(o: &Observed) -> Vec<String> {
    o.keys
        .iter()
        .filter(|k| o.answers.iter().any(|a| guard::redact(a, &guard::Guarded::literal(vec![(*k).clone()])) != *a))
        .cloned()
        .collect()
}

fn names_mistake(answer: &str, word: Option<&str>, diagnoses: &[String]) -> bool {
    let lower = answer.to_lowercase();
    if let Some(w) = word
        && lower.contains(&w.to_lowercase())
    {
        return true;
    }
    diagnoses.iter().any(|d| {
        let words: Vec<String> = d
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 6)
            .map(str::to_owned)
            .collect();
        words.iter().filter(|w| lower.contains(w.as_str())).count() >= 2
    })
}

/// Every expectation of the case, checked.
pub fn checks(case: &Case, o: &Observed) -> Vec<Check> {
    let e = &case.expect;
    let last = o.answers.last().map(String::as_str).unwrap_or_default();
    let mut out = Vec::new();
    for t in &e.tools_called {
        let calls: Vec<&ToolTrace> = o.tools.iter().filter(|x| x.name == t.name).collect();
        let reasons: Vec<String> = calls.iter().filter_map(|c| args_hold(c, t).err()).collect();
        let passed = calls.iter().any(|c| args_hold(c, t).is_ok());
        let detail = if calls.is_empty() {
            "never called".into()
        } else if passed {
            "called".into()
        } else {
            reasons.join("; ")
        };
        out.push(check(&format!("tool {}", t.name), passed, detail));
    }
    for name in &e.tools_not_called {
        let n = o.tools.iter().filter(|x| &x.name == name).count();
        out.push(check(&format!("no tool {name}"), n == 0, format!("called {n} time(s)")));
    }
    if !e.cites_any.is_empty() {
        let hit = o.citations.iter().any(|c| e.cites_any.contains(c));
        out.push(check("cites", hit, format!("cited {:?}", o.citations)));
    }
    if !e.cites_none.is_empty() {
        let bad: Vec<&String> = o.citations.iter().filter(|c| e.cites_none.contains(c)).collect();
        out.push(check("does not cite", bad.is_empty(), format!("cited {bad:?}")));
    }
    if let Some(skill) = &e.flag {
        out.push(check(
            &format!("flag {skill}"),
            o.flags_open.contains(skill),
            format!("open flags: {:?}", o.flags_open),
        ));
    }
    if e.no_flag {
        out.push(check("no flag", o.flags_open.is_empty(), format!("open flags: {:?}", o.flags_open)));
    }
    let mut never_seen: Vec<String> = e
        .never
        .iter()
        .filter(|s| o.answers.iter().any(|a| a.to_lowercase().contains(&s.to_lowercase())))
        .cloned()
        .collect();
    never_seen.extend(leaked_keys(o));
    out.push(check(
        "never says",
        never_seen.is_empty(),
        if never_seen.is_empty() { "clean".into() } else { format!("said {never_seen:?}") },
    ));
    if let Some(want) = e.declined {
        let got = contains_any(last, DECLINES);
        out.push(check("declined", got == want, format!("declined: {got}")));
    }
    if let Some(want) = e.refuses_answer {
        let got = contains_any(last, REFUSALS) && leaked_keys(o).is_empty();
        out.push(check("refuses the answer", got == want, format!("refused: {got}")));
    }
    if let Some(want) = e.skip_offer {
        out.push(check("skip offer", o.skip_offer == Some(want), format!("offered: {:?}", o.skip_offer)));
    }
    if let Some(r) = &e.reading_level {
        let (max, grade) = (max_grade(r, o), flesch_kincaid_grade(last));
        out.push(check(
            "reading level",
            reading_level_holds(r, o, last),
            format!("grade {} (at most {max})", grade.map_or("n/a".into(), |g| format!("{g:.1}"))),
        ));
    }
    if let Some(max) = e.max_tokens {
        out.push(check("token budget", o.peak_prompt <= max, format!("peak prompt {} of {max}", o.peak_prompt)));
    }
    if let Some(lang) = &e.language {
        let got = language(last);
        out.push(check("language", got == lang, format!("detected {got}")));
    }
    if e.mistake.is_some() {
        let got = names_mistake(last, e.mistake.as_deref(), &o.diagnoses);
        out.push(check("names the mistake", got, if got { "named".to_string() } else { "not named".into() }));
    }
    out
}

/// The highest grade the case allows.
fn max_grade(r: &ReadingLevel, o: &Observed) -> f64 {
    match r {
        ReadingLevel::Max { max_grade } => *max_grade,
        ReadingLevel::Auto(_) => o.band.unwrap_or(Band::Intro).max_grade(),
    }
}

fn reading_level_holds(r: &ReadingLevel, o: &Observed, answer: &str) -> bool {
    flesch_kincaid_grade(answer).is_some_and(|g| g <= max_grade(r, o))
}

/// The MRBench dimensions (which the LLM judge scores too).
pub const MRBENCH: [&str; 7] = [
    "mistake_identification",
    "mistake_location",
    "not_revealing_answer",
    "providing_guidance",
    "actionability",
    "coherence",
    "encouraging_tone",
];

/// Every dimension: MRBench's, then what the service guarantees whatever the model does — the
/// answer cites the course and only the course, an uncovered question is declined, an
/// exercise's answer is refused, the reading level fits the learner.
pub const DIMENSIONS: [&str; 11] = [
    "mistake_identification",
    "mistake_location",
    "not_revealing_answer",
    "providing_guidance",
    "actionability",
    "coherence",
    "encouraging_tone",
    "grounded",
    "declines_uncovered",
    "refuses_answer",
    "reading_level",
];

/// Each dimension: `Some(passed)`, or `None` where the case gives it nothing to judge.
pub fn dimensions(case: &Case, o: &Observed) -> BTreeMap<&'static str, Option<bool>> {
    let e = &case.expect;
    let last = o.answers.last().map(String::as_str).unwrap_or_default();
    let declined = e.declined == Some(true);
    let mistake = e.mistake.is_some();
    let mut d = BTreeMap::new();
    d.insert("mistake_identification", mistake.then(|| names_mistake(last, e.mistake.as_deref(), &o.diagnoses)));
    d.insert(
        "mistake_location",
        mistake.then(|| {
            contains_any(
                last,
                &["your earlier answer", "you answered", "your answer", "in question", "from your earlier"],
            ) && names_mistake(last, e.mistake.as_deref(), &o.diagnoses)
        }),
    );
    // the guard having had to withhold an answer means the tutor tried to give it
    d.insert(
        "not_revealing_answer",
        (!o.keys.is_empty() || e.refuses_answer.is_some())
            .then(|| leaked_keys(o).is_empty() && !o.answers.iter().any(|a| a.contains(guard::WITHHELD))),
    );
    d.insert("providing_guidance", (!declined).then(|| contains_any(last, GUIDANCE)));
    d.insert("actionability", (!declined).then(|| contains_any(last, ACTIONS)));
    d.insert(
        "coherence",
        (!declined).then(|| {
            let words = plain_text(last).split_whitespace().count();
            !o.citations.is_empty() && (15..=700).contains(&words)
        }),
    );
    d.insert(
        "encouraging_tone",
        Some(!contains_any(last, DISCOURAGING) && (declined || contains_any(last, SUPPORTIVE))),
    );
    d.insert("grounded", (!declined).then_some(o.grounded));
    d.insert("declines_uncovered", e.declined.map(|want| contains_any(last, DECLINES) == want));
    d.insert(
        "refuses_answer",
        e.refuses_answer.map(|want| (contains_any(last, REFUSALS) && leaked_keys(o).is_empty()) == want),
    );
    d.insert("reading_level", e.reading_level.as_ref().map(|r| reading_level_holds(r, o, last)));
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::case::{ArgPredicates, Expect};

    fn case(expect: Expect) -> Case {
        Case {
            id: "t".into(),
            description: String::new(),
            learner: Default::default(),
            page: None,
            turns: vec!["q".into()],
            expect,
            file: Default::default(),
        }
    }

    fn observed(answer: &str) -> Observed {
        Observed { answers: vec![answer.into()], band: Some(Band::Intro), ..Default::default() }
    }

    fn passed(c: &Case, o: &Observed, name: &str) -> bool {
        checks(c, o).iter().find(|x| x.name == name).unwrap_or_else(|| panic!("no check {name}")).passed
    }

    fn trace(name: &str, args: &str) -> ToolTrace {
        ToolTrace {
            name: name.into(),
            by: "model",
            ok: true,
            arguments: args.into(),
            result: String::new(),
            raw_arguments: args.into(),
        }
    }

    const GOOD: &str =
        "Let's take it step by step. You cut the pizza into halves. Count the halves. Try the next one [a-b].";

    #[test]
    fn tools_called_with_predicates() {
        let e = Expect {
            tools_called: vec![ToolExpect {
                name: "retrieve_components".into(),
                args: ArgPredicates {
                    skills_include: Some("f.d".into()),
                    query_contains: Some("flip".into()),
                    ..Default::default()
                },
            }],
            tools_not_called: vec!["flag_struggle".into()],
            ..Default::default()
        };
        let c = case(e);
        let mut good = observed(GOOD);
        good.tools = vec![trace("retrieve_components", r#"{"query": "why FLIP", "skills": ["f.d"]}"#)];
        let mut bad = observed(GOOD);
        bad.tools =
            vec![trace("retrieve_components", r#"{"query": "why", "skills": ["x.y"]}"#), trace("flag_struggle", "{}")];
        assert!(passed(&c, &good, "tool retrieve_components") && passed(&c, &good, "no tool flag_struggle"));
        assert!(!passed(&c, &bad, "tool retrieve_components") && !passed(&c, &bad, "no tool flag_struggle"));
    }

    #[test]
    fn citations_flags_never_and_declines() {
        let c = case(Expect {
            cites_any: vec!["a-b".into()],
            cites_none: vec!["c-d".into()],
            flag: Some("f.d".into()),
            never: vec!["secret".into()],
            declined: Some(false),
            ..Default::default()
        });
        let mut good = observed(GOOD);
        good.citations = vec!["a-b".into()];
        good.flags_open = vec!["f.d".into()];
        let mut bad = observed("This course does not cover that. The secret is out.");
        bad.citations = vec!["c-d".into()];
        for name in ["cites", "does not cite", "flag f.d", "never says", "declined"] {
            assert!(passed(&c, &good, name), "{name}");
            assert!(!passed(&c, &bad, name), "{name}");
        }
        let c = case(Expect { no_flag: true, ..Default::default() });
        assert!(passed(&c, &observed(GOOD), "no flag"));
        assert!(!passed(&c, &good, "no flag"));
    }

    #[test]
    fn answer_keys_refusals_and_skip_offers() {
        let c = case(Expect { refuses_answer: Some(true), skip_offer: Some(true), ..Default::default() });
        let mut good = observed("I won't give you the answer, but here is a hint: count the halves.");
        good.keys = vec!["3/2".into()];
        good.skip_offer = Some(true);
        let mut bad = observed("Sure: it is 3/2.");
        bad.keys = vec!["3/2".into()];
        bad.skip_offer = Some(false);
        for name in ["refuses the answer", "never says", "skip offer"] {
            assert!(passed(&c, &good, name), "{name}");
            assert!(!passed(&c, &bad, name), "{name}");
        }
        assert_eq!(dimensions(&c, &bad)["not_revealing_answer"], Some(false));
        assert_eq!(dimensions(&c, &good)["not_revealing_answer"], Some(true));
        let mut saved = observed("Sure: it is [answer withheld].");
        saved.keys = vec!["3/2".into()];
        assert_eq!(dimensions(&c, &saved)["not_revealing_answer"], Some(false), "the guard saved it, the tutor tried");
    }

    #[test]
    fn reading_level_tokens_language_and_mistakes() {
        let c = case(Expect {
            reading_level: Some(ReadingLevel::Auto("auto".into())),
            max_tokens: Some(1000),
            language: Some("en".into()),
            mistake: Some("reciprocal".into()),
            ..Default::default()
        });
        let mut good = observed(
            "Watch for this: you used the first fraction, not the reciprocal of the second. Flip the second one. Then multiply. Try it now.",
        );
        good.peak_prompt = 900;
        let mut bad = observed(
            "Notwithstanding multiplicative considerations, reciprocation constitutes fundamental transformational methodology.",
        );
        bad.peak_prompt = 1200;
        for name in ["reading level", "token budget", "language", "names the mistake"] {
            assert!(passed(&c, &good, name), "{name}");
            assert!(!passed(&c, &bad, name), "{name}");
        }
        assert_eq!(language("Der Hund läuft schnell über die Straße und bellt laut."), "unknown");
        let dims = dimensions(&c, &good);
        assert_eq!(dims["mistake_identification"], Some(true));
        assert_eq!(dims["providing_guidance"], Some(true));
        assert_eq!(dimensions(&c, &bad)["providing_guidance"], Some(false));
        assert_eq!(dims["actionability"], Some(true));
        assert_eq!(dimensions(&c, &bad)["encouraging_tone"], Some(false));
    }
}
