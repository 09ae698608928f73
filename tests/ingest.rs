//! Ingest and search through the library API and the CLI: idempotence, incremental embedding,
//! removal, failure atomicity (bad content, failing embedder, SIGKILL), filters, hybrid search,
//! and answer keys never reaching the index.

#[macro_use]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tutor::content::{Format, Level, SkillId};
use tutor::retrieval::{SearchFilter, SearchMode, SearchRequest};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

on_backends! {
    ingest_twice_keeps_the_points_and_embeds_nothing_the_second_time => ingest_twice_keeps_the_points_and_embeds_nothing_the_second_time_on_the_embedded_index, ingest_twice_keeps_the_points_and_embeds_nothing_the_second_time_on_the_server;
    editing_one_component_re_embeds_only_that_component => editing_one_component_re_embeds_only_that_component_on_the_embedded_index, editing_one_component_re_embeds_only_that_component_on_the_server;
    a_deleted_component_is_gone_from_search => a_deleted_component_is_gone_from_search_on_the_embedded_index, a_deleted_component_is_gone_from_search_on_the_server;
    filters_return_only_matching_payloads => filters_return_only_matching_payloads_on_the_embedded_index, filters_return_only_matching_payloads_on_the_server;
    hybrid_search_fuses_bm25_and_dense_by_reciprocal_rank => hybrid_search_fuses_bm25_and_dense_by_reciprocal_rank_on_the_embedded_index, hybrid_search_fuses_bm25_and_dense_by_reciprocal_rank_on_the_server;
    search_degrades_to_bm25_when_the_embedder_fails => search_degrades_to_bm25_when_the_embedder_fails_on_the_embedded_index, search_degrades_to_bm25_when_the_embedder_fails_on_the_server;
    answer_keys_are_absent_from_every_stored_payload => answer_keys_are_absent_from_every_stored_payload_on_the_embedded_index, answer_keys_are_absent_from_every_stored_payload_on_the_server;
    an_embedder_failure_mid_ingest_changes_nothing => an_embedder_failure_mid_ingest_changes_nothing_on_the_embedded_index, an_embedder_failure_mid_ingest_changes_nothing_on_the_server;
    an_old_generation_serves_until_closed_then_goes => an_old_generation_serves_until_closed_then_goes_on_the_embedded_index, an_old_generation_serves_until_closed_then_goes_on_the_server;
    a_second_writer_is_refused_while_an_ingest_holds_the_lock => a_second_writer_is_refused_on_the_embedded_index, a_second_writer_is_refused_on_the_server;
}

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

