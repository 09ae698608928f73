//! The learner database: one pool (and a relaxed-durability pool for transcripts and caches)
//! on SQLite or PostgreSQL through `sqlx`'s Any driver, the migrations, the write and learner
//! locks every store shares, and erasure across the stores in one transaction.
//!
//! The stores (`passport`, `flags`, `agent`) each own their tables and reach the database only
//! through [`Database`]; erasing a learner asks each store to delete what it owns
//! ([`LearnerData`]) inside one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};

use crate::ids::LearnerId;

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

/// A transaction on the learner database.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Which engine the database runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The connection pools and the locks the stores share.
pub struct Database {
    pool: AnyPool,
    relaxed: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time; queueing writers here avoids its busy-wait polling.
    write_lock: Option<tokio::sync::Mutex<()>>,
}

/// The migrations, embedded in the binary.
fn migrator() -> Migrator {
    let m = |version, name: &str, sql: &'static str| {
        Migration::new(version, name.to_owned().into(), MigrationType::Simple, sql.into(), false)
    };
    Migrator {
        migrations: std::borrow::Cow::Owned(vec![
            m(1, "passport", include_str!("../migrations/0001_passport.sql")),
            m(2, "agent", include_str!("../migrations/0002_agent.sql")),
            m(3, "limits", include_str!("../migrations/0003_limits.sql")),
            m(4, "retention", include_str!("../migrations/0004_retention.sql")),
            m(5, "educators", include_str!("../migrations/0005_educators.sql")),
            m(6, "recommendations", include_str!("../migrations/0006_recommendations.sql")),
            m(7, "fitted", include_str!("../migrations/0007_fitted.sql")),
        ]),
        ..Migrator::DEFAULT
    }
}

/// Serializes one learner's writes on PostgreSQL until the transaction ends. (Selecting a
/// constant: the Any driver cannot decode the function's `void`.)
const ADVISORY_LOCK: &str = "SELECT 1 FROM pg_advisory_xact_lock(hashtextextended($1, 0))";

impl Database {
    /// Connects, creating the SQLite file if needed, and runs the migrations.
    #[tracing::instrument(skip_all, fields(backend))]
    pub async fn connect(url: &str) -> Result<Arc<Self>, StoreError> {
        Self::connect_with(url, DEFAULT_SQLITE_CACHE_KIB).await
    }

    /// [`Database::connect`], with each SQLite connection's page cache at most `cache_kib` KiB
    /// (SQLite's `cache_size`; six connections are open, so the caches take at most six times
    /// that).
    pub async fn connect_with(url: &str, cache_kib: u32) -> Result<Arc<Self>, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        tracing::Span::current().record("backend", backend.as_str());
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_path(url)
            && let Some(dir) = std::path::Path::new(&path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        let pool = pool_with(url, backend, "FULL", if backend == Backend::Sqlite { 4 } else { 8 }, cache_kib).await?;
        migrator().run(&pool).await?;
        let write_lock = (backend == Backend::Sqlite).then(|| tokio::sync::Mutex::new(()));
        // transcripts and caches need not survive a power cut: on SQLite they commit without
        // waiting for the disk (WAL, synchronous NORMAL: still safe against a crash of the
        // process), so a busy tutor does not queue behind fsyncs
        let relaxed = match backend {
            Backend::Sqlite => pool_with(url, backend, "NORMAL", 2, cache_kib).await?,
            Backend::Postgres => pool.clone(),
        };
        Ok(Arc::new(Self { pool, relaxed, backend, write_lock }))
    }

    /// The pool for data that must survive a power cut once committed.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for data that may be lost to a power cut (transcripts, caches); on
    /// PostgreSQL the same pool.
    pub fn relaxed_pool(&self) -> &AnyPool {
        &self.relaxed
    }

    /// The engine the database runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether writes go through one writer at a time (SQLite).
    pub fn single_writer(&self) -> bool {
        self.write_lock.is_some()
    }

    /// Serializes writers on SQLite (a no-op guard on PostgreSQL).
    pub async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        }
    }

    /// Takes the per-learner transaction lock on PostgreSQL (SQLite's single writer already
    /// serializes). Take several in id order, so two transactions cannot deadlock.
    pub async fn lock_learner(&self, tx: &mut Tx, learner: &str) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query(ADVISORY_LOCK).bind(learner.to_owned()).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Deletes everything the `owners` keep about `learner`, in one transaction.
    #[tracing::instrument(skip_all, fields(backend = self.backend.as_str()))]
    pub async fn erase(&self, learner: &LearnerId, owners: &[&dyn LearnerData]) -> Result<Erased, StoreError> {
        let _writer = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        self.lock_learner(&mut tx, learner.as_str()).await?;
        let mut erased = Erased::default();
        for owner in owners {
            owner.erase_in(&mut tx, learner, &mut erased).await?;
        }
        tx.commit().await?;
        Ok(erased)
    }
}

/// SQLite's own default page cache per connection, in KiB.
pub const DEFAULT_SQLITE_CACHE_KIB: u32 = 2000;

