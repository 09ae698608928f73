//! The skill passport through its HTTP surface: events in, passport and plan out, erase. The
//! store suite runs on SQLite and, when `TUTOR_TEST_DATABASE_URL` names a PostgreSQL server
//! (`.ci/run` starts one), on PostgreSQL too; each PostgreSQL test gets a database of its own.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sqlx::Connection;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The service on the sample courses, on the given backend; `None` when that backend is not
/// available here. Waits until the content is loaded (the learner routes answer).
async fn app(backend: Backend, test: &str) -> Option<(App, String)> {
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres(test).await?),
    };
    let for_app = url.clone();
    let app = spawn_app(|c| {
        c.content_dir = sample_content();
        c.database_url = for_app;
        // the concurrency tests post hundreds of times from one address
        c.limits.requests_per_minute = 1_000_000;
        c.limits.requests_per_minute_per_address = 1_000_000;
    })
    .await;
    let url = url.unwrap_or_else(|| format!("sqlite://{}/tutor.db", app.data.path().display()));
    let started = Instant::now();
    loop {
        let (status, body) = get(&format!("{}/v1/learners/probe/passport", app.base)).await;
        if status == 200 {
            break;
        }
        assert_eq!(body["error"]["code"], "content_not_loaded", "{body}");
        assert!(started.elapsed() < Duration::from_secs(60), "content never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some((app, url))
}

async fn post_events(app: &App, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{}/v1/events", app.base)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn passport(app: &App, learner: &str) -> Value {
    let (status, body) = get(&format!("{}/v1/learners/{learner}/passport", app.base)).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn plan(app: &App, learner: &str, component: &str) -> Value {
    let (status, body) = get(&format!("{}/v1/learners/{learner}/plan?component={component}", app.base)).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn skill<'a>(passport: &'a Value, id: &str) -> &'a Value {
    passport["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["skill"] == id)
        .unwrap_or_else(|| panic!("no {id} in {passport}"))
}

/// An `answered` statement, `minute` minutes after a fixed start.
fn answered(id: &str, learner: &str, component: &str, item: &str, success: bool, minute: u32) -> Value {
    json!({
        "id": id, "actor": learner, "verb": "answered",
        "object": {"component": component, "item": item},
        "result": {"success": success, "hints_used": 0, "duration_ms": 4000},
        "timestamp": format!("2026-11-20T{:02}:{:02}:00Z", 8 + minute / 60, minute % 60),
    })
}

/// A learner's rows in every table, counted straight from the database.
async fn rows_of(url: &str, learner: &str) -> i64 {
    let mut n = 0;
    for table in ["events", "skill_states", "learners", "audit_reads", "llm_usage", "sessions", "turns", "flags"] {
        n += rows_in(url, table, learner).await;
    }
    n
}

/// Rows of `learner` in one table.
async fn rows_in(url: &str, table: &str, learner: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE learner = $1"))
        .bind(learner)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// Runs a suite function on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

on_both_backends!(
    the_same_batch_twice_counts_duplicates_and_keeps_the_passport,
    events_out_of_order_give_the_passport_of_events_in_order,
    erase_leaves_nothing_of_the_learner,
    fifty_concurrent_batches_for_one_learner_lose_no_update,
    concurrent_posts_of_many_learners_leave_what_posting_them_one_by_one_leaves,
    flags_keep_one_open_flag_per_learner_and_skill,
);

async fn flags_keep_one_open_flag_per_learner_and_skill(backend: Backend) {
    use tutor::flags::{Evidence, FlagStore, Raise, Severity};
    let Some((_app, url)) = app(backend, "flags").await else {
        return;
    };
    let db = tutor::db::Database::connect(&url).await.unwrap();
    let store = std::sync::Arc::new(tutor::flags::SqlFlagStore::new(db));
    let learner = |id: &str| tutor::passport::LearnerId::parse(id).unwrap();
    let raise = |skill: &str, rule: &str, severity: Severity| Raise {
        learner: learner("flo"),
        skill: tutor::content::SkillId::parse(skill).unwrap(),
        course: "fractions".into(),
        component: None,
        severity,
        evidence: Evidence {
            rule: rule.into(),
            detail: format!("{rule} on {skill}"),
            mastery: Some(0.2),
            excerpt: None,
            at: 1,
        },
    };

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let r = raise(
                "fractions.divide",
                if i == 7 { "falling_mastery" } else { "confusion" },
                if i == 7 { Severity::High } else { Severity::Low },
            );
            tokio::spawn(async move { store.raise(&r).await.unwrap() })
        })
        .collect();
    let mut opened = 0;
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (f, o) = t.await.unwrap();
        opened += usize::from(o);
        ids.insert(f.id);
    }
    store.raise(&raise("fractions.multiply", "wrong_streak", Severity::Medium)).await.unwrap();
    let flags = store.flags_of(&learner("flo")).await.unwrap();

    assert_eq!((opened, ids.len()), (1, 1), "20 concurrent raises open one flag");
    assert_eq!(flags.len(), 2);
    let divide = flags.iter().find(|f| f.skill == "fractions.divide").unwrap();
    assert_eq!(divide.evidence.len(), 20);
    assert_eq!(divide.severity, Severity::High);
    assert_eq!(divide.status, tutor::flags::FlagStatus::Open);
    assert!(store.flags_of(&learner("someone-else")).await.unwrap().is_empty());
}

