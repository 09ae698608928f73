//! Durable event throughput (batches of 100, committed before the reply) on SQLite and
//! PostgreSQL, and passport read latency for a learner with 200 skills.
//! `cargo bench --bench passport` prints the figures quoted in the README; PostgreSQL runs when
//! `TUTOR_TEST_DATABASE_URL` names a server (a fresh database is created for the run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;
use tutor::config::PassportConfig;
use tutor::content::{ComponentId, Library, LoadOptions, load_library};
use tutor::ids::now_ms;
use tutor::passport::{Event, LearnerId, PassportStore, SqlPassportStore, passport, validate_statement};

const SKILLS: usize = 200;
const BATCH: usize = 100;

/// A course of 200 skills in a prerequisite chain, one exercise of four items per skill.
fn course() -> (tempfile::TempDir, Library) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bench");
    std::fs::create_dir_all(root.join("components")).unwrap();
    let mut skills = String::from("course:\n  id: bench\n  title: Bench\nskills:\n");
    for s in 0..SKILLS {
        let pre = if s == 0 { String::new() } else { format!("bench.s{}", s - 1) };
        skills.push_str(&format!(
            "  - id: bench.s{s}\n    name: Skill {s}\n    description: Skill number {s}.\n    prerequisites: [{pre}]\n"
        ));
        let items: String = (0..4)
            .map(|i| {
                let demand = ["recall", "application", "reasoning", "application"][i];
                format!(
                    "  - id: q{i}\n    prompt: \"Question {i}?\"\n    demand: {demand}\n    answer: \"{i}\"\n    hints: [\"Think.\"]\n    misconceptions:\n      - response: \"x\"\n        diagnosis: \"Guessed.\"\n"
                )
            })
            .collect();
        std::fs::write(
            root.join(format!("components/ex{s}.md")),
            format!(
                "---\nid: bench-ex-{s}\ntitle: \"Exercise {s}\"\nskills: [bench.s{s}]\nlevel: developing\nformat: exercise\nobjectives: [\"Practise {s}\"]\nitems:\n{items}---\nAnswer the questions about skill {s}.\n"
            ),
        )
        .unwrap();
    }
    std::fs::write(root.join("skills.yaml"), skills).unwrap();
    let lib = load_library(dir.path(), &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    (dir, lib)
}

/// `n` answered events for `learner`, in time order from `start` seconds, over all skills.
fn events(lib: &Library, learner: &str, n: usize, start: i64, seed: u64) -> Vec<Event> {
    let mut x = seed;
    let now = now_ms();
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let skill = (x >> 33) as usize % SKILLS;
            let ts = chrono::DateTime::from_timestamp(1_763_000_000 + start + i as i64, 0).unwrap();
            let v = json!({
                "id": format!("{learner}-{start}-{i}"), "actor": learner, "verb": "answered",
                "object": {"component": format!("bench-ex-{skill}"), "item": format!("q{}", i % 4)},
                "result": {"success": !(x >> 40).is_multiple_of(3), "hints_used": (x >> 50) % 2, "duration_ms": 5000},
                "timestamp": ts.to_rfc3339(),
            });
            validate_statement(&v, lib, now).unwrap()
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// Events/s recording `batches` batches of 100 (each for one of 50 learners), `clients` at a
/// time.
async fn throughput(
    store: &Arc<SqlPassportStore>,
    lib: &Arc<Library>,
    batches: usize,
    clients: usize,
    tag: &str,
) -> f64 {
    let work: Vec<Vec<Event>> = (0..batches)
        .map(|b| events(lib, &format!("{tag}-l{}", b % 50), BATCH, (b / 50 * BATCH) as i64, b as u64))
        .collect();
    let work = Arc::new(tokio::sync::Mutex::new(work.into_iter()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (store, lib, work) = (store.clone(), lib.clone(), work.clone());
            tokio::spawn(async move {
                loop {
                    let Some(batch) = work.lock().await.next() else {
                        break;
                    };
                    let r = store.record(&batch, &lib).await.unwrap();
                    assert_eq!(r.accepted, BATCH);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (batches * BATCH) as f64 / started.elapsed().as_secs_f64()
}

async fn read_latency(store: &Arc<SqlPassportStore>, lib: &Library, reads: usize) -> (f64, f64, usize) {
    let cfg = PassportConfig::default();
    let learner = LearnerId::parse("reader").unwrap();
    // 5 answers per skill, so every one of the 200 skills has evidence
    let all: Vec<Event> = (0..SKILLS * 5)
        .map(|i| {
            let mut e = events(lib, "reader", 1, i as i64, i as u64).remove(0);
            e.component = ComponentId::parse(&format!("bench-ex-{}", i % SKILLS)).unwrap();
            e
        })
        .collect();
    for b in all.chunks(BATCH) {
        store.record(b, lib).await.unwrap();
    }
    let mut times = Vec::with_capacity(reads);
    let mut skills = 0;
    for _ in 0..reads {
        let t = Instant::now();
        let state = store.learner(&learner).await.unwrap();
        let view = passport(lib, &cfg, &learner, &state);
        let body = serde_json::to_vec(&view).unwrap();
        times.push(t.elapsed());
        skills = view.skills.len();
        std::hint::black_box(body);
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), skills)
}

async fn run(name: &str, url: &str, lib: &Arc<Library>, small: bool) {
    let store = Arc::new(SqlPassportStore::new(tutor::db::Database::connect(url).await.unwrap(), 0.7));
    let batches = if small { 20 } else { 200 };
    let seq = throughput(&store, lib, batches, 1, "seq").await;
    let conc = throughput(&store, lib, batches, 8, "conc").await;
    println!(
        "{name}: durable events/s in batches of {BATCH}: {seq:.0} (1 client), {conc:.0} (8 clients), {} events each",
        batches * BATCH
    );
    let (p50, p99, skills) = read_latency(&store, lib, if small { 100 } else { 1000 }).await;
    println!("{name}: passport read (store + view + JSON), {skills} skills: p50 {p50:.3} ms  p99 {p99:.3} ms");
}

fn main() {
    let small = std::env::var_os("BENCH_SMALL").is_some();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (_content, lib) = course();
    let lib = Arc::new(lib);
    rt.block_on(async {
        let data = tempfile::tempdir().unwrap();
        run("sqlite", &format!("sqlite://{}/tutor.db?mode=rwc", data.path().display()), &lib, small).await;
        match std::env::var("TUTOR_TEST_DATABASE_URL") {
            Ok(admin) => {
                sqlx::any::install_default_drivers();
                let name = format!("tutor_bench_{}", std::process::id());
                let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
                let (base, _) = admin.rsplit_once('/').unwrap();
                run("postgres", &format!("{base}/{name}"), &lib, small).await;
                sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
            }
            Err(_) => println!("postgres: skipped (TUTOR_TEST_DATABASE_URL is not set)"),
        }
    });
}
