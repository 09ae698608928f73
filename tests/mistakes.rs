//! Mistakes stated in chat are named, measured on held-out messages (`tests/mistakes/chat.yaml`,
//! written before the detector and not used to tune it): a learner on a content page says what
//! they got for an item of an exercise on the page's skills, and the tutor names the mistake.
//! Before the service diagnosed stated answers, the offline engine named 5 of these 12, by luck
//! of which course text it showed.

mod common;

use common::*;
use serde_json::{Value, json};

/// The item's authored diagnosis of a wrong answer.
fn diagnosis_of(lib: &tutor::content::Library, component: &str, item: &str, response: &str) -> String {
    let key = lib.answer_key(&tutor::content::ComponentId::parse(component).unwrap(), item).unwrap();
    key.misconceptions.iter().find(|m| m.response == response).unwrap().diagnosis.clone()
}

/// Whether an answer names a mistake: two of the diagnosis' words of six letters or more (all
/// of them when it has fewer).
fn names(answer: &str, diagnosis: &str) -> bool {
    let lower = answer.to_lowercase();
    let words: std::collections::BTreeSet<String> = diagnosis
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 6)
        .map(str::to_owned)
        .collect();
    words.iter().filter(|w| lower.contains(w.as_str())).count() >= words.len().min(2)
}

#[tokio::test]
async fn the_offline_engine_names_the_mistake_in_held_out_chat_messages() {
    let app = spawn_sample_app(|_| {}).await;
    let lib = load(&sample_content());
    let cases: Vec<Value> = serde_yaml::from_str(
        &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mistakes/chat.yaml"))
            .unwrap(),
    )
    .unwrap();
    let (mut detected, mut named) = (0, 0);
    let mut missed = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        let d = chat(
            &app,
            json!({"learner_id": format!("held-out-{n}"), "component_id": c["page"], "message": c["message"]}),
        )
        .await;
        let want = diagnosis_of(
            &lib,
            c["component"].as_str().unwrap(),
            c["item"].as_str().unwrap(),
            c["response"].as_str().unwrap(),
        );
        let found = d["diagnosis"]["component"] == c["component"] && d["diagnosis"]["item"] == c["item"];
        detected += usize::from(found);
        let ok = names(d["answer"].as_str().unwrap(), &want);
        named += usize::from(ok);
        if !ok {
            missed.push(c["message"].as_str().unwrap().to_owned());
        }
    }
    println!("held-out stated mistakes: {detected} of {} diagnosed, {named} named; missed: {missed:?}", cases.len());
    assert_eq!(cases.len(), 12);
    assert!(named >= 11, "named {named} of 12; missed: {missed:#?}");
}