async fn the_same_batch_twice_counts_duplicates_and_keeps_the_passport(backend: Backend) {
    let Some((app, _)) = app(backend, "idempotency").await else {
        return;
    };
    let batch = json!([
        answered("e1", "ana", "fractions-divide-ex-1", "q1", true, 0),
        answered("e2", "ana", "fractions-divide-ex-1", "q2", false, 1),
        answered("e3", "ana", "fractions-divide-ex-1", "q3", true, 2),
    ]);

    let first = post_events(&app, &batch).await;
    let before = passport(&app, "ana").await;
    let second = post_events(&app, &batch).await;
    let after = passport(&app, "ana").await;

    assert_eq!(counts(&first), (200, 3, 0));
    assert_eq!(counts(&second), (200, 0, 3));
    // every answer of the batch graded, duplicates too
    assert_eq!(second.1["graded"].as_array().map(Vec::len), Some(3), "{}", second.1);
    assert_eq!(before, after);
    assert_eq!(skill(&after, "fractions.divide")["evidence"], 3);
}

async fn events_out_of_order_give_the_passport_of_events_in_order(backend: Backend) {
    let Some((app, _)) = app(backend, "out-of-order").await else {
        return;
    };
    let script = |learner: &str| -> Vec<Value> {
        vec![
            json!({"id": "v1", "actor": learner, "verb": "viewed", "object": {"component": "fractions-divide-worked-developing"},
                   "timestamp": "2026-11-20T07:59:00Z"}),
            answered("a1", learner, "fractions-divide-ex-1", "q1", false, 0),
            json!({"id": "a2", "actor": learner, "verb": "answered", "object": {"component": "fractions-divide-ex-1", "item": "q1"},
                   "result": {"response": "2/3", "hints_used": 2}, "timestamp": "2026-11-20T08:01:00Z"}),
            answered("a3", learner, "fractions-multiply-ex-1", "q4", true, 2),
            answered("a4", learner, "fractions-divide-ex-1", "q2", true, 3),
            answered("a5", learner, "fractions-divide-ex-1", "q4", true, 4),
            json!({"id": "r1", "actor": learner, "verb": "rated", "object": {"component": "fractions-divide-worked-developing"},
                   "result": {"score": 0.8}, "timestamp": "2026-11-20T08:05:00Z"}),
            answered("a6", learner, "fractions-divide-ex-2", "q1", false, 6),
        ]
    };
    // one statement per batch in order; then the same in reverse, which forces replays
    for s in script("in-order") {
        assert_eq!(post_events(&app, &json!([s])).await.0, 200);
    }
    for s in script("reversed").into_iter().rev() {
        assert_eq!(post_events(&app, &json!([s])).await.0, 200);
    }
    // and shuffled inside one batch
    let mut shuffled = script("one-batch");
    shuffled.swap(0, 7);
    shuffled.swap(2, 5);
    assert_eq!(post_events(&app, &Value::Array(shuffled)).await.0, 200);

    let mut expected = passport(&app, "in-order").await;
    assert_eq!(skill(&expected, "fractions.divide")["evidence"], 5);
    assert_eq!(skill(&expected, "fractions.multiply")["evidence"], 1);
    for learner in ["reversed", "one-batch"] {
        let mut got = passport(&app, learner).await;
        got["learner"] = json!("in-order");
        expected["learner"] = json!("in-order");
        assert_eq!(got, expected, "{learner}");
    }
}

