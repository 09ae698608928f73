//! Ingest and search through the library API and the CLI: idempotence, incremental embedding,
//! removal, failure atomicity (bad content, failing embedder, SIGKILL), filters, hybrid search,
//! and answer keys never reaching the index.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tutor::content::{Format, Level, SkillId};
use tutor::retrieval::{EdgeIndex, IndexBackend, SearchFilter};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const APPLES: &str = "Apples grow on trees in orchards. An apple tree blossoms in spring and the apples ripen in autumn, when orchards are picked by hand.";
const BANANAS: &str = "Bananas are yellow tropical fruit. A banana plant is a giant herb, and bananas ripen after they are picked, turning from green to yellow.";
const CHERRIES: &str = "Cherries are small red stone fruit. Cherry trees need cold winters; sweet cherries are eaten fresh and sour cherries go into pies.";
const DATES: &str = "Dates come from date palms in hot deserts. A date palm can give a hundred kilograms of dates each year from its heavy bunches.";

fn fruit_files() -> Vec<(String, String)> {
    vec![
        ("mini/skills.yaml".into(), SKILLS.into()),
        ("mini/apples.md".into(), explanation("mini-apples", "mini.a", "intro", "Apples", APPLES)),
        (
            "mini/bananas.md".into(),
            component(
                "id: mini-bananas\ntitle: Bananas\nskills: [mini.a]\nlevel: developing\nformat: worked_example",
                BANANAS,
            ),
        ),
        (
            "mini/cherries.md".into(),
            component(
                "id: mini-cherries\ntitle: Cherries\nskills: [mini.b]\nlevel: proficient\nformat: scenario",
                CHERRIES,
            ),
        ),
        (
            "mini/dates.md".into(),
            component(
                "id: mini-dates\ntitle: Dates\nskills: [mini.a, mini.b]\nlevel: advanced\nformat: summary",
                DATES,
            ),
        ),
        (
            "mini/ex.md".into(),
            component(
                "id: mini-fruit-ex\ntitle: Fruit quiz\nskills: [mini.a]\nlevel: developing\nformat: exercise\nitems:\n  - id: q1\n    prompt: Which fruit grows on palms?\n    demand: recall\n    answer: CANARY-ANSWER-7f3a\n    accept: [CANARY-ACCEPT-9b1c]\n    explanation: CANARY-EXPLANATION-2d4e\n    hints: [CANARY-HINT-5e6f]\n    misconceptions:\n      - response: CANARY-RESPONSE-8a9b\n        diagnosis: CANARY-DIAGNOSIS-0c1d",
                "Answer from what you read about fruit.",
            ),
        ),
    ]
}

fn fruit_tree() -> tempfile::TempDir {
    let files = fruit_files();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (p.as_str(), c.as_bytes())).collect();
    tree(&refs)
}

fn ids(hits: &[tutor::retrieval::Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.component_id.as_str()).collect()
}

#[tokio::test]
async fn ingest_twice_keeps_the_points_and_embeds_nothing_the_second_time() {
    let content = fruit_tree();
    let (mut cfg, _data) = config(content.path());
    let server = embeddings_server(64).await;
    let embedder = embedder_for(&server, &mut cfg);
    let lib = load(content.path());

    let first = ingest_with(&cfg, &lib, Some(embedder.clone())).await;
    let requests_after_first = server.received_requests().await.unwrap().len();
    let count_first = { open_current(&cfg).payloads() }.unwrap().len();
    let second = ingest_with(&cfg, &lib, Some(embedder)).await;

    assert!(first.rebuilt && first.embedded_chunks == first.chunks && first.chunks >= 5, "{first:?}");
    assert!(requests_after_first > 0);
    assert!(!second.rebuilt, "{second:?}");
    assert_eq!((second.unchanged, second.updated, second.removed, second.embedded_chunks), (5, 0, 0, 0));
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        requests_after_first,
        "second ingest called the embeddings endpoint"
    );
    let count_second = { open_current(&cfg).payloads() }.unwrap().len();
    assert_eq!(count_first, count_second);
    assert_eq!(count_first, first.chunks);
}

