//! The two index backends side by side, in one run: the embedded `qdrant-edge` index and a Qdrant
//! server through `qdrant-client` (gRPC on loopback). On the same 100,000 generated chunks (BM25
//! sparse vectors from our tokenizer, 384-dimensional dense vectors drawn at random around
//! 2,000 topic centres, payloads as ingest writes them): the time to build a generation, and the
//! latency of filtered BM25 and hybrid queries, one at a time from one client.
//!
//! `cargo bench --bench backends` prints the figures quoted in the README; `BENCH_SMALL=1` runs
//! 10,000 chunks. The server is `TUTOR_TEST_QDRANT_BIN` or `../shared/bin/qdrant`, started on
//! loopback ports with a temporary storage directory; without one, only the embedded index runs.
//! The embedder is not measured here (see `benches/embed.rs`): this is the store.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "shared/words.rs"]
mod words;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{QdrantProcess, free_port, qdrant_binary};
use tutor::config::QdrantConfig;
use tutor::content::{ChunkSettings, Format, Level, SkillId};
use tutor::retrieval::{
    Bm25, DenseSettings, EdgeIndex, Fusion, IndexBackend, IndexPoint, IndexSettings, Manifest, QdrantIndex,
    SearchFilter, StoreQuery, VectorStore,
};
use words::{Rng, WORDS};

const DIMS: usize = 384;
const SKILLS: usize = 20;
/// Words beyond the shared vocabulary, so that queries are not all made of common words.
const MORE_WORDS: &[&str] = &[
    "improper",
    "mixed",
    "quarter",
    "half",
    "third",
    "spot",
    "suspicious",
    "verify",
    "lock",
    "screen",
    "backup",
    "policy",
    "label",
    "public",
    "internal",
    "restricted",
];

fn words(rng: &mut Rng, n: usize) -> String {
    let pick = |i: usize| if i < WORDS.len() { WORDS[i] } else { MORE_WORDS[i - WORDS.len()] };
    (0..n).map(|_| pick(rng.next() % (WORDS.len() + MORE_WORDS.len()))).collect::<Vec<_>>().join(" ")
}

fn unit(rng: &mut Rng) -> f32 {
    (rng.next() % 1_000_000) as f32 / 1_000_000.0
}