async fn erase_leaves_nothing_of_the_learner(backend: Backend) {
    let Some((app, url)) = app(backend, "erase").await else {
        return;
    };
    let batch = |learner: &str| {
        json!([
            answered("e1", learner, "fractions-divide-ex-1", "q1", true, 0),
            answered("e2", learner, "fractions-multiply-ex-1", "q1", false, 1),
            json!({"id": "e3", "actor": learner, "verb": "rated", "object": {"component": "fractions-divide-explain-intro"},
                   "result": {"score": 1.0}, "timestamp": "2026-11-20T08:02:00Z"}),
        ])
    };
    assert_eq!(post_events(&app, &batch("gone")).await.0, 200);
    assert_eq!(post_events(&app, &batch("stays")).await.0, 200);
    assert!(rows_of(&url, "gone").await > 0);

    let r = reqwest::Client::new().delete(format!("{}/v1/learners/gone", app.base)).send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();

    assert_eq!(
        (status, body),
        (
            200,
            json!({"learner": "gone", "erased": {"events": 3, "skills": 2, "flags": 0, "sessions": 0, "turns": 0, "llm_usage_days": 0, "audit_reads": 0, "recommendation_feedback": 0}})
        )
    );
    assert_eq!(rows_of(&url, "gone").await, 0);
    let after = passport(&app, "gone").await;
    assert_eq!(after["skills"], json!([]));
    assert_eq!(after["format_preference"]["formats"], json!([]));
    // another learner is untouched, and the erased one can start again from nothing
    assert_eq!(skill(&passport(&app, "stays").await, "fractions.divide")["evidence"], 1);
    assert_eq!(counts(&post_events(&app, &batch("gone")).await), (200, 3, 0));
}

async fn fifty_concurrent_batches_for_one_learner_lose_no_update(backend: Backend) {
    let Some((app, url)) = app(backend, "concurrency").await else {
        return;
    };
    let client = reqwest::Client::new();
    let posts = (0..50u32).map(|b| {
        let batch: Vec<Value> = (0..4u32)
            .map(|i| answered(&format!("b{b}-{i}"), "busy", "fractions-divide-ex-1", "q1", (b + i) % 3 != 0, b * 4 + i))
            .collect();
        let req = client.post(format!("{}/v1/events", app.base)).json(&batch);
        tokio::spawn(async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    });
    let posts: Vec<_> = posts.collect();

    let mut replies = Vec::new();
    for p in posts {
        replies.push(p.await.unwrap());
    }

    for reply in &replies {
        assert_eq!(counts(reply), (200, 4, 0), "{}", reply.1);
    }
    let p = passport(&app, "busy").await;
    let divide = skill(&p, "fractions.divide");
    assert_eq!(divide["evidence"], 200);
    let right = (0..50u32).flat_map(|b| (0..4u32).map(move |i| (b + i) % 3 != 0)).filter(|c| *c).count();
    assert_eq!(divide["correct"], right);
    // the events, one skill state, the learner (a flag may or may not be raised on the way,
    // depending on the order the batches arrive in: while some are missing, the answers in
    // hand can hold a wrong streak)
    assert_eq!(rows_of(&url, "busy").await - rows_in(&url, "flags", "busy").await, 200 + 1 + 1);
}

/// Every row the passport derives from events (everything but the clock's columns), one
/// string per row, sorted: what two stores given the same events must agree on.
async fn derived_rows(url: &str) -> Vec<String> {
    let tables: [(&str, &str); 10] = [
        ("events", "learner, id, verb, component, item, success, score, response, hints_used, duration_ms, ts, grp"),
        ("skill_states", "learner, skill, mastery, evidence, state, first_at, proficient_at, grp"),
        ("learners", "learner, state, params_version"),
        ("item_stats", "course, component, item, grp, attempts, wrong, hints"),
        ("learner_courses", "learner, course, grp, last_at, last_component"),
        ("learner_weeks", "learner, course, week, grp"),
        ("mastery_weeks", "learner, skill, week, mastery, grp"),
        ("learner_components", "learner, course, component, grp"),
        ("learner_demands", "learner, course, skill, demand, grp"),
        ("learner_misconceptions", "learner, course, component, item, response, grp"),
    ];
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let mut out = Vec::new();
    for (table, columns) in tables {
        let row = columns.split(", ").map(|c| format!("COALESCE(CAST({c} AS TEXT), '-')")).collect::<Vec<_>>();
        let sql = format!("SELECT '{table}|' || {} FROM {table}", row.join(" || '|' || "));
        let mut rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut conn).await.unwrap();
        rows.sort();
        out.extend(rows);
    }
    out
}

