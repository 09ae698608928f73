//! The learner model learned from the organisation's answers: `tutor passport fit` over the
//! stored events (parameters, provenance, the passports replayed and served by a running
//! server, reset), and `tutor passport evaluate` on a file, through the CLI and the HTTP API
//! as an operator and an educator use them; on SQLite and PostgreSQL.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tutor::auth::Role;
use tutor::content::BktParams;
use tutor::passport::bkt;

const SECRET: &str = "fit-secret";

/// Draws answer sequences from BKT with `p` (the model the fit assumes).
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn simulate(rng: &mut Rng, p: &BktParams, n: usize) -> Vec<bool> {
    let mut known = rng.unit() < p.prior;
    (0..n)
        .map(|_| {
            let right = if known { rng.unit() >= p.slip } else { rng.unit() < p.guess };
            known = known || rng.unit() < p.learn;
            right
        })
        .collect()
}

/// `answered` statements of `learner` on `component`'s items in turn, a minute apart from `t0`.
fn answers(learner: &str, component: &str, items: &[&str], seq: &[bool], t0: i64) -> Vec<Value> {
    seq.iter()
        .enumerate()
        .map(|(i, right)| {
            let ts = chrono::DateTime::from_timestamp_millis(t0 + i as i64 * 60_000).unwrap();
            json!({"id": format!("{learner}-{component}-{i}"), "actor": learner, "verb": "answered",
                "object": {"component": component, "item": items[i % items.len()]},
                "result": {"success": right}, "timestamp": ts.to_rfc3339()})
        })
        .collect()
}

