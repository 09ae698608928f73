//! The pages in a real browser: Chromium (Debian's `chromium`) driven by Playwright
//! (`playwright-core` from npm, in `tests/browser`). `.ci/run` installs both and sets
//! `TUTOR_REQUIRE_BROWSER=1`, so there a missing browser fails; elsewhere the test says it was
//! skipped. Screenshots go to `TUTOR_SCREENSHOTS` (default `target/screenshots`; the README's
//! come from `TUTOR_SCREENSHOTS=docs/screenshots cargo test --test pages`).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};
use tutor::auth::Role;
use tutor::config::AuthConfig;

const SECRET: &str = "page-test-secret-page-test-secret!!";

fn auth() -> AuthConfig {
    hs256(SECRET)
}

fn token(role: Role, sub: &str, courses: &[&str]) -> String {
    signed_token(SECRET, role, sub, courses, None)
}

/// `tutor demo seed|clear --json` on a data dir of the sample courses: what it printed.
fn demo(data: &Path, command: &str) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
        .arg("--data-dir")
        .arg(data)
        .args(["demo", command, "--json"])
        .env("TUTOR_CONTENT_DIR", sample_content())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Node, Chromium and playwright-core, or why not.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err("playwright-core is not installed (npm ci --prefix tests/browser)".into());
    }
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if !chromium.exists() {
        return Err(format!("no Chromium at {} (apt-get install chromium, or set CHROMIUM)", chromium.display()));
    }
    if std::process::Command::new("node").arg("--version").output().is_err() {
        return Err("node is not installed".into());
    }
    Ok((dir, chromium))
}

/// A statement of an answer: `(component, item)`, and the response when it is wrong.
fn answer(id: &str, learner: &str, on: (&str, &str), wrong: Option<&str>, group: &str, minute: u32) -> Value {
    let (component, item) = on;
    let (right, response) = (wrong.is_none(), wrong.unwrap_or("x"));
    json!({"id": id, "actor": learner, "verb": "answered", "object": {"component": component, "item": item},
           "result": {"success": right, "response": response, "hints_used": u32::from(!right)},
           "context": {"group": group},
           "timestamp": format!("2026-11-2{}T09:{:02}:00Z", 1 + minute / 60 % 8, minute % 60)})
}

async fn post(app: &App, bearer: &str, body: &Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/events", app.base))
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn an_educator_reviews_a_flag_and_reads_the_analytics_in_a_browser() {
    let (scripts, chromium) = match browser() {
        Ok(b) => b,
        Err(why) if std::env::var("TUTOR_REQUIRE_BROWSER").is_err() => {
            println!("skipped the browser test: {why}");
            return;
        }
        Err(why) => panic!("TUTOR_REQUIRE_BROWSER is set but {why}"),
    };
    // the demo learners first, seeded by the command line on the data dir, then the service
    let data = sample_data_dir();
    let counts = demo(data.path(), "seed");
    assert!(counts["flags"].as_u64().unwrap() > 5, "{counts}");
    let dir = data.path().to_owned();
    let mut app = spawn_app(|c| {
        c.content_dir = sample_content();
        c.data_dir = dir;
        c.auth = auth();
    })
    .await;
    app.data = data;
    wait_ready(&app.base).await;
    let admin = token(Role::Admin, "root", &[]);
    // group 7b: lena and five classmates; group 7c: three learners (too few to show)
    let page = "fractions-divide-ex-1";
    let mut batch = Vec::new();
    for i in 1..=3 {
        batch.push(answer(&format!("lena-{i}"), "lena", (page, "q1"), Some("3/8"), "7b", i));
    }
    for (n, (learner, group)) in [
        ("ari", "7b"),
        ("ben", "7b"),
        ("cai", "7b"),
        ("dee", "7b"),
        ("eli", "7b"),
        ("fay", "7c"),
        ("gus", "7c"),
        ("hal", "7c"),
    ]
    .iter()
    .enumerate()
    {
        for (i, item) in ["q1", "q2", "q3"].iter().enumerate() {
            let right = (n + i) % 3 != 0;
            let minute = (n * 70 + i * 3) as u32;
            let wrong = (!right).then_some("3/8");
            batch.push(answer(&format!("{learner}-{i}"), learner, (page, item), wrong, group, minute));
        }
    }
    post(&app, &admin, &json!(batch)).await;
    // a flag on the other course, for its own educator
    let sec: Vec<Value> = (1..=3)
        .map(|i| answer(&format!("sam-{i}"), "sam", ("security-data-handling-ex-1", "q1"), Some("no"), "it", i))
        .collect();
    post(&app, &admin, &json!(sec)).await;

    let shots = std::env::var("TUTOR_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(scripts.join("educator.cjs"))
        .env("BASE", &app.base)
        .env("CHROMIUM", &chromium)
        .env("SHOTS", &shots)
        .env("TOKEN_A", token(Role::Educator, "ada", &["fractions"]))
        .env("TOKEN_B", token(Role::Educator, "eve", &["security"]))
        .env("LEARNER", "lena")
        .env("SKILL", "fractions.divide")
        .env("SKILL_NAME", "Divid")
        .env("SMALL_GROUP", "7c")
        .env("OTHER_COURSE", "security")
        .env("NOTE", "Talked with Lena about reciprocals")
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| {
        panic!("no report from the browser script:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(report["ok"], true, "{report:#}\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: Vec<&str> = report["seen"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for step in [
        "the flag is in the queue",
        "the answers are shown",
        "the mastery trend is drawn",
        "the note is in the history",
        "the resolved flag leaves the open list",
        "the struggling skill is in the analytics",
        "the small group is listed as suppressed",
        "the small group shows no figure",
        "another course's educator does not see the flag",
        "the page fits a tablet",
        "no script errors",
    ] {
        assert!(seen.contains(&step), "the browser did not check '{step}': {report:#}");
    }

    // what the page showed is what the API keeps: resolved with the note, in the history
    let client = reqwest::Client::new();
    let edu = token(Role::Educator, "ada", &["fractions"]);
    let list: Value = client
        .get(format!("{}/v1/flags?course=fractions&status=resolved", app.base))
        .bearer_auth(&edu)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flag = list["flags"].as_array().unwrap().iter().find(|f| f["learner"] == "lena").expect("lena's flag resolved");
    let id = flag["id"].as_str().unwrap();
    let detail: Value =
        client.get(format!("{}/v1/flags/{id}", app.base)).bearer_auth(&edu).send().await.unwrap().json().await.unwrap();
    let notes: Vec<&str> = detail["history"].as_array().unwrap().iter().filter_map(|h| h["note"].as_str()).collect();
    assert!(notes.contains(&"Talked with Lena about reciprocals"), "{detail:#}");
    // and the other course's educator is refused it
    let eve = token(Role::Educator, "eve", &["security"]);
    let r = client.get(format!("{}/v1/flags/{id}", app.base)).bearer_auth(&eve).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = client.get(format!("{}/v1/flags?course=fractions", app.base)).bearer_auth(&eve).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // the demo learners go with `tutor demo clear`; the others stay
    let n = demo(app.data.path(), "clear");
    assert_eq!(n["erased_learners"], 47, "{n}");
    let admin = token(Role::Admin, "root", &[]);
    let left: Value = client
        .get(format!("{}/v1/flags?limit=200", app.base))
        .bearer_auth(&admin)
        .query(&[("status", "open")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let learners: Vec<&str> = left["flags"].as_array().unwrap().iter().filter_map(|f| f["learner"].as_str()).collect();
    assert!(!learners.is_empty() && learners.iter().all(|l| !l.starts_with("demo-")), "{learners:?}");
}
