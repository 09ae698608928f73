//! Educators through the HTTP API: the review queue (filters, order, pages, counts), the flag's
//! evidence, status changes (idempotent, race-safe, kept in the history), analytics with small
//! groups suppressed (also against subtraction), CSV, priorities in the plan, and erasure.

#[macro_use]
mod common;

use common::*;
use serde_json::{Value, json};
use tutor::auth::Role;

const SECRET: &str = "educators-test-secret-educators-test";
const DIVIDE: &str = "fractions-divide-ex-1";
const MULTIPLY: &str = "fractions-multiply-ex-1";

fn token(role: Role, sub: &str, courses: &[&str], group: Option<&str>) -> String {
    signed_token(SECRET, role, sub, courses, group)
}

fn answer(learner: &str, n: usize, component: &str, item: &str, right: bool, group: Option<&str>) -> Value {
    let mut s = json!({"id": format!("{learner}-{component}-{n}"), "actor": learner, "verb": "answered",
        "object": {"component": component, "item": item},
        "result": {"success": right, "response": if right { "ok" } else { "3/8" }, "hints_used": 1, "duration_ms": 20000},
        "timestamp": format!("2026-11-{:02}T{:02}:{:02}:00Z", 2 + n / 24 % 20, n % 24, n % 60)});
    if let Some(g) = group {
        s["context"] = json!({"group": g});
    }
    s
}

/// Three wrong answers in a row: a flag.
fn struggle(learner: &str, component: &str) -> Vec<Value> {
    (0..3).map(|n| answer(learner, n, component, "q1", false, None)).collect()
}

