//! Ingest throughput and search latency on a generated corpus, BM25 only.
//! `cargo bench --bench retrieval` prints the figures quoted in the README.
//! `BENCH_SMALL=1` runs a quick, smaller version.

#[path = "shared/words.rs"]
mod words;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tutor::config::Config;
use tutor::content::{Format, Level, LoadOptions, SkillId, load_library};
use tutor::retrieval::{Bm25, Retriever, SearchFilter, SearchRequest, StoreQuery, VectorStore, ingest};
use words::{Rng, WORDS};

/// Writes a corpus of `n` components of about `paragraphs` × 70 words each; returns its root.
fn corpus(n: usize, paragraphs: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let course = dir.path().join("bench");
    std::fs::create_dir_all(course.join("components")).unwrap();
    let mut skills = String::from("course:\n  id: bench\n  title: Bench\nskills:\n");
    for s in 0..20 {
        skills.push_str(&format!(
            "  - id: bench.s{s}\n    name: Skill {s}\n    prerequisites: [{}]\n",
            if s > 0 { format!("bench.s{}", s - 1) } else { String::new() }
        ));
    }
    std::fs::write(course.join("skills.yaml"), skills).unwrap();
    let levels = ["intro", "developing", "proficient", "advanced"];
    let formats = ["explanation", "worked_example", "scenario", "summary"];
    let mut rng = Rng(42);
    for i in 0..n {
        let mut body = String::new();
        for p in 0..paragraphs {
            body.push_str(&format!("## Part {p}\n\n"));
            for _ in 0..5 {
                body.push_str(&rng.sentence());
                body.push(' ');
            }
            body.push_str("\n\n");
        }
        let text = format!(
            "---\nid: bench-c{i}\ntitle: \"Component {i}\"\nskills: [bench.s{}]\nlevel: {}\nformat: {}\n---\n{body}",
            i % 20,
            levels[i % 4],
            formats[(i / 4) % 4]
        );
        std::fs::write(course.join(format!("components/c{i}.md")), text).unwrap();
    }
    dir
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

struct Run {
    components: usize,
    chunks: usize,
    load_s: f64,
    ingest_s: f64,
    config: Config,
    _data: tempfile::TempDir,
    _content: tempfile::TempDir,
}

fn build(rt: &tokio::runtime::Runtime, n: usize, paragraphs: usize, chunk_tokens: usize) -> Run {
    let content = corpus(n, paragraphs);
    let data = tempfile::tempdir().unwrap();
    let config = Config { data_dir: data.path().to_owned(), chunk_tokens, chunk_overlap: 0, ..Config::default() };
    let t = Instant::now();
    let lib = load_library(content.path(), &LoadOptions::default()).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let index = tutor::app::index(&config).unwrap();
    let report = rt.block_on(ingest(&config, &index, &lib, None, &indicatif::ProgressBar::hidden())).unwrap();
    let ingest_s = t.elapsed().as_secs_f64();
    Run {
        components: report.components,
        chunks: report.chunks,
        load_s,
        ingest_s,
        config,
        _data: data,
        _content: content,
    }
}

fn search_latency(rt: &tokio::runtime::Runtime, run: &Run, queries: usize) {
    let store: Arc<dyn VectorStore> = tutor::app::index(&run.config).unwrap().open_current().unwrap().unwrap();
    let mut rng = Rng(7);
    let mut texts = Vec::new();
    for _ in 0..queries {
        texts.push(format!(
            "{} {} {}",
            WORDS[rng.next() % WORDS.len()],
            WORDS[rng.next() % WORDS.len()],
            WORDS[rng.next() % WORDS.len()]
        ));
    }
    let filter = |i: usize| SearchFilter {
        skills: vec![SkillId::parse(&format!("bench.s{}", i % 20)).unwrap()],
        levels: vec![Level::ALL[i % 4]],
        ..Default::default()
    };
    // warm-up
    for (i, t) in texts.iter().take(50).enumerate() {
        let _ = store
            .query(&StoreQuery {
                sparse: Some(Bm25::query(t)),
                dense: None,
                filter: filter(i),
                limit: 10,
                fusion: Default::default(),
            })
            .unwrap();
    }
    for (label, with_filter) in [("BM25, no filter", false), ("BM25 + skill & level filter", true)] {
        let mut times = Vec::with_capacity(queries);
        for (i, t) in texts.iter().enumerate() {
            let f = if with_filter { filter(i) } else { SearchFilter::default() };
            let q = StoreQuery {
                sparse: Some(Bm25::query(t)),
                dense: None,
                filter: f,
                limit: 10,
                fusion: Default::default(),
            };
            let s = Instant::now();
            let hits = store.query(&q).unwrap();
            times.push(s.elapsed());
            std::hint::black_box(hits);
        }
        times.sort();
        println!(
            "  store query, {label:<28} p50 {:.3} ms  p99 {:.3} ms  ({queries} queries)",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    // end to end through the Retriever: query embedding, spawn_blocking, dedup per component
    let retriever = Retriever::new(None);
    retriever.set_store(store);
    let mut times = Vec::with_capacity(queries);
    for (i, t) in texts.iter().enumerate() {
        let req = SearchRequest { text: t.clone(), filter: filter(i), k: 5 };
        let s = Instant::now();
        let hits = rt.block_on(retriever.search(&req)).unwrap();
        times.push(s.elapsed());
        std::hint::black_box(hits);
    }
    times.sort();
    println!(
        "  Retriever::search k=5 + filter        p50 {:.3} ms  p99 {:.3} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    let _ = Format::ALL;
}

fn main() {
    let small = std::env::var("BENCH_SMALL").is_ok();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let queries = if small { 200 } else { 2000 };

    let n = if small { 1000 } else { 10_000 };
    println!("ingest, BM25 only, {n} generated components (~2 chunks each, chunk size 256 tokens)");
    let run = build(&rt, n, 4, 256);
    println!(
        "  load+validate {:.2} s; ingest {:.2} s -> {:.0} components/s, {:.0} chunks/s ({} chunks)",
        run.load_s,
        run.ingest_s,
        run.components as f64 / run.ingest_s,
        run.chunks as f64 / run.ingest_s,
        run.chunks
    );
    println!("search at {} chunks", run.chunks);
    search_latency(&rt, &run, queries);
    drop(run);

    let (n, paras) = if small { (2000, 10) } else { (10_000, 4) };
    println!("ingest, BM25 only, {n} components of {paras} sections (chunk size 64 tokens)");
    let run = build(&rt, n, paras, 64);
    println!(
        "  ingest {:.2} s -> {:.0} components/s, {:.0} chunks/s ({} chunks)",
        run.ingest_s,
        run.components as f64 / run.ingest_s,
        run.chunks as f64 / run.ingest_s,
        run.chunks
    );
    println!("search at {} chunks", run.chunks);
    search_latency(&rt, &run, queries);
}