/// Content pages post answers one at a time, from many learners at once: on SQLite the posts
/// that arrive together share one transaction, their learners' passports and rollups
/// written together. Posted concurrently, out of order and some twice, the events leave
/// exactly the rows that posting them one by one, in order, leaves.
async fn concurrent_posts_of_many_learners_leave_what_posting_them_one_by_one_leaves(backend: Backend) {
    let Some((together, together_url)) = app(backend, "together").await else {
        return;
    };
    let (alone, alone_url) = app(backend, "alone").await.unwrap();
    // 30 learners, 8 answers each over two courses; even learners name a group; wrong
    // answers with a known misconception among them
    let mut statements: Vec<Value> = Vec::new();
    for l in 0..30u32 {
        let learner = format!("many-{l}");
        for n in 0..8u32 {
            let minute = l + n * 31;
            let mut s = match n % 4 {
                0 | 1 => answered(
                    &format!("{learner}-{n}"),
                    &learner,
                    "fractions-divide-ex-1",
                    &format!("q{}", n % 4 + 1),
                    (l + n) % 3 != 0,
                    minute,
                ),
                2 => {
                    let mut s = answered(
                        &format!("{learner}-{n}"),
                        &learner,
                        "fractions-add-subtract-unlike-ex-2",
                        "q1",
                        false,
                        minute,
                    );
                    s["result"] = json!({"response": if l % 2 == 0 { "12/20" } else { "29/24" }, "hints_used": l % 3});
                    s
                }
                _ => answered(
                    &format!("{learner}-{n}"),
                    &learner,
                    "security-phishing-recognize-ex-1",
                    "q1",
                    l % 4 != 0,
                    minute,
                ),
            };
            if l % 2 == 0 {
                s["context"] = json!({"group": "class-a"});
            }
            statements.push(s);
        }
    }
    // one by one, in time order
    let mut in_order = statements.clone();
    in_order.sort_by_key(|s| s["timestamp"].as_str().unwrap().to_owned());
    for s in &in_order {
        assert_eq!(counts(&post_events(&alone, s).await), (200, 1, 0));
    }
    // all at once from 40 clients, shuffled (a fixed permutation), the first 20 posted twice
    let mut shuffled: Vec<(Value, bool)> = statements.iter().cloned().map(|s| (s, false)).collect();
    shuffled.extend(statements[..20].iter().cloned().map(|s| (s, true)));
    let n = shuffled.len();
    let order: Vec<usize> = (0..n).map(|i| (i * 97 + 13) % n).collect();
    assert_eq!(order.iter().collect::<std::collections::BTreeSet<_>>().len(), n, "a permutation");
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for c in 0..40 {
        let mine: Vec<(Value, bool)> = order.iter().skip(c).step_by(40).map(|&i| shuffled[i].clone()).collect();
        let (client, base) = (client.clone(), together.base.clone());
        tasks.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            for (s, again) in mine {
                let r = client.post(format!("{base}/v1/events")).json(&s).send().await.unwrap();
                replies.push((r.status().as_u16(), again, r.json::<Value>().await.unwrap()));
            }
            replies
        }));
    }
    let (mut accepted, mut duplicates) = (0, 0);
    for t in tasks {
        for (status, _, body) in t.await.unwrap() {
            assert_eq!(status, 200, "{body}");
            accepted += body["accepted"].as_u64().unwrap();
            duplicates += body["duplicates"].as_u64().unwrap();
        }
    }
    // each statement posted twice is accepted once, whichever post came first
    assert_eq!((accepted, duplicates), (240, 20));
    let (a, b) = (derived_rows(&alone_url).await, derived_rows(&together_url).await);
    assert!(a.len() > 240 + 30 * 4, "{} rows", a.len());
    for table in ["item_stats|", "learner_misconceptions|", "learner_weeks|", "mastery_weeks|"] {
        assert!(a.iter().any(|r| r.starts_with(table)), "no {table} rows");
    }
    let differ: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).take(3).collect();
    assert!(a.len() == b.len() && differ.is_empty(), "{} vs {} rows; first differences {differ:#?}", a.len(), b.len());
    for l in [0, 1, 29] {
        let learner = format!("many-{l}");
        assert_eq!(passport(&alone, &learner).await["skills"], passport(&together, &learner).await["skills"]);
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error_and_stores_nothing() {
    let (app, url) = app(Backend::Sqlite, "bad input").await.unwrap();
    let good = answered("ok-1", "careful", "fractions-divide-ex-1", "q1", true, 0);
    let with = |patch: &dyn Fn(&mut Value)| {
        let mut bad = answered("bad-1", "careful", "fractions-divide-ex-1", "q1", true, 1);
        patch(&mut bad);
        json!([good.clone(), bad])
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("unknown verb", with(&|s| s["verb"] = json!("liked")), "unknown verb 'liked'"),
        ("missing actor", with(&|s| drop(s.as_object_mut().unwrap().remove("actor"))), "missing field `actor`"),
        (
            "unknown component",
            with(&|s| s["object"]["component"] = json!("fractions-nope")),
            "unknown component 'fractions-nope'",
        ),
        ("unknown item", with(&|s| s["object"]["item"] = json!("q9")), "unknown item 'q9'"),
        ("score out of range", with(&|s| s["result"]["score"] = json!(1.5)), "result.score 1.5 is out of range"),
        ("far future", with(&|s| s["timestamp"] = json!("2099-01-01T00:00:00Z")), "is in the future"),
        ("not a timestamp", with(&|s| s["timestamp"] = json!("yesterday")), "is not RFC 3339"),
        ("bad duration", with(&|s| s["result"]["duration"] = json!("5 seconds")), "not an ISO 8601 duration"),
        ("unknown result field", with(&|s| s["result"]["grade"] = json!("A")), "unknown field `grade`"),
        ("bad actor", with(&|s| s["actor"] = json!("no spaces please")), "invalid learner id"),
    ];
    for (name, body, reason) in &cases {
        let (status, reply) = post_events(&app, body).await;
        assert_eq!(status, 422, "{name}: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_statements", "{name}");
        let details = reply["error"]["details"].as_array().unwrap();
        assert_eq!(details.len(), 1, "{name}: {reply}");
        assert_eq!(details[0]["index"], 1, "{name}");
        assert!(details[0]["reason"].as_str().unwrap().contains(reason), "{name}: {reply}");
    }

    // every bad statement of a batch is listed
    let many = json!([
        with(&|s| s["verb"] = json!("liked"))[1].clone(),
        good.clone(),
        with(&|s| s["result"]["score"] = json!(-1))[1].clone()
    ]);
    let (status, reply) = post_events(&app, &many).await;
    assert_eq!(status, 422);
    let indexes: Vec<u64> =
        reply["error"]["details"].as_array().unwrap().iter().map(|d| d["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, vec![0, 2]);

    let client = reqwest::Client::new();
    let raw = |body: Vec<u8>| {
        let req = client.post(format!("{}/v1/events", app.base)).header("content-type", "application/json").body(body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, reply) = raw(b"[{\"id\": \"x\", ".to_vec()).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("malformed_json")), "{reply}");
    let (status, reply) = raw(b"\"hello\"".to_vec()).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (422, Some("not_a_batch")), "{reply}");
    let (status, reply) = raw(b"[]".to_vec()).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (422, Some("empty_batch")), "{reply}");
    let huge: Vec<Value> =
        (0..1001).map(|i| answered(&format!("h{i}"), "careful", "fractions-divide-ex-1", "q1", true, 0)).collect();
    let (status, reply) = post_events(&app, &Value::Array(huge)).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (413, Some("batch_too_large")), "{reply}");
    let mut ten_mb = serde_json::to_vec(&json!([good.clone()])).unwrap();
    ten_mb.pop();
    ten_mb.extend(std::iter::repeat_n(b' ', 10 * 1024 * 1024));
    ten_mb.push(b']');
    let (status, reply) = raw(ten_mb).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (413, Some("body_too_large")), "{reply}");

    assert_eq!(rows_of(&url, "careful").await, 0, "a rejected batch stores nothing");
    assert_eq!(passport(&app, "careful").await["skills"], json!([]));

    // the learner routes check their inputs too
    let (status, reply) = get(&format!("{}/v1/learners/no%20way/passport", app.base)).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("invalid_learner")), "{reply}");
    let (status, reply) = get(&format!("{}/v1/learners/careful/plan", app.base)).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("missing_component")), "{reply}");
    let (status, reply) = get(&format!("{}/v1/learners/careful/plan?component=fractions-nope", app.base)).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (404, Some("unknown_component")), "{reply}");
}