async fn the_queue_filters_orders_and_pages_and_counts_by_status(pg: bool) {
    let Some(api) = Api::new(pg, SECRET, "the_queue_filters_orders_and_pages_and_counts_by_status").await else {
        return;
    };
    let mut all = Vec::new();
    for l in ["l1", "l2", "l3", "l4", "l5"] {
        all.extend(struggle(l, DIVIDE));
    }
    // a longer streak: high severity
    all.extend((3..6).map(|n| answer("l5", n, DIVIDE, "q1", false, None)));
    all.extend(struggle("s1", "security-data-handling-ex-1"));
    api.events(all).await;
    let ada = token(Role::Educator, "ada", &["fractions"], None);
    let (status, page) = api.call("GET", "/v1/flags?limit=2", &ada, None).await;
    assert_eq!(status, 200, "{page}");
    let flags = page["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 2);
    assert!(flags.iter().all(|f| f["course"] == "fractions"), "only her course: {page}");
    assert_eq!(flags[0]["learner"], "l5", "most severe first: {page}");
    assert_eq!(flags[0]["severity"], "high");
    assert_eq!(page["counts"]["open"], 5, "{page}");
    // the next pages, by cursor, without repeats
    let mut seen: Vec<String> = flags.iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect();
    let mut cursor = page["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let (_, next) = api.call("GET", &format!("/v1/flags?limit=2&cursor={c}"), &ada, None).await;
        seen.extend(next["flags"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_owned()));
        cursor = next["next_cursor"].as_str().map(str::to_owned);
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (5, 5), "{seen:?}");
    // filters
    let (_, high) = api.call("GET", "/v1/flags?severity=high", &ada, None).await;
    assert_eq!(high["flags"].as_array().unwrap().len(), 1);
    let (_, none) = api.call("GET", "/v1/flags?status=resolved", &ada, None).await;
    assert_eq!((none["flags"].as_array().unwrap().len(), none["counts"]["open"].as_u64()), (0, Some(5)));
    let (_, later) = api.call("GET", "/v1/flags?since=2999-01-01", &ada, None).await;
    assert_eq!(later["flags"].as_array().unwrap().len(), 0);
    let (status, bad) = api.call("GET", "/v1/flags?status=closed", &ada, None).await;
    assert_eq!((status, bad["error"]["code"].as_str()), (400, Some("invalid_status")));
    let (status, _) = api.call("GET", "/v1/flags?course=security", &ada, None).await;
    assert_eq!(status, 403);
}

async fn a_flag_shows_its_evidence_and_changes_status_once_even_when_two_educators_resolve_it(pg: bool) {
    let Some(api) =
        Api::new(pg, SECRET, "a_flag_shows_its_evidence_and_changes_status_once_even_when_two_educators_resolve_it")
            .await
    else {
        return;
    };
    let mut events = struggle("mia", DIVIDE);
    events.push(answer("mia", 9, MULTIPLY, "q1", true, None));
    api.events(events).await;
    let ada = token(Role::Educator, "ada", &["fractions"], None);
    let bea = token(Role::Educator, "bea", &["fractions"], None);
    let (_, page) = api.call("GET", "/v1/flags", &ada, None).await;
    let id = page["flags"][0]["id"].as_str().unwrap().to_owned();
    let (status, d) = api.call("GET", &format!("/v1/flags/{id}"), &ada, None).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["skill_name"], "Dividing fractions");
    let answers = d["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 3, "only the flag's skill: {d:#}");
    assert_eq!(answers[0]["response"], "3/8");
    assert_eq!(answers[0]["correct"], false);
    assert_eq!(answers[0]["hints_used"], 1);
    assert_eq!(answers[0]["duration_ms"], 20000);
    assert_eq!(answers[0]["demand"], "application");
    assert!(answers[0]["diagnosis"].as_str().unwrap().contains("reciprocal"), "{d:#}");
    let trend: Vec<f64> = d["trend"].as_array().unwrap().iter().map(|p| p["mastery"].as_f64().unwrap()).collect();
    assert_eq!(trend.len(), 3);
    assert!(trend.iter().all(|m| *m < 0.2), "three wrong answers keep mastery low: {trend:?}");
    let at_flag = d["rules"][0]["mastery"].as_f64().unwrap();
    assert!((trend[2] - at_flag).abs() < 1e-9, "the trend ends where the rule saw it: {trend:?} {at_flag}");
    assert_eq!(d["rules"][0]["rule"], "wrong_streak");
    assert_eq!(d["history"][0]["action"], "opened");
    // the read is in mia's audit log
    let mia = token(Role::Learner, "mia", &[], None);
    let (_, audit) = api.call("GET", "/v1/learners/mia/audit", &mia, None).await;
    assert!(audit["reads"].as_array().unwrap().iter().any(|r| r["reader"] == "educator:ada"), "{audit}");

    // resolving needs an outcome
    let (status, e) = api.call("POST", &format!("/v1/flags/{id}/resolve"), &ada, Some(&json!({"note": "x"}))).await;
    assert_eq!((status, e["error"]["code"].as_str()), (422, Some("outcome_required")));
    // two educators resolve at once: one changes it, the other sees it resolved
    let path = format!("/v1/flags/{id}/resolve");
    let (ada_says, bea_says) =
        (json!({"note": "ada's note", "outcome": "supported"}), json!({"note": "bea's note", "outcome": "no_action"}));
    let (a, b) =
        tokio::join!(api.call("POST", &path, &ada, Some(&ada_says)), api.call("POST", &path, &bea, Some(&bea_says)),);
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let changed = [&a.1, &b.1].iter().filter(|r| r["changed"] == true).count();
    assert_eq!(changed, 1, "exactly one wins: {a:?} {b:?}");
    let history = b.1["history"].as_array().unwrap();
    assert_eq!(history.iter().filter(|h| h["action"] == "resolved").count(), 1, "{history:?}");
    // acknowledging a resolved flag: reopen first
    let (status, e) = api.call("POST", &format!("/v1/flags/{id}/acknowledge"), &ada, None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("flag_resolved")));
    // new wrong answers open a new flag; the old one cannot be reopened beside it
    api.events((3..6).map(|n| answer("mia", n, DIVIDE, "q2", false, None)).collect()).await;
    let (status, e) = api.call("POST", &format!("/v1/flags/{id}/reopen"), &ada, None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("another_flag_active")), "{e}");
    // an unknown flag, another course's educator
    assert_eq!(api.call("GET", "/v1/flags/flag-nope", &ada, None).await.0, 404);
    let eve = token(Role::Educator, "eve", &["security"], None);
    assert_eq!(api.call("POST", &format!("/v1/flags/{id}/reopen"), &eve, None).await.0, 403);
    // erased with the learner: flags, history, and her part of the analytics
    let (_, erased) = api.call("DELETE", "/v1/learners/mia", &mia, None).await;
    assert_eq!(erased["erased"]["flags"], 2, "{erased}");
    assert_eq!(api.call("GET", &format!("/v1/flags/{id}"), &ada, None).await.0, 404);
}