/// `tutor passport …` against the service's database (the data dir's SQLite file, or the
/// PostgreSQL database in `url`): exit status, stdout as JSON (or text), stderr.
async fn tutor(data: &std::path::Path, url: Option<&str>, args: &[&str]) -> (bool, Value, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tutor"));
    cmd.arg("--data-dir").arg(data).args(args).env("TUTOR_CONTENT_DIR", common::sample_content());
    match url {
        Some(u) => cmd.env("TUTOR_DATABASE_URL", u),
        None => cmd.env_remove("TUTOR_DATABASE_URL"),
    };
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Polls `f` until it returns `Some` (at most 20 s).
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn skill<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["fit"]["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["skill"] == id)
        .unwrap_or_else(|| panic!("{id} in {report}"))
}

fn mastery(passport: &Value, id: &str) -> f64 {
    passport["skills"].as_array().unwrap().iter().find(|s| s["skill"] == id).unwrap()["mastery"].as_f64().unwrap()
}

on_both! {
    fitting_learns_from_the_answers_and_every_passport_uses_it => fit_on_sqlite, fit_on_postgres;
}

async fn fitting_learns_from_the_answers_and_every_passport_uses_it(pg: bool) {
    let url = if pg {
        match common::fresh_postgres("fit").await {
            Some(u) => Some(u),
            None => return,
        }
    } else {
        None
    };
    let u = url.clone();
    let api = common::Api::with(pg, SECRET, "fit", move |c| c.database_url = u).await.unwrap();
    let data = api.app.data.path().to_owned();
    let admin = common::signed_token(SECRET, Role::Admin, "root", &[], None);
    let educator = common::signed_token(SECRET, Role::Educator, "eve", &["fractions"], None);

    // 150 learners answering division items as BKT with these parameters would have them
    // (far from the authored 0.10 / 0.12 / 0.15 / 0.10); 40 on the exercise of two skills;
    // 3 on a skill that is then too thin to fit
    let truth = BktParams { prior: 0.5, learn: 0.1, guess: 0.3, slip: 0.15 };
    let mut rng = Rng(11);
    let t0 = chrono::Utc::now().timestamp_millis() - 3 * 86_400_000;
    let mut statements = Vec::new();
    for l in 0..150 {
        let seq = simulate(&mut rng, &truth, 8);
        statements.extend(answers(&format!("fit-{l:03}"), "fractions-divide-ex-1", &["q1", "q2", "q3"], &seq, t0));
    }
    for l in 0..40 {
        let seq = simulate(&mut rng, &BktParams::default(), 6);
        statements.extend(answers(
            &format!("two-{l:02}"),
            "fractions-add-subtract-unlike-ex-2",
            &["q1", "q2"],
            &seq,
            t0,
        ));
    }
    for l in 0..3 {
        statements.extend(answers(&format!("thin-{l}"), "fractions-multiply-ex-1", &["q1"], &[true, false], t0));
    }
    for batch in statements.chunks(500) {
        api.events(batch.to_vec()).await;
    }

    let (status, before) = api.call("GET", "/v1/skills/fractions.divide/model", &educator, None).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["source"], "authored");
    assert_eq!(before["fit"], Value::Null);
    let (_, passport_before) = api.call("GET", "/v1/learners/fit-000/passport", &admin, None).await;
    let m_before = mastery(&passport_before, "fractions.divide");

    let (ok, report, err) = tutor(&data, url.as_deref(), &["passport", "fit", "--json"]).await;
    assert!(ok, "{err}\n{report}");
    let divide = skill(&report, "fractions.divide");
    assert_eq!(divide["source"], "fitted", "{divide}");
    assert_eq!(divide["learners"], 150);
    assert_eq!(divide["answers"], 1200);
    for (name, want) in [("prior", truth.prior), ("learn", truth.learn), ("guess", truth.guess), ("slip", truth.slip)] {
        let got = divide["after"][name].as_f64().unwrap();
        assert!((got - want).abs() < 0.15, "{name}: fitted {got}, generated with {want}: {divide}");
    }
    assert!(divide["log_likelihood_gain"].as_f64().unwrap() > 0.0, "{divide}");
    // an answer on the exercise of two skills is evidence of both: both are fitted from it
    for id in ["fractions.add-subtract-unlike", "fractions.common-denominator"] {
        let s = skill(&report, id);
        assert_eq!((s["learners"].as_u64(), s["answers"].as_u64()), (Some(40), Some(240)), "{s}");
    }
    let thin = skill(&report, "fractions.multiply");
    assert_eq!(thin["source"], "authored", "{thin}");
    assert_eq!(thin["after"]["prior"], 0.15, "too little data keeps the authored parameters: {thin}");
    assert!(thin["note"].as_str().unwrap().contains("too little data (3 learner(s), 6 answer(s)"), "{thin}");
    // the CLI replays the passports, and so does the running server once it sees the fit:
    // between them every one is replayed (checked on the passports below)
    assert!(report["recomputed_passports"].is_u64(), "{report}");
    // the same answers and seed give the same parameters
    let (ok, again, err) =
        tutor(&data, url.as_deref(), &["passport", "fit", "--json", "--skill", "fractions.divide"]).await;
    assert!(ok, "{err}");
    assert_eq!(skill(&again, "fractions.divide")["after"], divide["after"]);
    assert_eq!(again["fit"]["skills"].as_array().unwrap().len(), 1, "only the skill asked for: {again}");
    // the skills not asked for keep their fit
    let (_, two) = api.call("GET", "/v1/skills/fractions.common-denominator/model", &educator, None).await;
    assert_eq!(two["source"], "fitted", "{two}");
    let version = again["version"].as_i64().unwrap();
    let fitted = &divide["after"];
    let params = BktParams {
        prior: fitted["prior"].as_f64().unwrap(),
        learn: fitted["learn"].as_f64().unwrap(),
        guess: fitted["guess"].as_f64().unwrap(),
        slip: fitted["slip"].as_f64().unwrap(),
    };

    // the educator sees the parameters and where they come from
    let (_, model) = api.call("GET", "/v1/skills/fractions.divide/model", &educator, None).await;
    assert_eq!(model["source"], "fitted", "{model}");
    assert_eq!(model["model_version"], version);
    assert_eq!(model["fit"]["answers"], 1200);
    assert_eq!(model["fit"]["data_learners"], 193);
    assert_eq!(model["params"]["prior"], fitted["prior"]);
    assert_eq!(model["authored"]["prior"], 0.1);

    // the stored passports were replayed with the fitted parameters: a learner who answered
    // only division starts at the fitted prior
    let replayed = |seq: &[bool]| seq.iter().fold(params.prior, |m, &r| bkt::update(m, r, &params));
    let mut rng = Rng(11);
    let seq0 = simulate(&mut rng, &truth, 8);
    let (_, passport_after) = api.call("GET", "/v1/learners/fit-000/passport", &admin, None).await;
    let m_after = mastery(&passport_after, "fractions.divide");
    assert!((m_after - replayed(&seq0)).abs() < 1e-9, "{m_after} vs {}", replayed(&seq0));
    assert!((m_after - m_before).abs() > 1e-6, "the passport did not change: {m_before}");
    // and so were the others: the last learner generated
    let mut last = Vec::new();
    for _ in 1..150 {
        last = simulate(&mut rng, &truth, 8);
    }
    let (_, p) = api.call("GET", "/v1/learners/fit-149/passport", &admin, None).await;
    assert!((mastery(&p, "fractions.divide") - replayed(&last)).abs() < 1e-9, "{p}");

    // the running server picked the fit up: a new answer is applied with the fitted parameters
    let next = answers("fit-000", "fractions-divide-ex-1", &["q4"], &[true], t0 + 3_600_000);
    let mut with_next = seq0.clone();
    with_next.push(true);
    let id = next[0]["id"].as_str().unwrap().replace("-0", "-late");
    let mut late = next[0].clone();
    late["id"] = json!(id);
    eventually("the server applies new answers with the fitted parameters", || {
        let (api, admin, late, want) = (&api, &admin, late.clone(), replayed(&with_next));
        async move {
            api.events(vec![late]).await;
            let (_, p) = api.call("GET", "/v1/learners/fit-000/passport", admin, None).await;
            ((mastery(&p, "fractions.divide") - want).abs() < 1e-9).then_some(())
        }
    })
    .await;
    // the CLI reads the same passport
    let (ok, cli, err) = tutor(&data, url.as_deref(), &["passport", "fit-000", "--json"]).await;
    assert!(ok, "{err}");
    assert!((mastery(&cli, "fractions.divide") - replayed(&with_next)).abs() < 1e-9, "{cli}");

    // reset: the authored parameters again, and the passports replayed with them
    let (ok, reset, err) = tutor(&data, url.as_deref(), &["passport", "fit", "--reset", "--json"]).await;
    assert!(ok, "{err}\n{reset}");
    let (_, model) = api.call("GET", "/v1/skills/fractions.divide/model", &educator, None).await;
    assert_eq!((model["source"].as_str(), model["reset"].as_bool()), (Some("authored"), Some(true)), "{model}");
    let authored = BktParams { prior: 0.1, learn: 0.12, slip: 0.1, guess: 0.15 };
    let want = with_next.iter().fold(authored.prior, |m, &r| bkt::update(m, r, &authored));
    let (_, p) = api.call("GET", "/v1/learners/fit-000/passport", &admin, None).await;
    assert!((mastery(&p, "fractions.divide") - want).abs() < 1e-9, "{p}");

    // an educator of another course, a learner: not theirs
    let other = common::signed_token(SECRET, Role::Educator, "sam", &["security"], None);
    assert_eq!(api.call("GET", "/v1/skills/fractions.divide/model", &other, None).await.0, 403);
    assert_eq!(api.call("GET", "/v1/skills/fractions.nope/model", &educator, None).await.0, 404);
}