#[tokio::test]
async fn editing_one_component_re_embeds_only_that_component() {
    let content = fruit_tree();
    let (mut cfg, _data) = config(content.path());
    let server = embeddings_server(64).await;
    let embedder = embedder_for(&server, &mut cfg);
    ingest_with(&cfg, &load(content.path()), Some(embedder.clone())).await;
    let before = embedded_inputs(&server).await.len();

    let edited = component(
        "id: mini-bananas\ntitle: Bananas\nskills: [mini.a]\nlevel: developing\nformat: worked_example",
        &format!("{BANANAS} Plantains are bananas for cooking."),
    );
    std::fs::write(content.path().join("mini/bananas.md"), edited).unwrap();
    let report = ingest_with(&cfg, &load(content.path()), Some(embedder.clone())).await;

    let inputs = embedded_inputs(&server).await;
    let new_inputs = &inputs[before..];
    assert_eq!((report.unchanged, report.updated, report.removed), (4, 1, 0), "{report:?}");
    assert_eq!(report.embedded_chunks, new_inputs.len());
    assert!(!new_inputs.is_empty());
    assert!(new_inputs.iter().all(|t| t.starts_with("Bananas\n")), "{new_inputs:?}");
    let r = retriever(&cfg, Some(embedder));
    assert_eq!(ids(&search(&r, "plantains for cooking", SearchFilter::default(), 1).await), ["mini-bananas"]);
}

#[tokio::test]
async fn a_deleted_component_is_gone_from_search() {
    let content = fruit_tree();
    let (cfg, _data) = config(content.path());
    ingest_with(&cfg, &load(content.path()), None).await;
    {
        let r = retriever(&cfg, None);
        assert_eq!(ids(&search(&r, "sour cherries in pies", SearchFilter::default(), 1).await), ["mini-cherries"]);
    }
    std::fs::remove_file(content.path().join("mini/cherries.md")).unwrap();
    let report = ingest_with(&cfg, &load(content.path()), None).await;

    assert_eq!(report.removed, 1);
    let r = retriever(&cfg, None);
    let hits = search(&r, "sour cherries in pies", SearchFilter::default(), 10).await;
    assert!(!ids(&hits).contains(&"mini-cherries"), "{hits:?}");
    let payloads = r.store().unwrap().payloads().unwrap();
    assert!(payloads.iter().all(|p| p["component_id"] != "mini-cherries"));
}

fn open_current_payloads(index_dir: &Path) -> Vec<serde_json::Value> {
    EdgeIndex::new(index_dir).open_current().unwrap().unwrap().payloads().unwrap()
}

#[tokio::test]
async fn filters_return_only_matching_payloads() {
    let content = fruit_tree();
    let (cfg, _data) = config(content.path());
    ingest_with(&cfg, &load(content.path()), None).await;
    let r = retriever(&cfg, None);
    let q = "fruit trees palms apples bananas cherries dates";
    let skill = |s: &str| SkillId::parse(s).unwrap();

    let all = search(&r, q, SearchFilter::default(), 10).await;
    assert!(all.len() >= 4, "{all:?}");
    let by_level = search(&r, q, SearchFilter { levels: vec![Level::Intro], ..Default::default() }, 10).await;
    assert_eq!(ids(&by_level), ["mini-apples"]);
    let by_skill = search(&r, q, SearchFilter { skills: vec![skill("mini.b")], ..Default::default() }, 10).await;
    let mut got = ids(&by_skill);
    got.sort();
    assert_eq!(got, ["mini-cherries", "mini-dates"]);
    assert!(by_skill.iter().all(|h| h.skills.iter().any(|s| s == "mini.b")));
    let by_format =
        search(&r, q, SearchFilter { formats: vec![Format::Summary, Format::Scenario], ..Default::default() }, 10)
            .await;
    assert!(by_format.iter().all(|h| matches!(h.format, Format::Summary | Format::Scenario)) && by_format.len() == 2);
    let combined = search(
        &r,
        q,
        SearchFilter { skills: vec![skill("mini.a")], levels: vec![Level::Advanced], ..Default::default() },
        10,
    )
    .await;
    assert_eq!(ids(&combined), ["mini-dates"]);
    let other_course = search(&r, q, SearchFilter { course: Some("elsewhere".into()), ..Default::default() }, 10).await;
    assert!(other_course.is_empty());
    let this_course = search(&r, q, SearchFilter { course: Some("mini".into()), ..Default::default() }, 10).await;
    assert_eq!(this_course.len(), all.len());
}

