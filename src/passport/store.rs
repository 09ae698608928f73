//! Where events and passports live: the [`Store`] trait, and its SQL implementation for
//! SQLite (the embedded default) and PostgreSQL, through `sqlx`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row};

use super::event::{Event, LearnerId, Verb};
use super::model::{LearnerState, SkillState};
use crate::content::{ComponentId, Library, SkillId};

/// A store failure. The message is for logs; the API answers with a generic 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite: or postgres://)")]
    UnsupportedUrl,
    #[error("stored state of {learner} is unreadable: {message}")]
    Corrupt { learner: String, message: String },
}

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recorded {
    pub accepted: usize,
    pub duplicates: usize,
}

/// What an erase removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub events: u64,
    pub skills: u64,
    pub flags: u64,
    pub sessions: u64,
    pub turns: u64,
}

/// Learner state storage. Implementations serialize the updates of one learner, so that
/// concurrent batches never lose an update, and commit a batch before returning.
#[async_trait]
pub trait Store: Send + Sync {
    /// Appends the events not seen before and updates the passports they touch, in one
    /// transaction. Ids already stored (or repeated in the batch) count as duplicates.
    async fn record(&self, events: &[Event], lib: &Library) -> Result<Recorded, StoreError>;
    /// The learner's model; empty for a learner with no events.
    async fn learner(&self, learner: &LearnerId) -> Result<LearnerState, StoreError>;
    /// Deletes everything kept about the learner: events, passport, flags, transcripts.
    async fn erase(&self, learner: &LearnerId) -> Result<Erased, StoreError>;
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The SQL store, on SQLite or PostgreSQL (picked by the URL).
pub struct SqlStore {
    pool: AnyPool,
    relaxed: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time; queueing writers here avoids its busy-wait polling.
    write_lock: Option<tokio::sync::Mutex<()>>,
}

/// The migrations, embedded in the binary.
fn migrator() -> Migrator {
    Migrator {
        migrations: std::borrow::Cow::Owned(vec![
            Migration::new(
                1,
                "passport".into(),
                MigrationType::Simple,
                include_str!("../../migrations/0001_passport.sql").into(),
                false,
            ),
            Migration::new(
                2,
                "agent".into(),
                MigrationType::Simple,
                include_str!("../../migrations/0002_agent.sql").into(),
                false,
            ),
        ]),
        ..Migrator::DEFAULT
    }
}

/// Serializes one learner's writes on PostgreSQL until the transaction ends. (Selecting a
/// constant: the Any driver cannot decode the function's `void`.)
const ADVISORY_LOCK: &str = "SELECT 1 FROM pg_advisory_xact_lock(hashtextextended($1, 0))";

const EVENT_COLUMNS: &str =
    "learner, id, verb, component, item, success, score, response, hints_used, duration_ms, ts, received_at";
/// Rows per multi-row insert: 12 parameters each (6,000 in all), well below SQLite's 32,766
/// and PostgreSQL's 65,535.
const INSERT_ROWS: usize = 500;

impl SqlStore {
    /// Connects, creating the SQLite file if needed, and runs the migrations.
    #[tracing::instrument(skip_all, fields(backend))]
    pub async fn connect(url: &str) -> Result<Arc<Self>, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        tracing::Span::current().record("backend", format!("{backend:?}"));
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_path(url)
            && let Some(dir) = std::path::Path::new(&path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        let pool = Self::pool_with(url, backend, "FULL", if backend == Backend::Sqlite { 4 } else { 8 }).await?;
        migrator().run(&pool).await?;
        let write_lock = (backend == Backend::Sqlite).then(|| tokio::sync::Mutex::new(()));
        // transcripts and caches need not survive a power cut: on SQLite they commit without
        // waiting for the disk (WAL, synchronous NORMAL: still safe against a crash of the
        // process), so a busy tutor does not queue behind fsyncs
        let relaxed = match backend {
            Backend::Sqlite => Self::pool_with(url, backend, "NORMAL", 2).await?,
            Backend::Postgres => pool.clone(),
        };
        Ok(Arc::new(Self { pool, relaxed, backend, write_lock }))
    }

    async fn pool_with(
        url: &str,
        backend: Backend,
        synchronous: &'static str,
        max: u32,
    ) -> Result<AnyPool, StoreError> {
        Ok(AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; FULL syncs every commit, so
                        // an acknowledged batch survives a power cut
                        conn.execute(
                            format!("PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 10000;")
                                .as_str(),
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?)
    }

    /// The pool for data that may be lost to a power cut (transcripts, caches); on
    /// PostgreSQL the same pool.
    pub(crate) fn relaxed_pool(&self) -> &AnyPool {
        &self.relaxed
    }

    /// The connection pool, for the other stores kept in the same database.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether this is PostgreSQL (else SQLite).
    pub(crate) fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Serializes writers on SQLite (a no-op guard on PostgreSQL).
    pub(crate) async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        }
    }