async fn analytics_show_the_struggle_and_never_a_group_under_five_even_by_subtraction(pg: bool) {
    let Some(api) =
        Api::new(pg, SECRET, "analytics_show_the_struggle_and_never_a_group_under_five_even_by_subtraction").await
    else {
        return;
    };
    let mut events = Vec::new();
    // group A: 8 learners, mostly right on recall, wrong on reasoning; group B: 3 learners
    for (g, n) in [("A", 8), ("B", 3)] {
        for i in 0..n {
            let l = format!("{g}{i}");
            events.push(answer(&l, 0, MULTIPLY, "q2", true, Some(g)));
            events.push(answer(&l, 1, MULTIPLY, "q4", i % 4 == 0, Some(g)));
            events.push(answer(&l, 2, MULTIPLY, "q1", true, Some(g)));
            events.push(answer(&l, 3, MULTIPLY, "q3", true, Some(g)));
        }
    }
    api.events(events).await;
    let ada = token(Role::Educator, "ada", &["fractions"], None);
    let (status, course) = api.call("GET", "/v1/analytics/skills?course=fractions", &ada, None).await;
    assert_eq!(status, 200, "{course}");
    assert_eq!(course["learners"], 11);
    let multiply = course["skills"].as_array().unwrap().iter().find(|s| s["skill"] == "fractions.multiply").unwrap();
    assert_eq!(multiply["learners"], 11, "{multiply:#}");
    assert_eq!(multiply["attempts"], 44);
    assert_eq!(multiply["demand"]["recall"]["wrong_rate"], 0.0);
    let reasoning = multiply["demand"]["reasoning"]["wrong_rate"].as_f64().unwrap();
    assert!(reasoning > 0.6, "weak at reasoning: {multiply:#}");
    // a skill nobody answered says so: no learners, no rate (a figure over no one is about no one)
    let divide = course["skills"].as_array().unwrap().iter().find(|s| s["skill"] == "fractions.divide").unwrap();
    assert_eq!((&divide["learners"], &divide["wrong_rate"]), (&json!(0), &Value::Null), "{divide}");
    // B has 3 learners: suppressed; and A with it, or course − A would give B
    let groups = course["groups"].as_array().unwrap();
    assert!(groups.iter().all(|g| g["learners"] == "suppressed"), "{groups:?}");
    let (_, b) = api.call("GET", "/v1/analytics/skills?course=fractions&group=B", &ada, None).await;
    let (_, a) = api.call("GET", "/v1/analytics/skills?course=fractions&group=A", &ada, None).await;
    for report in [&a, &b] {
        let m = report["skills"].as_array().unwrap().iter().find(|s| s["skill"] == "fractions.multiply").unwrap();
        for f in ["learners", "attempts", "wrong_rate", "hints_per_answer"] {
            assert_eq!(m[f], "suppressed", "{f} of group {}: {m:#}", report["group"]);
        }
        assert!(!report.to_string().contains("\"learners\":3"), "{report}");
    }
    // a manager whose token names group A sees only A, and is refused B
    let manager = token(Role::Educator, "max", &["fractions"], Some("A"));
    let (status, mine) = api.call("GET", "/v1/analytics/skills?course=fractions", &manager, None).await;
    assert_eq!((status, mine["group"].as_str()), (200, Some("A")));
    assert_eq!(api.call("GET", "/v1/analytics/skills?course=fractions&group=B", &manager, None).await.0, 403);

    // components, CSV
    let (status, comps) = api.call("GET", "/v1/analytics/components?course=fractions", &ada, None).await;
    assert_eq!(status, 200, "{comps}");
    let ex = comps["components"].as_array().unwrap().iter().find(|c| c["component"] == MULTIPLY).unwrap();
    assert_eq!(ex["attempts"], 44);
    assert_eq!(comps["quiet_learners"], 11, "answers dated weeks ago: all quiet: {comps:#}");
    assert_eq!(comps["dropoff"][0]["component"], MULTIPLY);
    let r = api
        .client
        .get(format!("{}/v1/analytics/skills?course=fractions&format=csv", api.app.base))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("skill,name,learners,attempts,wrong_rate"));
    let row = csv.lines().find(|l| l.starts_with("fractions.multiply,")).unwrap();
    assert!(row.starts_with("fractions.multiply,Multiplying fractions,11,44,"), "{row}");
    let b_csv = api
        .client
        .get(format!("{}/v1/analytics/skills?course=fractions&group=B&format=csv", api.app.base))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let b_row = b_csv.lines().find(|l| l.starts_with("fractions.multiply,")).unwrap();
    assert!(b_row.starts_with("fractions.multiply,Multiplying fractions,suppressed,suppressed,suppressed"), "{b_row}");
    let (status, e) = api.call("GET", "/v1/analytics/skills", &ada, None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("missing_course")));

    // an erased learner leaves the figures
    let admin = token(Role::Admin, "root", &[], None);
    assert_eq!(api.call("DELETE", "/v1/learners/A1", &admin, None).await.0, 200);
    let (_, after) = api.call("GET", "/v1/analytics/skills?course=fractions", &ada, None).await;
    let m = after["skills"].as_array().unwrap().iter().find(|s| s["skill"] == "fractions.multiply").unwrap();
    assert_eq!((&m["learners"], &m["attempts"]), (&json!(10), &json!(40)), "{m:#}");
    assert_eq!(after["learners"], 10);
}