/// Roughly normal, by the sum of four uniforms.
fn normal(rng: &mut Rng) -> f32 {
    (unit(rng) + unit(rng) + unit(rng) + unit(rng) - 2.0) * 1.7
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// A vector near `centre` (cosine about 0.8).
fn near(rng: &mut Rng, centre: &[f32]) -> Vec<f32> {
    normalised(centre.iter().map(|c| c + 0.035 * normal(rng)).collect())
}

struct Corpus {
    points: Vec<(u64, serde_json::Value, String, Vec<f32>)>,
    centres: Vec<Vec<f32>>,
    avg_len: f64,
}

fn corpus(chunks: usize) -> Corpus {
    let mut rng = Rng(42);
    let centres: Vec<Vec<f32>> = (0..2000).map(|_| normalised((0..DIMS).map(|_| normal(&mut rng)).collect())).collect();
    let mut total_words = 0;
    let points = (0..chunks)
        .map(|i| {
            let component = i / 4;
            let n = 40 + rng.next() % 40;
            let text = words(&mut rng, n);
            total_words += text.split(' ').count();
            let skill = component % SKILLS;
            let mut skills = vec![format!("bench.s{skill}")];
            if component % 7 == 0 {
                skills.push(format!("bench.s{}", (skill + 1) % SKILLS));
            }
            let payload = serde_json::json!({
                "component_id": format!("bench-c{component}"), "course": "bench", "title": format!("Component {component}"),
                "skills": skills, "level": Level::ALL[component % 4], "format": Format::ALL[(component / 4) % Format::ALL.len()],
                "chunk_index": i % 4, "text": text,
            });
            let dense = near(&mut rng, &centres[component % centres.len()]);
            (i as u64, payload, text, dense)
        })
        .collect();
    Corpus { points, centres, avg_len: total_words as f64 / chunks as f64 }
}

impl Corpus {
    fn manifest(&self) -> Manifest {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        Manifest {
            generation: format!("gen-{now}-{}", std::process::id()),
            created_unix_ms: now,
            settings: IndexSettings {
                chunking: ChunkSettings::default(),
                dense: Some(DenseSettings { model: "bench-random".into(), dimensions: DIMS as u32 }),
                bm25_avg_len: self.avg_len,
            },
            components: BTreeMap::new(),
            chunks: self.points.len(),
        }
    }

    fn index_points(&self) -> Vec<IndexPoint> {
        let bm25 = Bm25::new(self.avg_len);
        self.points
            .iter()
            .map(|(id, payload, text, dense)| IndexPoint {
                id: *id,
                payload: payload.clone(),
                sparse: bm25.document(text),
                dense: Some(dense.clone()),
            })
            .collect()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// Builds a generation on `index` from the corpus; returns the seconds it took.
fn build(index: &dyn IndexBackend, corpus: &Corpus) -> f64 {
    let points = corpus.index_points();
    let _lock = index.lock_writer().unwrap();
    let started = Instant::now();
    index.build(corpus.manifest(), points, &|_| {}).unwrap();
    started.elapsed().as_secs_f64()
}

struct Query {
    sparse: tutor::retrieval::Sparse,
    dense: Vec<f32>,
    filter: SearchFilter,
}

fn queries(corpus: &Corpus, n: usize) -> Vec<Query> {
    let mut rng = Rng(7);
    (0..n)
        .map(|i| Query {
            sparse: Bm25::query(&words(&mut rng, 3 + i % 5)),
            dense: {
                let centre = rng.next() % corpus.centres.len();
                near(&mut rng, &corpus.centres[centre])
            },
            filter: SearchFilter {
                skills: vec![SkillId::parse(&format!("bench.s{}", i % SKILLS)).unwrap()],
                levels: vec![Level::ALL[i % 4]],
                ..Default::default()
            },
        })
        .collect()
}

/// p50 and p99 in milliseconds of each kind of query, in the order of `KINDS`.
const KINDS: [&str; 4] =
    ["BM25, no filter", "BM25 + skill & level filter", "hybrid, no filter", "hybrid + skill & level filter"];

fn latencies(store: &dyn VectorStore, qs: &[Query]) -> Vec<(f64, f64)> {
    let make = |q: &Query, kind: usize| StoreQuery {
        sparse: Some(q.sparse.clone()),
        dense: (kind >= 2).then(|| q.dense.clone()),
        filter: if kind % 2 == 1 { q.filter.clone() } else { SearchFilter::default() },
        limit: 10,
        fusion: Fusion::default(),
    };
    for q in qs.iter().take(50) {
        for kind in 0..KINDS.len() {
            std::hint::black_box(store.query(&make(q, kind)).unwrap());
        }
    }
    (0..KINDS.len())
        .map(|kind| {
            let mut times: Vec<Duration> = qs
                .iter()
                .map(|q| {
                    let query = make(q, kind);
                    let started = Instant::now();
                    let hits = store.query(&query).unwrap();
                    let took = started.elapsed();
                    assert!(!hits.is_empty() || kind % 2 == 1, "an unfiltered query found nothing");
                    std::hint::black_box(hits);
                    took
                })
                .collect();
            times.sort();
            (percentile(&times, 0.5), percentile(&times, 0.99))
        })
        .collect()
}

/// Blocks until the collection behind `alias` has finished optimising (status green).
fn wait_green(rt: &tokio::runtime::Runtime, server: &QdrantProcess, alias: &str) {
    let url = format!("http://127.0.0.1:{}/collections/{alias}", server.http);
    rt.block_on(async {
        loop {
            let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            if body["result"]["status"] == "green" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

fn main() {
    let small = std::env::var("BENCH_SMALL").is_ok();
    let (chunks, n_queries) = if small { (10_000, 200) } else { (100_000, 1000) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!(
        "{chunks} chunks (4 per component, {SKILLS} skills, 4 levels), BM25 + {DIMS}-d dense; {n_queries} queries of each kind, one at a time, top 10"
    );
    let t = Instant::now();
    let corpus = corpus(chunks);
    let qs = queries(&corpus, n_queries);
    println!("  generated in {:.1} s", t.elapsed().as_secs_f64());

    let mut rows: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();

    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeIndex::new(dir.path().join("index"));
    let s = build(&edge, &corpus);
    println!("embedded (qdrant-edge): build {s:.1} s -> {:.0} chunks/s", chunks as f64 / s);
    let store: Arc<dyn VectorStore> = edge.open_current().unwrap().unwrap();
    rows.push(("embedded", latencies(store.as_ref(), &qs)));
    drop(store);

    match qdrant_binary("the Qdrant server") {
        None => {}
        Some(bin) => {
            let server = QdrantProcess::start(&bin, free_port());
            let cfg = QdrantConfig {
                url: Some(format!("http://127.0.0.1:{}", server.grpc)),
                collection: "bench".into(),
                ..Default::default()
            };
            let index = QdrantIndex::connect(&cfg).unwrap();
            println!("Qdrant server {} (gRPC, loopback)", index.server_version().unwrap());
            let s = build(&index, &corpus);
            let t = Instant::now();
            wait_green(&rt, &server, &index.alias());
            let optimised = t.elapsed().as_secs_f64();
            // the build switches the alias once the server has indexed the collection
            println!(
                "  build {s:.1} s -> {:.0} chunks/s (stored, indexed, switched; green {optimised:.1} s after)",
                chunks as f64 / s
            );
            let store = index.open_current().unwrap().unwrap();
            rows.push(("server", latencies(store.as_ref(), &qs)));
        }
    }

    println!(
        "{:<32} {}",
        "query (ms)",
        rows.iter().map(|(n, _)| format!("{n:>10} p50 {:>5} p99", "")).collect::<String>()
    );
    for (k, kind) in KINDS.iter().enumerate() {
        let cells: String = rows.iter().map(|(_, l)| format!("{:>14.2} {:>9.2}", l[k].0, l[k].1)).collect();
        println!("{kind:<32} {cells}");
    }
    if rows.len() == 2 {
        let ratio: Vec<String> = KINDS
            .iter()
            .enumerate()
            .map(|(k, kind)| format!("{kind}: {:.1}×", rows[1].1[k].0 / rows[0].1[k].0))
            .collect();
        println!("server / embedded, p50: {}", ratio.join("; "));
    }
}