    /// Takes the per-learner transaction lock on PostgreSQL.
    pub(crate) async fn lock_learner(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        learner: &str,
    ) -> Result<(), StoreError> {
        if self.is_postgres() {
            sqlx::query(ADVISORY_LOCK).bind(learner.to_owned()).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Inserts the events, returning the `(learner, id)` pairs that were new.
    async fn insert_events(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        events: &[&Event],
        received_at: i64,
    ) -> Result<BTreeSet<(String, String)>, StoreError> {
        let mut inserted = BTreeSet::new();
        for chunk in events.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO events ({EVENT_COLUMNS}) VALUES {} ON CONFLICT (learner, id) DO NOTHING RETURNING learner, id",
                placeholders(chunk.len(), 12)
            );
            // Not a cached prepared statement: sqlx 0.8.6's Any driver sends a NULL f64 as a
            // float4 parameter, and a statement prepared that way rejects the next real score.
            let mut q = sqlx::query(&sql).persistent(false);
            for e in chunk {
                q = q
                    .bind(e.learner.as_str().to_owned())
                    .bind(e.id.clone())
                    .bind(e.verb.as_str())
                    .bind(e.component.as_str().to_owned())
                    .bind(e.item.clone())
                    .bind(e.success.map(i64::from))
                    .bind(e.score)
                    .bind(e.response.clone())
                    .bind(e.hints_used.map(i64::from))
                    .bind(e.duration_ms.map(|d| d.min(i64::MAX as u64) as i64))
                    .bind(e.timestamp)
                    .bind(received_at);
            }
            for row in q.fetch_all(&mut **tx).await? {
                inserted.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
            }
        }
        Ok(inserted)
    }

    async fn load_state(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        learner: &LearnerId,
    ) -> Result<LearnerState, StoreError> {
        load_state(tx, learner).await
    }

    async fn all_events(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        learner: &LearnerId,
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE learner = $1 ORDER BY ts, id"))
            .bind(learner.as_str())
            .fetch_all(&mut **tx)
            .await?;
        rows.iter().filter_map(|r| event_from_row(r, learner).transpose()).collect()
    }

    async fn save(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        learner: &LearnerId,
        state: &LearnerState,
        skills: &BTreeSet<SkillId>,
        now: i64,
    ) -> Result<(), StoreError> {
        let skills: Vec<(&SkillId, &SkillState)> =
            skills.iter().filter_map(|s| state.skills.get(s).map(|st| (s, st))).collect();
        for chunk in skills.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO skill_states (learner, skill, mastery, evidence, state, updated_at) VALUES {} \
                 ON CONFLICT (learner, skill) DO UPDATE SET mastery = excluded.mastery, evidence = excluded.evidence, \
                 state = excluded.state, updated_at = excluded.updated_at",
                placeholders(chunk.len(), 6)
            );
            let mut q = sqlx::query(&sql);
            for (skill, st) in chunk {
                q = q
                    .bind(learner.as_str().to_owned())
                    .bind(skill.as_str().to_owned())
                    .bind(st.mastery)
                    .bind(i64::from(st.evidence))
                    .bind(serde_json::to_string(st).expect("state serializes"))
                    .bind(now);
            }
            q.execute(&mut **tx).await?;
        }
        let head = LearnerState { skills: BTreeMap::new(), ..state.clone() };
        sqlx::query(
            "INSERT INTO learners (learner, state, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (learner) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(learner.as_str())
        .bind(serde_json::to_string(&head).expect("state serializes"))
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// `($1, …, $cols), ($cols+1, …), …` for `rows` rows: numbered placeholders, which both SQLite
/// and PostgreSQL read (the Any driver's query builder writes `?`, which PostgreSQL does not).
fn placeholders(rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(r * cols + c + 1).to_string());
        }
        out.push(')');
    }
    out
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

fn event_from_row(r: &AnyRow, learner: &LearnerId) -> Result<Option<Event>, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt { learner: learner.to_string(), message };
    let verb: String = r.try_get("verb")?;
    let Ok(verb) = Verb::parse(&verb) else {
        return Err(corrupt(format!("unknown verb {verb}")));
    };
    // a component since removed from the content no longer counts
    let Ok(component) = ComponentId::parse(&r.try_get::<String, _>("component")?) else {
        return Ok(None);
    };
    Ok(Some(Event {
        id: r.try_get("id")?,
        learner: learner.clone(),
        verb,
        component,
        item: r.try_get("item")?,
        success: r.try_get::<Option<i64>, _>("success")?.map(|s| s != 0),
        score: r.try_get("score")?,
        response: r.try_get("response")?,
        hints_used: r.try_get::<Option<i64>, _>("hints_used")?.map(|h| h.clamp(0, i64::from(u32::MAX)) as u32),
        duration_ms: r.try_get::<Option<i64>, _>("duration_ms")?.map(|d| d.max(0) as u64),
        timestamp: r.try_get("ts")?,
    }))
}

