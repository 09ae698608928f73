//! The in-process embedder on this machine's CPU: throughput on 256-token chunks, query
//! latency (one learner question at a time), and ingest of the sample courses with dense
//! vectors on (cold embedding cache, then warm), against BM25 only.
//!
//! `TUTOR_EMBED_MODEL_DIR=$(scripts/fetch-model.sh) cargo bench --bench embed`
//! (`RAYON_NUM_THREADS` sets the threads the model uses; default: every core.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tutor::config::Config;
use tutor::content::{LoadOptions, load_library};
use tutor::retrieval::{Embedder, LocalEmbedder, Retriever, SearchFilter, SearchRequest, ingest};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let dir = std::env::var_os("TUTOR_EMBED_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/models/all-MiniLM-L6-v2"));
    if !dir.join("model.safetensors").is_file() {
        eprintln!("no model in {} (scripts/fetch-model.sh fetches all-MiniLM-L6-v2)", dir.display());
        std::process::exit(2);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("model folder {} on {threads} core(s)", dir.display());

    let t = Instant::now();
    let e = Arc::new(LocalEmbedder::load(&dir, "all-MiniLM-L6-v2", 256, 32).unwrap());
    println!("load: {:.0} ms ({}, {} dimensions)", ms(t.elapsed()), e.model(), e.dimensions().unwrap_or(0));

    // chunks of 256 tokens: course-like sentences repeated past the limit, so each is truncated
    // to exactly the model's 256
    let sentence = "To add fractions with different denominators, rewrite both over a common denominator first, then add the numerators. ";
    let chunks: Vec<String> = (0..64).map(|i| format!("Chunk {i}. {}", sentence.repeat(12))).collect();
    let _ = e.embed(&chunks[..4]).await.unwrap();
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let v = e.embed(&chunks).await.unwrap();
        assert_eq!(v.len(), chunks.len());
        rates.push(chunks.len() as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!("throughput at 256 tokens: median {:.1} chunks/s (runs {:.1}..{:.1})", rates[1], rates[0], rates[2]);

    let questions = [
        "what is phishing and how do I spot it?",
        "a top heavy fraction",
        "why do you flip the second fraction when dividing",
        "someone rang pretending to be IT and asked for my password, what now",
        "is 1/8 bigger than 1/6 because 8 is bigger",
        "do i need that code thing on my phone every time i log in",
    ];
    let mut lat = Vec::new();
    for i in 0..300 {
        let q = questions[i % questions.len()].to_owned();
        let t = Instant::now();
        let _ = e.embed(std::slice::from_ref(&q)).await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "query embedding (one question, {} runs): p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );

    // ingest of the sample courses: BM25 only, dense with a cold cache, dense with a warm one
    let content = Path::new(env!("CARGO_MANIFEST_DIR")).join("content");
    let lib = load_library(&content, &LoadOptions::default()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let pb = indicatif::ProgressBar::hidden();
    for (label, embedder) in [
        ("BM25 only", None),
        ("dense, cold cache", Some(e.clone() as Arc<dyn Embedder>)),
        ("dense, warm cache", Some(e.clone() as Arc<dyn Embedder>)),
    ] {
        // a new index each time; the embedding cache in the data dir stays
        let _ = std::fs::remove_dir_all(data.path().join("index"));
        let cfg = Config { data_dir: data.path().to_owned(), content_dir: content.clone(), ..Config::default() };
        let t = Instant::now();
        let r = ingest(&cfg, &tutor::app::index(&cfg).unwrap(), &lib, embedder, &pb).await.unwrap();
        let el = t.elapsed();
        println!(
            "ingest of the sample courses, {label}: {:.2} s ({} components, {} chunks, {} embedded)",
            el.as_secs_f64(),
            r.components,
            r.chunks,
            r.embedded_chunks
        );
    }

    // search latency end to end through the retriever, hybrid vs BM25
    let cfg = Config { data_dir: data.path().to_owned(), content_dir: content.clone(), ..Config::default() };
    // one open index (qdrant-edge locks it) served by both retrievers
    let store = tutor::app::index(&cfg).unwrap().open_current().unwrap().expect("an index");
    let hybrid = Retriever::new(Some(e.clone()));
    hybrid.set_store(store.clone());
    let bm25 = Retriever::new(None);
    bm25.set_store(store);
    for (label, r) in [("BM25", &bm25), ("hybrid", &hybrid)] {
        let mut lat = Vec::new();
        for i in 0..300 {
            let req = SearchRequest {
                text: questions[i % questions.len()].into(),
                filter: SearchFilter {
                    course: Some(if i % 2 == 0 { "security" } else { "fractions" }.into()),
                    ..Default::default()
                },
                k: 5,
            };
            let t = Instant::now();
            let _ = r.search(&req).await.unwrap();
            lat.push(t.elapsed());
        }
        lat.sort();
        println!(
            "search, {label} (k 5, course filter): p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
    }
}