async fn ingest_twice_keeps_the_points_and_embeds_nothing_the_second_time(backend: Backend) {
    let content = fruit_tree();
    let Some((mut cfg, _index)) =
        config_on(backend, content.path(), "ingest_twice_keeps_the_points_and_embeds_nothing_the_second_time")
    else {
        return;
    };
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

async fn editing_one_component_re_embeds_only_that_component(backend: Backend) {
    let content = fruit_tree();
    let Some((mut cfg, _index)) =
        config_on(backend, content.path(), "editing_one_component_re_embeds_only_that_component")
    else {
        return;
    };
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

async fn a_deleted_component_is_gone_from_search(backend: Backend) {
    let content = fruit_tree();
    let Some((cfg, _index)) = config_on(backend, content.path(), "a_deleted_component_is_gone_from_search") else {
        return;
    };
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

fn open_current_payloads(cfg: &tutor::config::Config) -> Vec<serde_json::Value> {
    open_current(cfg).payloads().unwrap()
}

fn current_generation(cfg: &tutor::config::Config) -> Option<String> {
    tutor::app::index(cfg).unwrap().current_generation().unwrap()
}

async fn filters_return_only_matching_payloads(backend: Backend) {
    let content = fruit_tree();
    let Some((cfg, _index)) = config_on(backend, content.path(), "filters_return_only_matching_payloads") else {
        return;
    };
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

async fn hybrid_search_fuses_bm25_and_dense_by_reciprocal_rank(backend: Backend) {
    let content = fruit_tree();
    let Some((mut cfg, _index)) =
        config_on(backend, content.path(), "hybrid_search_fuses_bm25_and_dense_by_reciprocal_rank")
    else {
        return;
    };
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

async fn search_degrades_to_bm25_when_the_embedder_fails(backend: Backend) {
    let content = fruit_tree();
    let Some((mut cfg, _index)) = config_on(backend, content.path(), "search_degrades_to_bm25_when_the_embedder_fails")
    else {
        return;
    };
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

async fn answer_keys_are_absent_from_every_stored_payload(backend: Backend) {
    let content = fruit_tree();
    let Some((cfg, _index)) = config_on(backend, content.path(), "answer_keys_are_absent_from_every_stored_payload")
    else {
        return;
    };
    ingest_with(&cfg, &load(content.path()), None).await;

    let payloads = open_current_payloads(&cfg);
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

async fn an_embedder_failure_mid_ingest_changes_nothing(backend: Backend) {
    let content = fruit_tree();
    let Some((mut cfg, _index)) = config_on(backend, content.path(), "an_embedder_failure_mid_ingest_changes_nothing")
    else {
        return;
    };
    let server = embeddings_server(64).await;
    let embedder = embedder_for(&server, &mut cfg);
    ingest_with(&cfg, &load(content.path()), Some(embedder.clone())).await;
    let before = open_current_payloads(&cfg);
    let current_before = current_generation(&cfg);

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
    let index = tutor::app::index(&cfg).unwrap();
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
    assert_eq!(current_generation(&cfg), current_before);
    assert_eq!(open_current_payloads(&cfg), before);
}

async fn an_old_generation_serves_until_closed_then_goes(backend: Backend) {
    let content = fruit_tree();
    let Some((cfg, _index)) = config_on(backend, content.path(), "an_old_generation_serves_until_closed_then_goes")
    else {
        return;
    };
    ingest_with(&cfg, &load(content.path()), None).await;
    let first = current_generation(&cfg).unwrap();
    let old = retriever(&cfg, None);

    std::fs::remove_file(content.path().join("mini/cherries.md")).unwrap();
    ingest_with(&cfg, &load(content.path()), None).await;

    // switched: a new reader gets the new generation; the open one still answers from its own
    let second = current_generation(&cfg).unwrap();
    assert_ne!(first, second);
    assert_eq!(open_current(&cfg).manifest().generation, second);
    let still = search(&old, "sour cherries in pies", SearchFilter::default(), 1).await;
    assert_eq!(ids(&still), ["mini-cherries"], "the generation being served was removed under it");
    let names: Vec<String> = generations(&cfg).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&first) && names.contains(&second), "{names:?}");

    drop(old);
    tutor::app::index(&cfg).unwrap().cleanup();
    assert_eq!(generations(&cfg), [(second, true)], "the old generation outlived its last reader");
}

async fn a_second_writer_is_refused_while_an_ingest_holds_the_lock(backend: Backend) {
    let content = fruit_tree();
    let Some((cfg, _index)) = config_on(backend, content.path(), "a_second_writer_is_refused") else {
        return;
    };
    let index = tutor::app::index(&cfg).unwrap();
    let held = index.lock_writer().unwrap();
    let other = tutor::app::index(&cfg).unwrap();

    let err = tutor::retrieval::ingest(&cfg, &other, &load(content.path()), None, &indicatif::ProgressBar::hidden())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another ingest is running"), "{err}");
    assert_eq!(current_generation(&cfg), None);

    drop(held);
    ingest_with(&cfg, &load(content.path()), None).await;
    assert!(current_generation(&cfg).is_some());
}

/// The same chunks in both backends, the same questions: the same components in the same order
/// with the same scores, for BM25 alone and fused with dense vectors.
#[tokio::test]
async fn rankings_agree_between_the_embedded_index_and_the_server() {
    let Some(server) = ServerIndex::fresh("rankings_agree_between_the_embedded_index_and_the_server") else {
        return;
    };
    let content = sample_content();
    let (mut edge_cfg, _data) = config(&content);
    let embeddings = embeddings_server(64).await;
    let embedder = embedder_for(&embeddings, &mut edge_cfg);
    let mut server_cfg = edge_cfg.clone();
    server_cfg.qdrant = server.cfg.clone();
    let lib = load(&content);
    let a = ingest_with(&edge_cfg, &lib, Some(embedder.clone())).await;
    let b = ingest_with(&server_cfg, &lib, Some(embedder.clone())).await;
    assert_eq!(a.chunks, b.chunks);
    let (edge, srv) = (retriever(&edge_cfg, Some(embedder.clone())), retriever(&server_cfg, Some(embedder)));

    let questions: Vec<_> = ["dev-fractions", "dev-security"]
        .iter()
        .flat_map(|f| {
            let path = content.parent().unwrap().join(format!("evals/retrieval/{f}.yaml"));
            tutor::retrieval::QuestionSet::read(&path, &lib).unwrap().questions
        })
        .collect();
    let mut compared = 0;
    for q in &questions {
        for (mode, filter) in [
            (SearchMode::Bm25, SearchFilter::default()),
            (SearchMode::Hybrid, SearchFilter::default()),
            (SearchMode::Bm25, SearchFilter { skills: vec![q.skill.clone()], ..Default::default() }),
        ] {
            let req = SearchRequest { text: q.question.clone(), filter, k: 5 };
            let (x, y) = (edge.search_with(&req, mode).await.unwrap(), srv.search_with(&req, mode).await.unwrap());
            assert_eq!(ids(&x), ids(&y), "{mode} ranking differs for {:?}", q.question);
            for (h, g) in x.iter().zip(&y) {
                assert!(
                    (h.score - g.score).abs() < 1e-3,
                    "{mode} score of {} differs: {} vs {}",
                    h.component_id,
                    h.score,
                    g.score
                );
            }
            compared += 1;
        }
    }
    assert!(compared >= 200, "{compared}");
}

// ---- through the CLI, as an operator runs it ----

fn tutor(data: &Path, server: Option<&ServerIndex>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tutor"));
    c.arg("--data-dir")
        .arg(data)
        .env_remove("TUTOR_EMBED_BASE_URL")
        .env_remove("TUTOR_QDRANT_URL")
        .env("TUTOR_EMBED_MODEL_ID", "none")
        .env("RUST_LOG", "warn");
    for (k, v) in server.map(ServerIndex::env).unwrap_or_default() {
        c.env(k, v);
    }
    c
}

/// The backend for a CLI test: `None` to skip; the server index when on the server.
fn cli_backend(backend: Backend, test: &str) -> Option<Option<ServerIndex>> {
    match backend {
        Backend::Edge => Some(None),
        Backend::Server => ServerIndex::fresh(test).map(Some),
    }
}

/// The index's generations as a `tutor` process on `data` (and `server`) sees them.
fn cli_generations(data: &Path, server: Option<&ServerIndex>) -> Vec<(String, bool)> {
    let mut cfg = tutor::config::Config { data_dir: data.to_owned(), ..Default::default() };
    if let Some(s) = server {
        cfg.qdrant = s.cfg.clone();
    }
    generations(&cfg)
}

fn cli_current(data: &Path, server: Option<&ServerIndex>) -> Option<String> {
    let mut cfg = tutor::config::Config { data_dir: data.to_owned(), ..Default::default() };
    if let Some(s) = server {
        cfg.qdrant = s.cfg.clone();
    }
    current_generation(&cfg)
}

#[test]
fn a_failing_ingest_leaves_search_results_byte_identical_on_the_embedded_index() {
    a_failing_ingest_leaves_search_results_byte_identical(Backend::Edge)
}

#[test]
fn a_failing_ingest_leaves_search_results_byte_identical_on_the_server() {
    a_failing_ingest_leaves_search_results_byte_identical(Backend::Server)
}

#[test]
fn an_ingest_killed_midway_leaves_the_previous_index_serving_on_the_embedded_index() {
    an_ingest_killed_midway_leaves_the_previous_index_serving(Backend::Edge)
}

#[test]
fn an_ingest_killed_midway_leaves_the_previous_index_serving_on_the_server() {
    an_ingest_killed_midway_leaves_the_previous_index_serving(Backend::Server)
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

fn a_failing_ingest_leaves_search_results_byte_identical(backend: Backend) {
    let Some(server) = cli_backend(backend, "a_failing_ingest_leaves_search_results_byte_identical") else {
        return;
    };
    let server = server.as_ref();
    let content = fruit_tree();
    let data = tempfile::tempdir().unwrap();
    run_ok(tutor(data.path(), server).arg("ingest").arg(content.path()));
    let search =
        || run_ok(tutor(data.path(), server).args(["search", "--json", "-k", "5", "fruit that grows on trees"]));
    let before = search();

    std::fs::write(content.path().join("mini/apples.md"), "---\nid: mini-apples\ntitle: Apples\nskills: [mini.a]\nlevel: intro\nformat: explanation\n---\nNew apple text.\n").unwrap();
    std::fs::write(
        content.path().join("mini/broken.md"),
        "---\nid: mini-broken\ntitle: Broken\nskills: [mini.zzz]\nlevel: intro\nformat: explanation\n---\nx\n",
    )
    .unwrap();
    let out = tutor(data.path(), server).arg("ingest").arg(content.path()).output().unwrap();

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

fn an_ingest_killed_midway_leaves_the_previous_index_serving(backend: Backend) {
    let Some(server) = cli_backend(backend, "an_ingest_killed_midway_leaves_the_previous_index_serving") else {
        return;
    };
    let server = server.as_ref();
    let content = fruit_tree();
    let data = tempfile::tempdir().unwrap();
    run_ok(tutor(data.path(), server).arg("ingest").arg(content.path()));
    let search =
        || run_ok(tutor(data.path(), server).args(["search", "--json", "-k", "5", "fruit that grows on trees"]));
    let before = search();
    let current_before = cli_current(data.path(), server);
    assert!(current_before.is_some());

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
    let mut child = tutor(data.path(), server).arg("ingest").arg(content.path()).spawn().unwrap();
    let started = Instant::now();
    loop {
        if cli_generations(data.path(), server).len() >= 2 {
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

    assert_eq!(cli_current(data.path(), server), current_before);
    assert_eq!(search(), before);
    assert!(cli_generations(data.path(), server).iter().any(|(_, complete)| !complete), "no half-built generation");
    // the next ingest is not locked out by the killed one, completes and sweeps the half-built
    // generation away
    run_ok(tutor(data.path(), server).arg("ingest").arg(content.path()));
    let gens = cli_generations(data.path(), server);
    assert_eq!(gens.len(), 1, "{gens:?}");
    assert!(gens[0].1 && Some(&gens[0].0) == cli_current(data.path(), server).as_ref(), "{gens:?}");
    assert_ne!(search(), before);
}