#[tokio::test]
async fn the_passport_reports_misconceptions_demand_and_prerequisite_gaps() {
    let (app, _) = app(Backend::Sqlite, "passport view").await.unwrap();
    let mut batch = vec![
        // wrong on multiplying (the prerequisite of dividing), with a known misconception
        json!({"id": "m1", "actor": "kim", "verb": "answered", "object": {"component": "fractions-multiply-ex-1", "item": "q4"},
               "result": {"response": "More", "hints_used": 1, "duration": "PT12S"}, "timestamp": "2026-11-20T08:00:00Z"}),
        answered("m2", "kim", "fractions-multiply-ex-1", "q1", false, 1),
        answered("m3", "kim", "fractions-multiply-ex-1", "q2", true, 2),
    ];
    // dividing: application right, reasoning wrong
    for (i, (item, ok)) in [("q1", true), ("q2", true), ("q3", true), ("q4", false)].iter().enumerate() {
        batch.push(answered(&format!("d{i}"), "kim", "fractions-divide-ex-1", item, *ok, 10 + i as u32));
    }
    batch.push(json!({"id": "d9", "actor": "kim", "verb": "answered", "object": {"component": "fractions-divide-ex-1", "item": "q4"},
                      "result": {"response": "yes"}, "timestamp": "2026-11-20T08:20:00Z"}));
    assert_eq!(post_events(&app, &Value::Array(batch)).await.0, 200);

    let p = passport(&app, "kim").await;
    let multiply = skill(&p, "fractions.multiply");
    let divide = skill(&p, "fractions.divide");

    assert_eq!(multiply["evidence"], 3);
    assert_eq!(multiply["correct"], 1, "'More' is graded against the answer key 'less'");
    assert_eq!(multiply["misconceptions"][0]["item"], "q4");
    assert!(
        multiply["misconceptions"][0]["diagnosis"].as_str().unwrap().contains("multiplication always makes bigger")
    );
    assert_eq!(multiply["hints_used"], 1);
    assert_eq!(divide["by_demand"]["application"], json!({"attempts": 3, "correct": 3, "rate": 1.0}));
    assert_eq!(divide["by_demand"]["reasoning"], json!({"attempts": 2, "correct": 0, "rate": 0.0}));
    assert_eq!(divide["demand_summary"], "strong at application, weak at reasoning");
    assert!(divide["misconceptions"][0]["diagnosis"].as_str().unwrap().contains("division always makes smaller"));
    assert_eq!(divide["last_seen"], "2026-11-20T08:20:00Z");
    assert_eq!(divide["recent"], "3 of your last 5 answers on dividing fractions were right");
    assert!(["low", "medium", "high"].contains(&divide["confidence"].as_str().unwrap()));
    let gap = &p["prerequisite_gaps"][0];
    assert_eq!(gap["skill"], "fractions.multiply");
    assert_eq!(gap["needed_by"], json!(["fractions.divide"]));
}