#[tokio::test]
async fn hybrid_search_fuses_bm25_and_dense_by_reciprocal_rank() {
    let content = fruit_tree();
    let (mut cfg, _data) = config(content.path());
    let server = embeddings_server(64).await;
    let embedder = embedder_for(&server, &mut cfg);
    ingest_with(&cfg, &load(content.path()), Some(embedder.clone())).await;
    let r = retriever(&cfg, Some(embedder));
    let before = server.received_requests().await.unwrap().len();

    let hits = search(&r, "date palms in hot deserts", SearchFilter::default(), 3).await;

    assert_eq!(server.received_requests().await.unwrap().len(), before + 1, "the query was not embedded");
    assert_eq!(hits[0].component_id, "mini-dates");
    // first in both rankings: Qdrant's RRF gives 1/(60+0) + 1/(60+0) (ranks count from 0)
    assert!((hits[0].score - 2.0 / 60.0).abs() < 1e-4, "not an RRF score: {}", hits[0].score);
    assert!(r.store().unwrap().manifest().settings.dense.as_ref().is_some_and(|d| d.dimensions == 64));
}

#[tokio::test]
async fn search_degrades_to_bm25_when_the_embedder_fails() {
    let content = fruit_tree();
    let (mut cfg, _data) = config(content.path());
    let server = embeddings_server(64).await;
    let embedder = embedder_for(&server, &mut cfg);
    ingest_with(&cfg, &load(content.path()), Some(embedder.clone())).await;
    let r = retriever(&cfg, Some(embedder));
    server.reset().await;
    Mock::given(method("POST")).and(path("/embeddings")).respond_with(ResponseTemplate::new(400)).mount(&server).await;

    let hits = search(&r, "date palms in hot deserts", SearchFilter::default(), 3).await;

    assert_eq!(hits[0].component_id, "mini-dates");
    assert!(hits[0].score > 0.1, "expected a BM25 score, got {}", hits[0].score);
}

#[tokio::test]
async fn answer_keys_are_absent_from_every_stored_payload() {
    let content = fruit_tree();
    let (cfg, _data) = config(content.path());
    ingest_with(&cfg, &load(content.path()), None).await;

    let payloads = open_current_payloads(&cfg.index_dir());
    let all = serde_json::to_string(&payloads).unwrap();
    assert!(all.contains("Which fruit grows on palms?"), "the item prompt should be indexed");
    assert!(!all.contains("CANARY"), "an answer key reached the index: {all}");
    for p in &payloads {
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 8, "{keys:?}");
        for k in ["component_id", "course", "title", "skills", "level", "format", "chunk_index", "text"] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }
}

#[tokio::test]
async fn an_embedder_failure_mid_ingest_changes_nothing() {
    let content = fruit_tree();
    let (mut cfg, _data) = config(content.path());
    let server = embeddings_server(64).await;
    let embedder = embedder_for(&server, &mut cfg);
    ingest_with(&cfg, &load(content.path()), Some(embedder.clone())).await;
    let before = open_current_payloads(&cfg.index_dir());
    let current_before = std::fs::read_to_string(cfg.index_dir().join("CURRENT")).unwrap();

    std::fs::write(
        content.path().join("mini/apples.md"),
        explanation("mini-apples", "mini.a", "intro", "Apples", "Apples changed entirely."),
    )
    .unwrap();
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/embeddings"))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            serde_json::json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}),
        ))
        .expect(4) // the first try and the client's three retries with backoff
        .mount(&server)
        .await;
    let embedder = embedder_for(&server, &mut cfg);
    let index = tutor::app::index(&cfg);
    let err = tutor::retrieval::ingest(
        &cfg,
        &index,
        &load(content.path()),
        Some(embedder),
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap_err();

    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert_eq!(std::fs::read_to_string(cfg.index_dir().join("CURRENT")).unwrap(), current_before);
    assert_eq!(open_current_payloads(&cfg.index_dir()), before);
}

