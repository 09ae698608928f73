//! The composition root: [`App::open`] builds, from a [`Config`], everything the service runs
//! on — the content library, the index backend and the retriever over it, the embedder, the
//! learner stores, and the agent — and every entry point (`serve`, the CLI, `tutor eval`) uses
//! it. New backends and features plug in here, once. [`lifecycle`] keeps the served index in
//! step with the content and with builds made by other processes.

pub mod demo;
pub mod lifecycle;
pub mod limits;
pub mod model;
pub mod snapshot;

use std::sync::{Arc, RwLock};

/// How the HTTP layer asks a search, and what it answers.
pub use crate::retrieval::{Hit, MAX_K, SearchFilter, SearchRequest};
pub use lifecycle::{Readiness, Status};

use crate::agent::{Agent, AgentStore, AgentStores, LlmClient, Prompts, SqlAgentStore, prompts::PromptError};
use crate::auth::Verifier;
use crate::config::{Config, DEFAULT_LOCAL_MODEL};
use crate::content::{ContentError, LearnedParams, Library, load_library};
use crate::db::{Database, Erased, StoreError};
use crate::flags::{FlagStore, SqlFlagStore};
use crate::passport::{LearnerId, ModelStore, PassportStore, SqlModelStore, SqlPassportStore};
use crate::retrieval::{
    EdgeIndex, Embedder, Fusion, Hub, IndexBackend, LocalEmbedder, ModelSource, OpenAiEmbedder, QdrantIndex,
    RetrievalError, Retriever, folder_name, locate,
};

