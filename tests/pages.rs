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

/// [`browser`], or `None` after saying why the test is skipped (a panic when
/// `TUTOR_REQUIRE_BROWSER` is set).
fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    match browser() {
        Ok(b) => Some(b),
        Err(why) if std::env::var("TUTOR_REQUIRE_BROWSER").is_err() => {
            println!("skipped the browser test: {why}");
            None
        }
        Err(why) => panic!("TUTOR_REQUIRE_BROWSER is set but {why}"),
    }
}

/// Where the screenshots go.
fn shots_dir() -> PathBuf {
    let shots = std::env::var("TUTOR_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    shots
}

/// Runs a browser script with `env`; the JSON report it printed last, which must say `ok`.
async fn run_script(script: &Path, chromium: &Path, env: &[(&str, String)]) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script).env("CHROMIUM", chromium).env("SHOTS", shots_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| {
        panic!("no report from the browser script:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(report["ok"], true, "{report:#}\n{}", String::from_utf8_lossy(&out.stderr));
    report
}

/// Asserts the script checked every step.
fn saw(report: &Value, steps: &[&str]) {
    let seen: Vec<&str> = report["seen"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for step in steps {
        assert!(seen.contains(step), "the browser did not check '{step}': {report:#}");
    }
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
    let Some((scripts, chromium)) = browser_or_skip() else { return };
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

    let report = run_script(
        &scripts.join("educator.cjs"),
        &chromium,
        &[
            ("BASE", app.base.clone()),
            ("TOKEN_A", token(Role::Educator, "ada", &["fractions"])),
            ("TOKEN_B", token(Role::Educator, "eve", &["security"])),
            ("LEARNER", "lena".into()),
            ("SKILL", "fractions.divide".into()),
            ("SKILL_NAME", "Divid".into()),
            ("SMALL_GROUP", "7c".into()),
            ("OTHER_COURSE", "security".into()),
            ("NOTE", "Talked with Lena about reciprocals".into()),
        ],
    )
    .await;
    saw(
        &report,
        &[
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
        ],
    );

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn learners_use_the_lesson_the_widget_and_their_passport_in_a_browser() {
    let Some((scripts, chromium)) = browser_or_skip() else { return };
    // a content page of another site embeds the widget: its origin is on the allow-list, the
    // second one is not
    let (host_port, other_port) = (free_port(), free_port());
    let app = spawn_sample_app(|c| {
        c.auth = auth();
        c.limits.cors_origins = vec![format!("http://127.0.0.1:{host_port}")];
    })
    .await;
    let admin = token(Role::Admin, "root", &[]);
    // ben knows division: his page differs from ada's, and he is offered to skip it
    let ben: Vec<Value> = (0..8)
        .map(|n| {
            let item = ["q1", "q2", "q3"][n % 3];
            json!({"id": format!("ben-{n}"), "actor": "ben", "verb": "answered",
                   "object": {"component": "fractions-divide-ex-1", "item": item},
                   "result": {"success": true}, "timestamp": format!("2026-11-20T08:0{n}:00Z")})
        })
        .collect();
    post(&app, &admin, &json!(ben)).await;
    let widget = reqwest::get(format!("{}/widget.js", app.base)).await.unwrap().bytes().await.unwrap();
    assert!(widget.len() < 30 * 1024, "the widget is {} bytes, over 30 KB", widget.len());

    let secrets = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secrets.path(), serde_json::to_vec(&learner_secrets(&load(&sample_content()))).unwrap()).unwrap();
    let learners = ["ada", "ben", "cai", "dee", "eli"];
    let tokens: serde_json::Map<String, Value> =
        learners.iter().map(|l| (l.to_string(), json!(token(Role::Learner, l, &[])))).collect();
    let report = run_script(
        &scripts.join("learner.cjs"),
        &chromium,
        &[
            ("BASE", app.base.clone()),
            ("TOKENS", Value::Object(tokens).to_string()),
            ("SECRETS", secrets.path().display().to_string()),
            ("HOST_PORT", host_port.to_string()),
            ("OTHER_PORT", other_port.to_string()),
        ],
    )
    .await;
    saw(
        &report,
        &[
            "two learners see different variants of the same page",
            "the answer cites the course",
            "the answer streamed in pieces",
            "the conversation survives a reload",
            "a hint comes on request",
            "a wrong answer shows what it showed",
            "the skip offer's choice is posted",
            "the widget is usable with the keyboard alone",
            "Escape closes the tutor and returns focus",
            "the page fits a phone",
            "the passport shows why it thinks so",
            "a recommendation dismissed disappears",
            "a refused token is explained in plain words",
            "a 429 is said in plain words and the question is kept",
            "a dropped stream is said in plain words and the question is kept",
            "the widget recovers",
            "I'm stuck asks the tutor",
            "the widget works on a page of an allowed origin",
            "the widget is refused on an origin not on the list",
            "no answer key reaches the browser",
            "no script errors",
        ],
    );
    println!("widget: {} bytes; timings in the browser: {}", widget.len(), report["timings"]);

    // three wrong answers in the lesson raised a flag for cai's educators
    let flags: Value = reqwest::Client::new()
        .get(format!("{}/v1/flags?course=fractions", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flag_of = |learner: &str| flags["flags"].as_array().unwrap().iter().find(|f| f["learner"] == learner).cloned();
    let cai = flag_of("cai");
    assert!(
        cai.is_some_and(|f| f["skill"] == "fractions.divide"),
        "three wrong answers in the lesson raise a flag: {flags:#}"
    );
    // and "I'm stuck" in the widget raises one for ada
    assert!(flag_of("ada").is_some_and(|f| f.to_string().contains("confusion")), "I'm stuck raises a flag: {flags:#}");
}
