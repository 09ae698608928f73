//! The two sample courses: they load, meet the shape the product promises (skills, levels,
//! formats, exercises with misconceptions), ingest without leaking answer keys, and BM25 alone
//! finds the right component for learners' questions (recall@5 ≥ 0.8).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde::Deserialize;
use tutor::content::{Format, Level};
use tutor::retrieval::SearchFilter;

#[test]
fn both_sample_courses_load_and_have_the_promised_shape() {
    let lib = load(&sample_content());
    assert!(lib.courses.contains_key("fractions") && lib.courses.contains_key("security"), "{:?}", lib.courses.keys());
    for course in lib.courses.values() {
        let comps: Vec<_> = course.components.iter().map(|id| &lib.components[id]).collect();
        let levels: BTreeSet<Level> = comps.iter().map(|c| c.level).collect();
        let formats: BTreeSet<Format> = comps.iter().map(|c| c.format).collect();
        let exercises: Vec<_> = comps.iter().filter(|c| c.format == Format::Exercise).collect();
        assert!(course.skills.len() >= 8, "{}: {} skills", course.id, course.skills.len());
        assert!(comps.len() >= 30, "{}: {} components", course.id, comps.len());
        assert_eq!(levels.len(), 4, "{}: levels {levels:?}", course.id);
        assert!(formats.len() >= 4, "{}: formats {formats:?}", course.id);
        assert!(!exercises.is_empty());
        for ex in &exercises {
            let with_misconceptions = ex
                .items
                .iter()
                .filter(|i| lib.answer_key(&ex.id, &i.id).is_some_and(|k| !k.misconceptions.is_empty()))
                .count();
            assert!(with_misconceptions > 0, "{} has no misconceptions", ex.id);
        }
        let has_prereqs = course.skills.iter().filter(|s| !lib.skills[*s].prerequisites.is_empty()).count();
        assert!(has_prereqs >= course.skills.len() / 2, "{}: a skill graph needs prerequisites", course.id);
    }
}

#[tokio::test]
async fn sample_courses_ingest_and_no_answer_key_reaches_the_index() {
    let content = sample_content();
    let lib = load(&content);
    let (cfg, _data) = config(&content);

    let report = ingest_with(&cfg, &lib, None).await;
    let r = retriever(&cfg, None);
    let payloads = serde_json::to_string(&r.store().unwrap().payloads().unwrap()).unwrap();

    assert_eq!(report.components, lib.components.len());
    assert!(report.chunks >= report.components);
    let mut leaks = Vec::new();
    for (component, item, key) in lib.answer_keys() {
        let mut secrets: Vec<&str> = key.hints.iter().map(String::as_str).collect();
        secrets.extend(key.misconceptions.iter().map(|m| m.diagnosis.as_str()));
        secrets.extend(key.explanation.as_deref());
        // short answers ("b", "3/4") may legitimately appear elsewhere; long ones may not
        secrets.extend(std::iter::once(key.answer.as_str()).filter(|a| a.len() >= 20));
        for s in secrets {
            let needle = serde_json::to_string(s).unwrap();
            if payloads.contains(needle.trim_matches('"')) {
                leaks.push(format!("{component}/{item}: {s}"));
            }
        }
    }
    assert!(leaks.is_empty(), "answer-key text found in the index:\n{}", leaks.join("\n"));
}

#[derive(Deserialize)]
struct Pair {
    question: String,
    skill: String,
    /// Only the dev set names the component a teacher would point to.
    component: Option<String>,
}

#[tokio::test]
async fn bm25_recall_at_5_on_learner_questions_is_at_least_0_8() {
    let content = sample_content();
    let lib = load(&content);
    let (cfg, _data) = config(&content);
    ingest_with(&cfg, &lib, None).await;
    let r = retriever(&cfg, None);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("evals/retrieval");

    let mut per_course: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let pairs: Vec<Pair> = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for p in pairs {
            let Some(expected) = p.component else { continue };
            assert!(
                lib.components.keys().any(|id| id.as_str() == expected),
                "{}: unknown expected component {expected}",
                path.display(),
            );
            let course =
                lib.skills.iter().find(|(id, _)| id.as_str() == p.skill).expect("a known skill").1.course.clone();
            // a learner asks from inside a course page, so the course is known
            let filter = SearchFilter { course: Some(course.clone()), ..Default::default() };
            let hits = search(&r, &p.question, filter, 5).await;
            let found = hits.iter().any(|h| h.component_id == expected);
            let e = per_course.entry(course.clone()).or_default();
            e.0 += usize::from(found);
            e.1 += 1;
            if !found {
                let got: Vec<&str> = hits.iter().map(|h| h.component_id.as_str()).collect();
                misses.push(format!("  [{course}] {:?}: expected {expected}, got {got:?}", p.question));
            }
        }
    }
    let (hit, total) = per_course.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let recall = hit as f64 / total as f64;
    println!("BM25 recall@5 over {total} learner questions: {recall:.3}");
    for (c, (h, t)) in &per_course {
        println!("  {c}: {h}/{t} = {:.3}", *h as f64 / *t as f64);
    }
    println!("misses:\n{}", misses.join("\n"));
    assert!(total >= 30, "only {total} question pairs");
    assert!(recall >= 0.8, "recall@5 {recall:.3} below 0.8");
}