#[tokio::test]
async fn evaluate_reports_a_hand_computed_auc_on_a_tiny_file() {
    let dir = tempfile::tempdir().unwrap();
    // u2 is held out; u1's answers are too few to fit, so every set is the defaults
    // (prior 0.2, learn 0.15, slip 0.1, guess 0.2) on u2's answers 0, 1, 1, 1:
    // predictions 0.34, 0.32303, 0.59636, 0.81345 (worked out in the comment below)
    let csv = "order_id,user_id,skill_name,correct\n1,u1,s,1\n2,u1,s,0\n3,u2,s,0\n4,u2,s,1\n5,u2,s,1\n6,u2,s,1\n";
    std::fs::write(dir.path().join("tiny.csv"), csv).unwrap();
    std::fs::write(dir.path().join("test.txt"), "u2\n").unwrap();
    let file = dir.path().join("tiny.csv");
    let test = dir.path().join("test.txt");
    let (ok, ev, err) = tutor(
        dir.path(),
        None,
        &["passport", "evaluate", file.to_str().unwrap(), "--test-learners", test.to_str().unwrap(), "--json"],
    )
    .await;
    assert!(ok, "{err}\n{ev}");
    let authored = ev["results"].as_array().unwrap().iter().find(|r| r["name"] == "authored").unwrap();
    // p1 = 0.2·0.9 + 0.8·0.2 = 0.34 (wrong); posterior 0.02/0.66 = 0.030303, then learning
    // 0.030303 + 0.969697·0.15 = 0.175758: p2 = 0.323030 (right); posterior 0.489681 → 0.566229:
    // p3 = 0.596229·… and so on. One negative (0.34) against positives 0.3230, 0.5962, 0.8135:
    // two of three pairs ranked right → AUC 2/3
    let preds = [(0.34, false), (0.323_030, true), (0.596_361, true), (0.813_453, true)];
    let rmse = (preds.iter().map(|(p, y)| (p - f64::from(u8::from(*y))).powi(2)).sum::<f64>() / 4.0).sqrt();
    assert_eq!(authored["predictions"], 4, "{ev}");
    assert!((authored["auc"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9, "{authored}");
    assert!((authored["rmse"].as_f64().unwrap() - rmse).abs() < 1e-4, "{authored} vs {rmse}");
    assert_eq!(ev["skills_fitted"], 0);
    assert_eq!(ev["test_learners"], 1);
    let fitted = ev["results"].as_array().unwrap().iter().find(|r| r["name"] == "fitted").unwrap();
    assert_eq!(fitted["auc"], authored["auc"], "nothing fitted: the same predictions");

    // a bad row is named with its line
    std::fs::write(dir.path().join("bad.csv"), "user_id,skill,correct\nu1,s,1\nu2,s,yes\n").unwrap();
    let bad = dir.path().join("bad.csv");
    let (ok, _, err) = tutor(dir.path(), None, &["passport", "evaluate", bad.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(err.contains("bad.csv:3: correct is 'yes', expected 0 or 1"), "{err}");
}

#[tokio::test]
async fn evaluate_reads_our_events_and_fitting_beats_the_defaults_on_data_from_other_parameters() {
    let dir = tempfile::tempdir().unwrap();
    // 400 learners on division, answering as learners with a high prior and a high guess do
    let truth = BktParams { prior: 0.6, learn: 0.05, guess: 0.35, slip: 0.12 };
    let mut rng = Rng(5);
    let t0 = chrono::Utc::now().timestamp_millis() - 86_400_000;
    let mut lines = String::new();
    for l in 0..400 {
        let seq = simulate(&mut rng, &truth, 10);
        for s in answers(&format!("ev-{l:03}"), "fractions-divide-ex-1", &["q1", "q2", "q3"], &seq, t0) {
            lines.push_str(&format!("{s}\n"));
        }
    }
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines).unwrap();
    let (ok, ev, err) = tutor(dir.path(), None, &["passport", "evaluate", file.to_str().unwrap(), "--json"]).await;
    assert!(ok, "{err}\n{ev}");
    assert_eq!((ev["learners"].as_u64(), ev["test_learners"].as_u64()), (Some(400), Some(80)), "{ev}");
    let auc = |name: &str| {
        ev["results"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()["auc"].as_f64().unwrap()
    };
    let loss = |name: &str| {
        ev["results"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap()["log_loss"].as_f64().unwrap()
    };
    assert_eq!(ev["skills_fitted"], 1);
    assert!(loss("fitted") < loss("authored"), "fitted {} vs authored {}", loss("fitted"), loss("authored"));
    assert!(auc("fitted") >= auc("authored") - 0.01, "{ev}");
    // the same file and seed: the same figures
    let (_, again, _) = tutor(dir.path(), None, &["passport", "evaluate", file.to_str().unwrap(), "--json"]).await;
    assert_eq!(again["results"], ev["results"]);
}

#[test]
fn an_individualised_prior_starts_a_strong_learner_higher_and_says_why() {
    let mut lib = common::load(&common::sample_content());
    let multiply: tutor::content::SkillId = tutor::content::SkillId::parse("fractions.multiply").unwrap();
    let divide = tutor::content::SkillId::parse("fractions.divide").unwrap();
    let prior = lib.bkt(&divide).prior;
    lib.learned =
        tutor::content::LearnedParams { version: 1, prior_weight: 1.0, mean_accuracy: 0.5, ..Default::default() };
    let learner = tutor::passport::LearnerId::parse("strong").unwrap();
    let t0 = chrono::Utc::now().timestamp_millis() - 86_400_000;
    let mut statements = answers("strong", "fractions-multiply-ex-1", &["q1", "q2", "q3", "q4"], &[true; 8], t0);
    statements.extend(answers("strong", "fractions-divide-ex-1", &["q1"], &[true], t0 + 3_600_000));
    let now = tutor::ids::now_ms();
    let events: Vec<tutor::passport::Event> =
        statements.iter().map(|s| tutor::passport::validate_statement(s, &lib, now).unwrap()).collect();
    let mut st = tutor::passport::LearnerState::default();
    st.apply_all(&lib, &events.iter().take(8).collect::<Vec<_>>(), 0.8, |_, _, _| {});
    // 8 of 8 right on multiplication: division starts above its prior before any answer on it
    let start = st.mastery(&lib, &divide);
    let want = bkt::start_prior(prior, 1.0, 0.5, 8, 8);
    assert!((start - want).abs() < 1e-12 && start > prior + 0.05, "{start} vs prior {prior}");
    assert!(st.mastery(&lib, &multiply) > 0.8);
    // without the weight (standard BKT) it starts at the prior
    let mut plain = lib.clone();
    plain.learned.prior_weight = 0.0;
    assert_eq!(st.mastery(&plain, &divide), prior);
    // the evidence trail says why the first division answer started where it did
    let cfg = tutor::config::PassportConfig::default();
    let trail = tutor::passport::evidence_trail(&lib, &cfg, &learner, &Default::default(), &events, &divide);
    let first = trail.steps.last().unwrap();
    assert!((first.mastery_before - want).abs() < 1e-12, "{first:?}");
    assert!(
        first.sentence.contains(&format!("started at {want:.2} rather than {prior:.2}: you got 8 of 8 answers right")),
        "{}",
        first.sentence
    );
}