#[tokio::test]
async fn plan_offers_a_skip_to_a_master_and_a_review_to_a_learner_who_failed_a_prerequisite() {
    let (app, _) = app(Backend::Sqlite, "plan").await.unwrap();
    let items = ["q1", "q2", "q3", "q4"];
    let master: Vec<Value> = (0..10u32)
        .map(|i| answered(&format!("s{i}"), "sam", "fractions-divide-ex-1", items[i as usize % 4], true, i))
        .collect();
    let mut stuck: Vec<Value> = (0..4u32)
        .map(|i| answered(&format!("m{i}"), "lee", "fractions-multiply-ex-1", items[i as usize], false, i))
        .collect();
    stuck.push(answered("d1", "lee", "fractions-divide-ex-1", "q1", false, 10));
    assert_eq!(post_events(&app, &Value::Array(master)).await.0, 200);
    assert_eq!(post_events(&app, &Value::Array(stuck)).await.0, 200);

    let sam = plan(&app, "sam", "fractions-divide-explain-intro").await;
    let lee = plan(&app, "lee", "fractions-divide-explain-intro").await;
    let newcomer = plan(&app, "new", "fractions-divide-explain-intro").await;

    assert_eq!(sam["skip_offer"]["offered"], true, "{sam}");
    assert!(
        sam["skip_offer"]["reason"]
            .as_str()
            .unwrap()
            .contains("5 of your last 5 answers on dividing fractions were right"),
        "{sam}"
    );
    assert_eq!(sam["variant"]["level"], "advanced", "{sam}");
    assert_eq!(sam["review"], json!([]));

    assert_eq!(lee["skip_offer"]["offered"], false);
    assert_eq!(lee["variant"]["level"], "intro", "{lee}");
    let review = lee["review"].as_array().unwrap();
    assert_eq!(review.len(), 1, "{lee}");
    assert_eq!(review[0]["skill"], "fractions.multiply");
    let material = review[0]["component_id"].as_str().unwrap();
    assert!(material.starts_with("fractions-multiply-") && !material.ends_with("-ex-1"), "{lee}");
    assert_eq!(
        review[0]["reason"],
        "4 of your last 4 answers on multiplying fractions were wrong; multiplying fractions comes before dividing fractions."
    );

    assert_eq!(newcomer["skip_offer"]["offered"], false);
    assert_eq!(newcomer["skip_offer"]["reason"], "Not yet: 0 answer(s) on dividing fractions so far, 3 needed.");
    assert_eq!(newcomer["review"], json!([]));
}

