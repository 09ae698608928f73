//! Analytics at scale: 10,000 learners in 20 groups, 200,000 answers on the fractions sample
//! course (each through the store's normal write path), then the skills and components reports
//! of the course and of one group, timed end to end (the queries and the shaping).
//! `cargo bench --bench analytics` prints the figures quoted in the README, on SQLite and — when
//! `TUTOR_TEST_DATABASE_URL` names a server — PostgreSQL (a fresh database for the run).
//! `BENCH_LEARNERS` changes the number of learners (20 answers each).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use tutor::analytics::{Analytics, View};
use tutor::config::PassportConfig;
use tutor::content::{Format, Library, LoadOptions, load_library};
use tutor::passport::{Event, LearnerId, PassportStore, SqlPassportStore, Verb};

const ANSWERS: usize = 20;

/// `ANSWERS` answers of learner `l`, on the course's exercises in order, over a few weeks.
fn answers(lib: &Library, l: usize) -> Vec<Event> {
    let course = &lib.courses["fractions"];
    let items: Vec<(&tutor::content::Component, &str)> = course
        .components
        .iter()
        .filter_map(|id| lib.components.get(id))
        .filter(|c| c.format == Format::Exercise)
        .flat_map(|c| c.items.iter().map(move |i| (c, i.id.as_str())))
        .collect();
    let learner = LearnerId::parse(&format!("b{l:05}")).unwrap();
    let mut x = l as u64 * 0x9e37_79b9 + 1;
    let start = 1_760_000_000_000i64 + (l as i64 % 97) * 86_400_000;
    (0..ANSWERS)
        .map(|i| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (c, item) = items[(l + i) % items.len()];
            let right = (x >> 33) % 10 < 6 + (i as u64 % 3);
            Event {
                id: format!("a{i}"),
                learner: learner.clone(),
                verb: Verb::Answered,
                component: c.id.clone(),
                item: Some(item.to_owned()),
                success: Some(right),
                score: None,
                response: (!right).then(|| ["3/8", "2/3", "1/2"][(x >> 50) as usize % 3].to_owned()),
                hints_used: Some((x >> 40) as u32 % 3),
                duration_ms: Some(10_000 + (x >> 45) % 30_000),
                timestamp: start + i as i64 * 3_600_000,
                group: Some(format!("class-{:02}", l % 20)),
            }
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(name: &str, url: &str, lib: &Arc<Library>, learners: usize) {
    let db = tutor::db::Database::connect(url).await.unwrap();
    let store = SqlPassportStore::new(db.clone(), 0.7);
    let t = Instant::now();
    let fresh = sqlx::query("SELECT COUNT(*) FROM events")
        .fetch_one(db.pool())
        .await
        .map(|r| sqlx::Row::get::<i64, _>(&r, 0) == 0);
    for chunk in (0..learners).collect::<Vec<_>>().chunks(50).filter(|_| fresh.as_ref().is_ok_and(|f| *f)) {
        let batch: Vec<Event> = chunk.iter().flat_map(|l| answers(lib, *l)).collect();
        store.record(&batch, lib).await.unwrap();
    }
    println!(
        "{name}: {learners} learners, {} answers written in {:.1} s",
        learners * ANSWERS,
        t.elapsed().as_secs_f64()
    );
    let cfg = PassportConfig::default();
    let now = 1_770_000_000_000;
    for (what, view) in [("course", View::Course), ("one group", View::Group("class-07".into()))] {
        let mut times = Vec::new();
        let mut loads = Vec::new();
        let mut check = 0.0;
        for _ in 0..15 {
            let t = Instant::now();
            let a = Analytics::load(&db, lib, "fractions", &cfg, 5, 14, now).await.unwrap();
            loads.push(t.elapsed());
            let skills = a.skills(lib, &view);
            let comps = a.components(lib, &view);
            let body = serde_json::to_vec(&(&skills, &comps)).unwrap();
            times.push(t.elapsed());
            check = skills.learners.value().unwrap_or(-1.0);
            std::hint::black_box(body);
        }
        times.sort();
        loads.sort();
        println!(
            "{name}: analytics of the {what} (skills + components reports, {check} learners): p50 {:.1} ms  p90 {:.1} ms (queries p50 {:.1} ms)",
            ms(times[times.len() / 2]),
            ms(times[times.len() * 9 / 10]),
            ms(loads[loads.len() / 2])
        );
    }
}

fn main() {
    let learners: usize = std::env::var("BENCH_LEARNERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let lib = Arc::new(
        load_library(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("content"), &LoadOptions::default())
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let data = tempfile::tempdir().unwrap();
        // BENCH_KEEP=DIR keeps the SQLite database there, to look at the queries
        let dir = std::env::var("BENCH_KEEP").map(std::path::PathBuf::from).unwrap_or_else(|_| data.path().to_owned());
        run("sqlite", &format!("sqlite://{}/tutor.db?mode=rwc", dir.display()), &lib, learners).await;
        match std::env::var("TUTOR_TEST_DATABASE_URL") {
            Ok(admin) => {
                sqlx::any::install_default_drivers();
                // with BENCH_KEEP the PostgreSQL database is kept too (tutor_bench_analytics)
                let keep = std::env::var_os("BENCH_KEEP").is_some();
                let name = if keep {
                    "tutor_bench_analytics".to_owned()
                } else {
                    format!("tutor_bench_analytics_{}", std::process::id())
                };
                let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
                let _ = sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await;
                let (base, _) = admin.rsplit_once('/').unwrap();
                run("postgres", &format!("{base}/{name}"), &lib, learners).await;
                if !keep {
                    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
                }
            }
            Err(_) => println!("postgres: skipped (TUTOR_TEST_DATABASE_URL is not set)"),
        }
    });
}