async fn priorities_are_kept_with_who_set_them_and_lead_the_plans_review_with_a_reason(pg: bool) {
    let Some(api) =
        Api::new(pg, SECRET, "priorities_are_kept_with_who_set_them_and_lead_the_plans_review_with_a_reason").await
    else {
        return;
    };
    // lena is weak on multiplying, a prerequisite of dividing
    api.events((0..2).map(|n| answer("lena", n, MULTIPLY, "q1", false, None)).collect()).await;
    let lena = token(Role::Learner, "lena", &[], None);
    let plan_path = format!("/v1/learners/lena/plan?component={DIVIDE}");
    let before = api.call("GET", &plan_path, &lena, None).await.1;
    let review = before["review"].as_array().unwrap();
    assert_eq!(review[0]["skill"], "fractions.multiply", "{before:#}");
    assert!(!review[0]["reason"].as_str().unwrap().contains("priority"));
    let ada = token(Role::Educator, "ada", &["fractions"], None);
    let (status, set) = api
        .call("PUT", "/v1/courses/fractions/priorities", &ada, Some(&json!({"skills": ["fractions.multiply"]})))
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["priorities"][0]["set_by"], "educator:ada");
    let after = api.call("GET", &plan_path, &lena, None).await.1;
    assert!(after["review"][0]["reason"].as_str().unwrap().contains("priority"), "{after:#}");
    // a skill of another course, or a stranger's edit, is refused
    let (status, _) = api
        .call("PUT", "/v1/courses/fractions/priorities", &ada, Some(&json!({"skills": ["security.passwords"]})))
        .await;
    assert_eq!(status, 422);
    let eve = token(Role::Educator, "eve", &["security"], None);
    assert_eq!(api.call("PUT", "/v1/courses/fractions/priorities", &eve, Some(&json!({"skills": []}))).await.0, 403);
    assert_eq!(api.call("GET", "/v1/courses/nope/priorities", &ada, None).await.0, 404);
}

async fn a_flag_raised_in_chat_shows_the_conversation_around_it(pg: bool) {
    let Some(api) = Api::new(pg, SECRET, "a_flag_raised_in_chat_shows_the_conversation_around_it").await else {
        return;
    };
    let zoe = token(Role::Learner, "zoe", &[], None);
    let said = "I don't get dividing fractions at all";
    let (status, turn) =
        api.call("POST", "/v1/tutor/chat", &zoe, Some(&json!({"component_id": DIVIDE, "message": said}))).await;
    assert_eq!(status, 200, "{turn}");
    let ada = token(Role::Educator, "ada", &["fractions"], None);
    let (_, page) = api.call("GET", "/v1/flags?course=fractions", &ada, None).await;
    let flag = page["flags"].as_array().unwrap().iter().find(|f| f["learner"] == "zoe").expect("a flag for zoe");
    assert_eq!(flag["reason"], "confusion", "{flag}");
    let (status, d) = api.call("GET", &format!("/v1/flags/{}", flag["id"].as_str().unwrap()), &ada, None).await;
    assert_eq!(status, 200, "{d}");
    let transcript = d["transcript"].as_array().unwrap();
    assert_eq!(transcript[0]["role"], "learner", "{d:#}");
    assert_eq!(transcript[0]["content"], said);
    assert!(transcript.iter().any(|t| t["role"] == "tutor" && t["content"] == turn["answer"]), "{d:#}");
    assert_eq!(d["rules"][0]["excerpt"], said);
}

// each test on SQLite and on PostgreSQL
on_both! {
    a_flag_raised_in_chat_shows_the_conversation_around_it => chat_flag_on_sqlite, chat_flag_on_postgres;
    the_queue_filters_orders_and_pages_and_counts_by_status => the_queue_filters_orders_and_pages_and_counts_by_status_on_sqlite, the_queue_filters_orders_and_pages_and_counts_by_status_on_postgres;
    a_flag_shows_its_evidence_and_changes_status_once_even_when_two_educators_resolve_it => a_flag_shows_its_evidence_and_changes_status_once_even_when_two_educators_resolve_it_on_sqlite, a_flag_shows_its_evidence_and_changes_status_once_even_when_two_educators_resolve_it_on_postgres;
    analytics_show_the_struggle_and_never_a_group_under_five_even_by_subtraction => analytics_show_the_struggle_and_never_a_group_under_five_even_by_subtraction_on_sqlite, analytics_show_the_struggle_and_never_a_group_under_five_even_by_subtraction_on_postgres;
    priorities_are_kept_with_who_set_them_and_lead_the_plans_review_with_a_reason => priorities_are_kept_with_who_set_them_and_lead_the_plans_review_with_a_reason_on_sqlite, priorities_are_kept_with_who_set_them_and_lead_the_plans_review_with_a_reason_on_postgres;
}