#[tokio::test]
async fn format_preference_is_learned_from_ratings_and_success_after_a_format() {
    let (app, _) = app(Backend::Sqlite, "formats").await.unwrap();
    let view = |id: &str, component: &str, minute: u32| {
        json!({"id": id, "actor": "vic", "verb": "viewed", "object": {"component": component},
               "timestamp": format!("2026-11-20T09:{minute:02}:00Z")})
    };
    let rate = |id: &str, component: &str, score: f64, minute: u32| {
        json!({"id": id, "actor": "vic", "verb": "rated", "object": {"component": component}, "result": {"score": score},
               "timestamp": format!("2026-11-20T09:{minute:02}:00Z")})
    };
    let mut batch = vec![
        rate("r1", "fractions-divide-explain-intro", 0.2, 0),
        rate("r2", "fractions-multiply-explain-intro", 0.3, 1),
        view("v1", "fractions-multiply-scenario-developing", 2),
        rate("r3", "fractions-multiply-scenario-developing", 1.0, 3),
    ];
    batch.push(answered("a1", "vic", "fractions-multiply-ex-1", "q1", true, 64));
    batch.push(view("v2", "fractions-compare-scenario-intro", 5));
    batch.push(answered("a2", "vic", "fractions-compare-ex-1", "q1", true, 66));
    assert_eq!(post_events(&app, &Value::Array(batch)).await.0, 200);

    let p = passport(&app, "vic").await;
    // no answers on what a fraction means: intro level, where the course has a scenario
    let plan = plan(&app, "vic", "fractions-meaning-explain-intro").await;

    assert_eq!(p["format_preference"]["preferred"], "scenario", "{p}");
    assert_eq!(plan["variant"]["component_id"], "fractions-meaning-scenario-intro", "{plan}");
    assert!(plan["variant"]["reason"].as_str().unwrap().contains("scenario is the format you do best with"), "{plan}");
}

/// Runs the `tutor` binary on a data dir, with the sample content.
fn tutor(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("TUTOR_CONTENT_DIR", sample_content())
        .env_remove("TUTOR_DATABASE_URL")
        .output()
        .unwrap()
}