async fn pool_with(
    url: &str,
    backend: Backend,
    synchronous: &'static str,
    max: u32,
    cache_kib: u32,
) -> Result<AnyPool, StoreError> {
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        // a connection to a local SQLite file does not go stale: pinging it before each use
        // was a round trip to its thread on every query
        .test_before_acquire(backend != Backend::Sqlite)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers run beside the writer; FULL syncs every commit, so an
                    // acknowledged batch survives a power cut
                    conn.execute(
                        format!(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA busy_timeout = 10000; \
                             PRAGMA cache_size = -{cache_kib};"
                        )
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

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// What an erase removed, in rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Erased {
    pub events: u64,
    pub skills: u64,
    pub flags: u64,
    pub sessions: u64,
    pub turns: u64,
    /// Days of LLM token counts.
    pub llm_usage_days: u64,
    /// Entries of the audit log of who read the learner's data.
    pub audit_reads: u64,
    /// The learner's feedback on recommendations.
    pub recommendation_feedback: u64,
}

/// A store that keeps data about learners: it deletes its own rows of one learner inside the
/// erasure's transaction and counts them in `erased`.
#[async_trait]
pub trait LearnerData: Send + Sync {
    async fn erase_in(&self, tx: &mut Tx, learner: &LearnerId, erased: &mut Erased) -> Result<(), StoreError>;
}

/// Deletes `learner`'s rows of `table`, returning how many there were.
pub async fn delete_rows(tx: &mut Tx, table: &'static str, learner: &LearnerId) -> Result<u64, StoreError> {
    Ok(sqlx::query(&format!("DELETE FROM {table} WHERE learner = $1"))
        .bind(learner.as_str().to_owned())
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Values per `IN (…)` list: one parameter each, far below either database's limit.
pub const IN_LIST: usize = 500;

/// `$1, $2, …, $n` on PostgreSQL, `?, ?, …` on SQLite (see [`placeholders`]): an `IN (…)` list.
pub fn placeholder_list(conn: &sqlx::AnyConnection, n: usize) -> String {
    if conn.backend_name() == "SQLite" {
        vec!["?"; n].join(", ")
    } else {
        (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
    }
}

/// `($1, …, $cols), ($cols+1, …), …` for `rows` rows on PostgreSQL; on SQLite the same with
/// anonymous `?` (bound in order). sqlx binds SQLite's numbered parameters by looking each one
/// up by name, which SQLite does by walking a list: quadratic in the parameters, and 75% of the
/// time of a batch of 1,000 events with `$N` in its 13,000-parameter inserts.
pub fn placeholders(conn: &sqlx::AnyConnection, rows: usize, cols: usize) -> String {
    placeholders_for(conn.backend_name() == "SQLite", rows, cols)
}

fn placeholders_for(anonymous: bool, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            if anonymous {
                out.push('?');
            } else {
                out.push('$');
                out.push_str(&(r * cols + c + 1).to_string());
            }
        }
        out.push(')');
    }
    out
}

/// Statements that return nothing, gathered to be sent together: on SQLite as one
/// multi-statement query (its anonymous parameters bound in order across the statements), one
/// round trip to the connection's thread instead of one each; on PostgreSQL one by one.
pub struct Writes {
    /// SQLite: every statement goes into the one part.
    one: bool,
    parts: Vec<(String, sqlx::any::AnyArguments<'static>)>,
}

impl Writes {
    /// Writes for `conn`'s database.
    pub fn new(conn: &sqlx::AnyConnection) -> Self {
        Self { one: conn.backend_name() == "SQLite", parts: Vec::new() }
    }

    /// [`placeholders`] for the next statement.
    pub fn placeholders(&self, rows: usize, cols: usize) -> String {
        placeholders_for(self.one, rows, cols)
    }

    /// The `i`th (from 1) parameter of the next statement: `$i`, or `?` on SQLite, where the
    /// statements' parameters are bound in order across them.
    pub fn param(&self, i: usize) -> String {
        if self.one { "?".into() } else { format!("${i}") }
    }

    /// Starts a statement; the values bound next are its parameters, in order.
    pub fn statement(&mut self, sql: &str) -> &mut Self {
        match self.parts.last_mut() {
            Some((all, _)) if self.one => {
                all.push_str(";\n");
                all.push_str(sql);
            }
            _ => self.parts.push((sql.to_owned(), Default::default())),
        }
        self
    }

    /// Binds the next parameter of the statement begun last.
    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'static + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        use sqlx::Arguments;
        let (_, args) = self.parts.last_mut().expect("a statement begun before its parameters");
        args.add(value).expect("a value of a type the Any driver encodes");
        self
    }

    /// Runs the statements, in the order given, inside `tx`.
    pub async fn run(self, tx: &mut Tx) -> Result<(), StoreError> {
        for (sql, args) in self.parts {
            // not cached as prepared statements: the text changes with the rows
            sqlx::query_with(&sql, args).persistent(false).execute(&mut **tx).await?;
        }
        Ok(())
    }
}