// ---- through the CLI, as an operator runs it ----

fn tutor(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tutor"));
    c.arg("--data-dir").arg(data).env_remove("TUTOR_EMBED_BASE_URL").env("RUST_LOG", "warn");
    c
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed:\n{}\n{}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_failing_ingest_leaves_search_results_byte_identical() {
    let content = fruit_tree();
    let data = tempfile::tempdir().unwrap();
    run_ok(tutor(data.path()).arg("ingest").arg(content.path()));
    let search = || run_ok(tutor(data.path()).args(["search", "--json", "-k", "5", "fruit that grows on trees"]));
    let before = search();

    std::fs::write(content.path().join("mini/apples.md"), "---\nid: mini-apples\ntitle: Apples\nskills: [mini.a]\nlevel: intro\nformat: explanation\n---\nNew apple text.\n").unwrap();
    std::fs::write(
        content.path().join("mini/broken.md"),
        "---\nid: mini-broken\ntitle: Broken\nskills: [mini.zzz]\nlevel: intro\nformat: explanation\n---\nx\n",
    )
    .unwrap();
    let out = tutor(data.path()).arg("ingest").arg(content.path()).output().unwrap();

    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.md:4: unknown skill 'mini.zzz'") && stderr.contains("previous index is unchanged"),
        "{stderr}"
    );
    assert_eq!(search(), before);
    let hits: serde_json::Value = serde_json::from_str(&before).unwrap();
    let first = &hits[0];
    for k in ["component_id", "title", "skills", "level", "format", "score", "text"] {
        assert!(!first[k].is_null(), "{k} missing in {first}");
    }
}

#[test]
fn an_ingest_killed_midway_leaves_the_previous_index_serving() {
    let content = fruit_tree();
    let data = tempfile::tempdir().unwrap();
    run_ok(tutor(data.path()).arg("ingest").arg(content.path()));
    let search = || run_ok(tutor(data.path()).args(["search", "--json", "-k", "5", "fruit that grows on trees"]));
    let before = search();
    let current_before = std::fs::read_to_string(data.path().join("index/CURRENT")).unwrap();

    // a corpus large enough that the build takes a while
    let words = ["orchard", "harvest", "ripe", "seed", "stone", "peel", "juice", "grove", "blossom", "root"];
    for i in 0..4000 {
        let body = format!(
            "Note {i} about the {} and the {} of fruit number {i}.\n\n{}",
            words[i % 10],
            words[(i / 10) % 10],
            APPLES
        );
        std::fs::write(
            content.path().join(format!("mini/gen-{i}.md")),
            explanation(&format!("mini-gen-{i}"), "mini.a", "developing", &format!("Note {i}"), &body),
        )
        .unwrap();
    }
    let mut child = tutor(data.path()).arg("ingest").arg(content.path()).spawn().unwrap();
    let started = Instant::now();
    let index = data.path().join("index");
    loop {
        let gens = std::fs::read_dir(&index)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("gen-"))
            .count();
        if gens >= 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the new generation never appeared");
        assert!(child.try_wait().unwrap().is_none(), "ingest finished before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().unwrap().is_none(), "ingest finished before it could be killed");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(std::fs::read_to_string(index.join("CURRENT")).unwrap(), current_before);
    assert_eq!(search(), before);
    // the next ingest completes and sweeps the half-built generation away
    run_ok(tutor(data.path()).arg("ingest").arg(content.path()));
    let gens = std::fs::read_dir(&index)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("gen-"))
        .count();
    assert_eq!(gens, 1);
    assert_ne!(search(), before);
}