async fn load_state(conn: &mut sqlx::AnyConnection, learner: &LearnerId) -> Result<LearnerState, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt { learner: learner.to_string(), message };
    let mut state: LearnerState = match sqlx::query("SELECT state FROM learners WHERE learner = $1")
        .bind(learner.as_str())
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(row) => serde_json::from_str(&row.try_get::<String, _>(0)?).map_err(|e| corrupt(e.to_string()))?,
        None => return Ok(LearnerState::default()),
    };
    for row in sqlx::query("SELECT skill, state FROM skill_states WHERE learner = $1")
        .bind(learner.as_str())
        .fetch_all(&mut *conn)
        .await?
    {
        let skill = SkillId::parse(&row.try_get::<String, _>(0)?).map_err(|e| corrupt(e.0))?;
        let st: SkillState = serde_json::from_str(&row.try_get::<String, _>(1)?).map_err(|e| corrupt(e.to_string()))?;
        state.skills.insert(skill, st);
    }
    Ok(state)
}

#[async_trait]
impl Store for SqlStore {
    #[tracing::instrument(skip_all, fields(events = events.len(), backend = self.backend()))]
    async fn record(&self, events: &[Event], lib: &Library) -> Result<Recorded, StoreError> {
        let _writer = match &self.write_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        // repeated ids within the batch are duplicates too
        let mut seen = BTreeSet::new();
        let unique: Vec<&Event> = events.iter().filter(|e| seen.insert((e.learner.as_str(), e.id.as_str()))).collect();
        let mut by_learner: BTreeMap<&LearnerId, Vec<&Event>> = BTreeMap::new();
        for e in &unique {
            by_learner.entry(&e.learner).or_default().push(e);
        }
        let now = super::event::now_ms();
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // one learner's batches are applied one at a time; locks taken in id order, so two
            // batches touching the same learners cannot deadlock
            for learner in by_learner.keys() {
                sqlx::query(ADVISORY_LOCK).bind(learner.as_str()).execute(&mut *tx).await?;
            }
        }
        let inserted = Self::insert_events(&mut tx, &unique, now).await?;
        for (learner, evs) in by_learner {
            let mut new: Vec<&Event> =
                evs.into_iter().filter(|e| inserted.contains(&(e.learner.to_string(), e.id.clone()))).collect();
            if new.is_empty() {
                continue;
            }
            new.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
            let mut state = Self::load_state(&mut tx, learner).await?;
            let touched: BTreeSet<SkillId> = if state.can_append(new[0]) {
                new.iter().flat_map(|e| state.apply(lib, e)).collect()
            } else {
                // an event older than the newest applied: replay the learner from the start
                let mut all = Self::all_events(&mut tx, learner).await?;
                state = LearnerState::replay(lib, &mut all);
                sqlx::query("DELETE FROM skill_states WHERE learner = $1")
                    .bind(learner.as_str())
                    .execute(&mut *tx)
                    .await?;
                state.skills.keys().cloned().collect()
            };
            Self::save(&mut tx, learner, &state, &touched, now).await?;
        }
        tx.commit().await?;
        Ok(Recorded { accepted: inserted.len(), duplicates: events.len() - inserted.len() })
    }

    async fn learner(&self, learner: &LearnerId) -> Result<LearnerState, StoreError> {
        // one connection, one snapshot: the learner row and its skill rows agree
        let mut tx = self.pool.begin().await?;
        let state = load_state(&mut tx, learner).await;
        tx.commit().await?;
        state
    }

    #[tracing::instrument(skip_all, fields(backend = self.backend()))]
    async fn erase(&self, learner: &LearnerId) -> Result<Erased, StoreError> {
        let _writer = match &self.write_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query(ADVISORY_LOCK).bind(learner.as_str()).execute(&mut *tx).await?;
        }
        let mut counts = [0u64; 6];
        // everything kept about the learner: events and passport, flags, tutor transcripts
        for (n, table) in ["events", "skill_states", "flags", "sessions", "turns", "learners"].iter().enumerate() {
            counts[n] = sqlx::query(&format!("DELETE FROM {table} WHERE learner = $1"))
                .bind(learner.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(Erased { events: counts[0], skills: counts[1], flags: counts[2], sessions: counts[3], turns: counts[4] })
    }

    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}
