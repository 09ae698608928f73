//! The retention policy: transcripts and raw events older than the policy go; the passport they
//! built stays, and a later out-of-order event is replayed on top of it, not from nothing.

mod common;

use common::*;
use serde_json::json;
use tutor::agent::transcript::{Role, Turn};
use tutor::app::App;
use tutor::passport::{LearnerId, validate_batch};

fn answered(id: &str, ts: &str, success: bool) -> serde_json::Value {
    json!({"id": id, "actor": "ada", "verb": "answered", "object": {"component": "fractions-divide-ex-1", "item": "q1"},
           "result": {"success": success}, "timestamp": ts})
}

#[tokio::test]
async fn old_events_and_turns_go_and_the_passport_they_built_stays() {
    let data = tempfile::tempdir().unwrap();
    let cfg = tutor::config::Config {
        data_dir: data.path().to_owned(),
        content_dir: sample_content(),
        ..tutor::config::Config::default()
    };
    let app = App::open(cfg).await.unwrap();
    let lib = app.load_library().unwrap();
    let ada = LearnerId::parse("ada").unwrap();
    let now = chrono::Utc::now();
    let recent = (now - chrono::Duration::days(2)).to_rfc3339();
    let old: Vec<serde_json::Value> =
        (0..4).map(|i| answered(&format!("old-{i}"), &format!("2025-01-0{}T08:00:00Z", i + 1), i != 1)).collect();
    let mut batch = old.clone();
    batch.push(answered("new-1", &recent, true));
    let events = validate_batch(&batch, &lib, tutor::ids::now_ms()).unwrap();
    app.stores.passports.record(&events, &lib).await.unwrap();
    let before = app.stores.passports.learner(&ada).await.unwrap();
    // a session with two turns written long ago
    let session = app.stores.sessions.open_session(&ada, None, None).await.unwrap().unwrap();
    let turn = |role, content: &str| Turn {
        seq: 0,
        role,
        content: content.into(),
        tokens: 3,
        meta: json!({}),
        at: 1_735_718_400_000,
    };
    app.stores
        .sessions
        .append_turns(&session.id, &ada, &[turn(Role::Learner, "why flip?"), turn(Role::Tutor, "because")], "")
        .await
        .unwrap();

    let r = app.apply_retention(30, &lib).await.unwrap();
    assert_eq!((r.events, r.turns), (4, 2), "{r:?}");
    let after = app.stores.passports.learner(&ada).await.unwrap();
    assert_eq!(after.skills, before.skills, "the passport is kept as it was");

    // an event older than the newest (but within the policy) makes the store replay: from the
    // kept base, so the four deleted answers still count
    let late = validate_batch(
        &[answered("late-1", &(now - chrono::Duration::days(3)).to_rfc3339(), true)],
        &lib,
        tutor::ids::now_ms(),
    )
    .unwrap();
    app.stores.passports.record(&late, &lib).await.unwrap();
    let replayed = app.stores.passports.learner(&ada).await.unwrap();
    let skill = tutor::content::SkillId::parse("fractions.divide").unwrap();
    assert_eq!(replayed.skills[&skill].evidence, before.skills[&skill].evidence + 1);
    // nothing older than the policy is left to delete
    let again = app.apply_retention(30, &lib).await.unwrap();
    assert_eq!((again.events, again.turns), (0, 0));
}

#[test]
fn tutor_retention_run_says_what_it_deleted_and_needs_a_policy() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .env("TUTOR_CONTENT_DIR", sample_content())
            .env_remove("TUTOR_RETENTION_DAYS")
            .output()
            .unwrap()
    };
    let none = run(&["retention", "run"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("TUTOR_RETENTION_DAYS"));
    let out = run(&["retention", "run", "--days", "30", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["events"].as_u64(), r["turns"].as_u64()), (Some(0), Some(0)), "{r}");
}