#[test]
fn cli_imports_events_checking_every_line_first_and_shows_the_passport() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("events.jsonl");
    let lines: Vec<String> = (0..1200u32)
        .map(|i| {
            answered(
                &format!("imp-{i}"),
                "cli-learner",
                "fractions-divide-ex-1",
                ["q1", "q2", "q3", "q4"][i as usize % 4],
                i % 5 != 0,
                i % 600,
            )
            .to_string()
        })
        .collect();
    let mut bad = lines.clone();
    bad[3] = "{not json".into();
    bad[7] = answered("x", "cli-learner", "fractions-nope", "q1", true, 0).to_string();
    std::fs::write(&file, bad.join("\n") + "\n").unwrap();

    let rejected = tutor(data.path(), &["events", "import", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(!rejected.status.success());
    assert!(stderr.contains(&format!("{}:4: not JSON", file.display())), "{stderr}");
    assert!(stderr.contains(&format!("{}:8: unknown component 'fractions-nope'", file.display())), "{stderr}");
    assert!(stderr.contains("2 bad line(s); nothing was imported."), "{stderr}");
    let empty = tutor(data.path(), &["passport", "cli-learner", "--json"]);
    let empty: Value = serde_json::from_slice(&empty.stdout).unwrap();
    assert_eq!(empty["skills"], json!([]));

    std::fs::write(&file, lines.join("\n") + "\n\n").unwrap();
    let first = tutor(data.path(), &["events", "import", file.to_str().unwrap(), "--json"]);
    let again = tutor(data.path(), &["events", "import", file.to_str().unwrap(), "--json"]);
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!((first["accepted"].as_u64(), first["duplicates"].as_u64()), (Some(1200), Some(0)), "{first}");
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(1200)), "{again}");

    let shown = tutor(data.path(), &["passport", "cli-learner", "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(skill(&shown, "fractions.divide")["evidence"], 1200);
    let table = tutor(data.path(), &["passport", "cli-learner"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("Skill passport of cli-learner"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("fractions.divide") && l.contains("1200")), "{table}");
}

/// A reply to posted events: the status, the accepted and the duplicate statements.
fn counts((status, body): &(u16, Value)) -> (u16, u64, u64) {
    (*status, body["accepted"].as_u64().unwrap_or(u64::MAX), body["duplicates"].as_u64().unwrap_or(u64::MAX))
}

/// Content pages post one answer at a time; on SQLite, posts that arrive while another commits
/// share the next durable transaction, and each is answered after it. Every answer counts.
#[tokio::test]
async fn concurrent_single_posts_share_commits_and_every_answer_counts() {
    let app = common::spawn_sample_app(|c| {
        c.limits.requests_per_minute = 1_000_000;
        c.limits.requests_per_minute_per_address = 1_000_000;
    })
    .await;
    let client = reqwest::Client::new();
    let t0 = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let mut tasks = Vec::new();
    for c in 0..50 {
        let (client, base) = (client.clone(), app.base.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..4 {
                let ts = chrono::DateTime::from_timestamp_millis(t0 + c * 10 + n).unwrap().to_rfc3339();
                let body = json!({"id": format!("single-{c}-{n}"), "actor": "page-learner", "verb": "answered",
                    "object": {"component": "fractions-divide-ex-1", "item": "q1"}, "result": {"success": n % 2 == 0},
                    "timestamp": ts});
                let r = client.post(format!("{base}/v1/events")).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let v: serde_json::Value = r.json().await.unwrap();
                assert_eq!(v["accepted"], 1, "{v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, passport) = common::get(&format!("{}/v1/learners/page-learner/passport", app.base)).await;
    let divide = passport["skills"].as_array().unwrap().iter().find(|s| s["skill"] == "fractions.divide").unwrap();
    assert_eq!((divide["evidence"].as_u64(), divide["correct"].as_u64()), (Some(200), Some(100)), "{divide}");
    let metrics = client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .unwrap()
            .parse()
            .unwrap()
    };
    let (commits, batches) = (figure("tutor_event_commits_total"), figure("tutor_event_batches_committed_total"));
    // the counters are the process's: other tests of this binary may have committed batches
    // too, each in a transaction of its own at most, which keeps the comparison below fair
    assert!(batches >= 200.0, "{metrics}");
    assert!(commits < batches, "{commits} transactions for {batches} batches: no post shared a commit");
}