/// Why the application could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("opening the learner store: {0}")]
    Store(#[from] StoreError),
    #[error("loading the prompts: {0}")]
    Prompts(#[from] PromptError),
    #[error("the index: {0}")]
    Index(#[from] RetrievalError),
}

/// The configured embedder, if any: the OpenAI-compatible endpoint when `embed.base_url` is
/// set, else the in-process model (`embed.model_dir`, `embed.model_id`, or the default model
/// when it is in the Hugging Face cache). Says once, in the log, which one and why there is
/// none; with none, search is BM25 only.
pub async fn embedder(cfg: &Config) -> Option<Arc<dyn Embedder>> {
    if let Some(e) = OpenAiEmbedder::from_config(&cfg.embed) {
        tracing::info!(model = %cfg.embed.model, "embeddings from the OpenAI-compatible endpoint: hybrid search");
        return Some(Arc::new(e));
    }
    let source = match (&cfg.embed.model_dir, cfg.embed.model_id.as_deref()) {
        (Some(dir), _) => ModelSource::Dir(dir.clone()),
        (None, Some(id)) if id.eq_ignore_ascii_case("none") => {
            tracing::info!("dense retrieval off (embed.model_id = none): searching with BM25 only");
            return None;
        }
        (None, Some(id)) => ModelSource::Hub { id: id.to_owned(), fetch: true },
        (None, None) => ModelSource::Hub { id: DEFAULT_LOCAL_MODEL.to_owned(), fetch: false },
    };
    let loaded = match locate(&source, &Hub::from_env()).await {
        Ok(dir) => {
            let (max_tokens, batch) = (cfg.embed.max_tokens, cfg.embed.batch_size);
            let name = folder_name(&dir);
            tokio::task::spawn_blocking(move || LocalEmbedder::load(&dir, &name, max_tokens, batch).map(|e| (e, dir)))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        }
        Err(e) => Err(e),
    };
    match loaded {
        Ok((e, dir)) => {
            let r = e.recipe();
            tracing::info!(model = %e.model(), dir = %dir.display(), dimensions = e.dimensions().unwrap_or(0),
                pooling = ?r.pooling, normalize = r.normalize, max_tokens = r.max_tokens,
                "in-process embeddings: hybrid search");
            Some(Arc::new(e))
        }
        Err(why) => {
            tracing::warn!(
                "no embedding model ({why}); searching with BM25 only. Set TUTOR_EMBED_MODEL_DIR to a \
                 sentence-transformers folder, or TUTOR_EMBED_MODEL_ID to a Hugging Face model id to fetch"
            );
            None
        }
    }
}

/// The configured index backend: collections on the Qdrant server `qdrant.url` names, or else
/// the embedded `qdrant-edge` index in the data directory.
pub fn index(cfg: &Config) -> Result<Arc<dyn IndexBackend>, RetrievalError> {
    Ok(match &cfg.qdrant.url {
        Some(_) => Arc::new(QdrantIndex::connect(&cfg.qdrant)?),
        None => Arc::new(EdgeIndex::new(cfg.index_dir())),
    })
}

/// A retriever over the configured index's current generation, for commands that only search.
pub async fn open_retriever(cfg: &Config) -> Result<Arc<Retriever>, RetrievalError> {
    let retriever = Arc::new(Retriever::new(embedder(cfg).await).with_fusion(Fusion::from_config(&cfg.embed)));
    serve_current(&index(cfg)?, &retriever).await?;
    Ok(retriever)
}

/// Opens the current generation of `index` and serves searches of `retriever` from it.
pub async fn serve_current(index: &Arc<dyn IndexBackend>, retriever: &Retriever) -> Result<(), RetrievalError> {
    let backend = index.clone();
    let store = tokio::task::spawn_blocking(move || backend.open_current())
        .await
        .map_err(|e| RetrievalError::Store(format!("opening the index: {e}")))??
        .ok_or(RetrievalError::NoIndex)?;
    retriever.set_store(store);
    Ok(())
}

/// The learner stores, each behind its trait, over one database.
#[derive(Clone)]
pub struct Stores {
    pub db: Arc<Database>,
    pub passports: Arc<dyn PassportStore>,
    pub flags: Arc<dyn FlagStore>,
    pub sessions: Arc<dyn AgentStore>,
    /// Fitted BKT parameters, and the answers they are fitted from.
    pub models: Arc<dyn ModelStore>,
}

impl Stores {
    /// Connects to the configured database (the SQLite file in the data dir by default) and
    /// runs its migrations.
    pub async fn open(cfg: &Config) -> Result<Self, StoreError> {
        let db = Database::connect_with(&cfg.database_url(), cfg.sqlite_cache_kib).await?;
        Ok(Self {
            passports: Arc::new(SqlPassportStore::new(db.clone(), cfg.passport.proficient)),
            flags: Arc::new(SqlFlagStore::new(db.clone())),
            sessions: Arc::new(SqlAgentStore::new(db.clone())),
            models: Arc::new(SqlModelStore::new(db.clone())),
            db,
        })
    }

    /// The newest fitted parameters (none: the authored ones), to attach to a library the
    /// stores are used with outside a running [`App`].
    pub async fn learned(&self) -> Result<LearnedParams, StoreError> {
        Ok(self.models.current_model().await?.map(|m| m.learned()).unwrap_or_default())
    }

    /// Erases everything kept about `learner` (events, passport, flags, sessions,
    /// transcripts), in one transaction: each store deletes what it owns.
    pub async fn erase(&self, learner: &LearnerId) -> Result<Erased, StoreError> {
        self.db.erase(learner, &[&*self.passports, &*self.flags, &*self.sessions]).await
    }
}

/// The running application.
pub struct App {
    pub config: Arc<Config>,
    pub index: Arc<dyn IndexBackend>,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub retriever: Arc<Retriever>,
    pub stores: Stores,
    pub agent: Arc<Agent>,
    /// Verifies bearer tokens; `None` in dev mode.
    pub verifier: Option<Arc<Verifier>>,
    /// Rates, running turns, answer attempts.
    pub limits: Arc<limits::Limits>,
    /// What `/readyz` reports.
    pub status: Status,
    /// The content as last loaded; `None` until it validates.
    library: RwLock<Option<Arc<Library>>>,
    /// The newest fitted parameters, attached to every library served.
    learned: RwLock<LearnedParams>,
}

impl App {
    /// Builds everything from `config`: stores (connected and migrated), the index backend and
    /// a retriever with no generation open yet, the embedder, the prompts and the agent.
    pub async fn open(config: Config) -> Result<Arc<Self>, AppError> {
        let config = Arc::new(config);
        let stores = Stores::open(&config).await?;
        let embedder = embedder(&config).await;
        let retriever = Arc::new(Retriever::new(embedder.clone()).with_fusion(Fusion::from_config(&config.embed)));
        let prompts = Prompts::from_config(config.prompts_dir.as_deref())?;
        let llm = LlmClient::from_config(&config.agent).map(Arc::new);
        tracing::info!(engine = if llm.is_some() { "llm" } else { "offline" }, "tutor agent ready");
        let agent_stores = AgentStores {
            passports: stores.passports.clone(),
            flags: stores.flags.clone(),
            sessions: stores.sessions.clone(),
        };
        let agent = Arc::new(Agent::new(config.clone(), retriever.clone(), agent_stores, Arc::new(prompts), llm));
        let verifier = Verifier::from_config(&config.auth).map(Arc::new);
        let limits = Arc::new(limits::Limits::new(&config.limits));
        let learned = stores.learned().await?;
        Ok(Arc::new(Self {
            index: index(&config)?,
            verifier,
            limits,
            config,
            embedder,
            retriever,
            stores,
            agent,
            status: Status::default(),
            library: RwLock::default(),
            learned: RwLock::new(learned),
        }))
    }

    /// The loaded content, or `None` while there is none.
    pub fn library(&self) -> Option<Arc<Library>> {
        self.library.read().expect("library lock").clone()
    }

    /// Serves `lib`, with the fitted parameters served now, from now on.
    pub fn set_library(&self, mut lib: Library) -> Arc<Library> {
        lib.learned = self.learned();
        let lib = Arc::new(lib);
        *self.library.write().expect("library lock") = Some(lib.clone());
        lib
    }

    /// Loads and validates the configured content tree, and serves it.
    pub fn load_library(&self) -> Result<Arc<Library>, ContentError> {
        Ok(self.set_library(load_library(&self.config.content_dir, &self.config.load_options())?))
    }

    /// A search of the served index.
    pub async fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>, RetrievalError> {
        self.retriever.search(req).await
    }

    /// Serves searches from the index's current generation (for the CLI and the eval suite;
    /// `serve` follows generations through [`lifecycle`]).
    pub async fn open_index(&self) -> Result<(), RetrievalError> {
        serve_current(&self.index, &self.retriever).await
    }

    /// Builds the index for `lib` (unless it is already current) through the configured
    /// backend and embedder.
    pub async fn ingest(
        &self,
        lib: &Library,
        progress: &indicatif::ProgressBar,
    ) -> Result<crate::retrieval::IngestReport, RetrievalError> {
        let report = crate::retrieval::ingest(&self.config, &self.index, lib, self.embedder.clone(), progress)
            .await
            .inspect_err(|_| crate::metrics::inc("tutor_ingests_total", &[("outcome", "failed")]))?;
        let outcome = if report.rebuilt { "rebuilt" } else { "unchanged" };
        crate::metrics::inc("tutor_ingests_total", &[("outcome", outcome)]);
        keep_snapshot(&self.config, lib, &report.generation).await;
        Ok(report)
    }
}

/// What a retention run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Retained {
    /// Everything written before this (ms since the Unix epoch) went.
    pub before: i64,
    pub events: u64,
    pub sessions: u64,
    pub turns: u64,
}

impl App {
    /// Deletes transcripts and raw learner events older than `days` days; the passports they
    /// built stay (the model as of the deleted events is kept as the base of later replays).
    pub async fn apply_retention(&self, days: u32, lib: &Library) -> Result<Retained, StoreError> {
        let before = crate::ids::now_ms() - i64::from(days) * 86_400_000;
        let events = self.stores.passports.forget_events_before(before, lib).await?;
        let (sessions, turns) = self.stores.sessions.forget_transcripts_before(before).await?;
        let r = Retained { before, events, sessions, turns };
        tracing::info!(days, events, sessions, turns, "retention: deleted what is older than the policy allows");
        Ok(r)
    }

    /// Seeds the demo learners (see [`demo`]), after clearing earlier ones.
    pub async fn demo_seed(self: &Arc<Self>, lib: &Arc<Library>) -> Result<demo::Seeded, StoreError> {
        demo::clear(self).await?;
        demo::seed(self, lib).await
    }

    /// With a retention policy, applies it now and then once a day, while the runtime runs.
    pub fn start_retention(self: &Arc<Self>) {
        let Some(days) = self.config.retention_days else { return };
        let app = self.clone();
        tokio::spawn(async move {
            loop {
                match app.library() {
                    Some(lib) => {
                        if let Err(e) = app.apply_retention(days, &lib).await {
                            tracing::error!(error = %e, "retention failed; trying again in an hour");
                            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                            continue;
                        }
                    }
                    None => {
                        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                        continue;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
            }
        });
    }
}

/// Keeps `lib` as the content snapshot of `generation` (best effort: a failure is logged, and
/// only means a broken content tree at the next start has nothing to fall back on).
pub async fn keep_snapshot(cfg: &Config, lib: &Library, generation: &str) {
    let (cfg, lib, generation) = (cfg.clone(), lib.clone(), generation.to_owned());
    let saved = tokio::task::spawn_blocking(move || snapshot::save(&cfg, &lib, &generation)).await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not keep a snapshot of the content"),
        Err(e) => tracing::warn!(error = %e, "keeping a snapshot of the content failed"),
    }
}
