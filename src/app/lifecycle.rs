//! The served index's lifecycle: at start, load the content and ingest it when the index is
//! missing or stale (the learner routes are served as soon as the content loads); then follow
//! the generation the backend marks current, so an operator's `tutor ingest` in another
//! process goes live without a restart. [`Status`] says what `/readyz` reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{App, keep_snapshot, snapshot};
use crate::content::load_library;
use crate::retrieval::{Manifest, RetrievalError, is_stale};

/// Whether an index is served, and the last problem seen.
#[derive(Default)]
pub struct Status {
    ready: AtomicBool,
    problem: std::sync::Mutex<Option<String>>,
    /// Preparing the index failed because its server did not answer: retried by itself.
    unreachable: AtomicBool,
}

/// What `/readyz` answers.
pub enum Readiness {
    /// An index and the content it was built from are served; `warning` when the latest
    /// content could not be loaded or ingested.
    Ready {
        manifest: Manifest,
        warning: Option<String>,
    },
    NotReady(String),
}

impl Status {
    fn set_problem(&self, p: impl Into<String>) {
        *self.problem.lock().expect("status lock") = Some(p.into());
    }

    /// Keeps the reason the ingest failed, which says more than "no index".
    fn set_problem_unless_known(&self, p: &str) {
        self.problem.lock().expect("status lock").get_or_insert_with(|| p.to_owned());
    }

    /// Notes `e`; an unreachable index server makes the preparation be retried.
    fn index_failed(&self, what: &str, e: &RetrievalError) {
        if matches!(e, RetrievalError::Unreachable(_)) {
            self.unreachable.store(true, Ordering::Release);
        }
        self.set_problem(format!("{what}: {e}"));
    }

    fn serving(&self, clear_problem: bool) {
        self.ready.store(true, Ordering::Release);
        if clear_problem {
            *self.problem.lock().expect("status lock") = None;
        }
    }
}

impl App {
    /// Ready with the served generation's manifest, or not ready with the reason.
    pub fn readiness(&self) -> Readiness {
        let problem = self.status.problem.lock().expect("status lock").clone();
        match self.retriever.store() {
            // never ready while the learner routes cannot serve: they need the content
            Some(store) if self.status.ready.load(Ordering::Acquire) && self.library().is_some() => {
                Readiness::Ready { manifest: store.manifest().clone(), warning: problem }
            }
            _ => Readiness::NotReady(problem.unwrap_or_else(|| "index is being prepared".into())),
        }
    }

    /// Prepares the index in the background, then follows new generations (and new fits of
    /// the BKT parameters) until the runtime stops.
    pub fn start(self: &Arc<Self>) {
        self.follow_model();
        let app = self.clone();
        tokio::spawn(async move {
            app.prepare_index().await;
            app.follow_new_generations().await;
        });
    }

    #[tracing::instrument(skip_all)]
    async fn prepare_index(&self) {
        let content = self.config.content_dir.clone();
        let opts = self.config.load_options();
        let Some(lib) = blocking(move || load_library(&content, &opts)).await else {
            self.status.set_problem("loading the content failed unexpectedly; see the logs");
            return;
        };
        match lib {
            Ok(lib) => self.ingest_if_stale(lib).await,
            Err(e) => {
                tracing::error!(
                    problems = e.diagnostics.len(),
                    "content does not validate; serving the previous index if any"
                );
                for d in &e.diagnostics {
                    tracing::error!("{d}");
                }
                self.status.set_problem(format!(
                    "content in {} has {} problem(s); run `tutor validate`",
                    self.config.content_dir.display(),
                    e.diagnostics.len()
                ));
            }
        }
        let index = self.index.clone();
        let Some(opened) = blocking(move || index.open_current()).await else {
            self.status.set_problem("opening the index failed unexpectedly; see the logs");
            return;
        };
        match opened {
            Ok(Some(store)) => {
                if self.library().is_none() {
                    self.serve_snapshot(&store.manifest().generation).await;
                }
                self.retriever.set_store(store);
                self.status.serving(false);
                let index = self.index.clone();
                blocking(move || index.cleanup()).await;
            }
            Ok(None) => self.status.set_problem_unless_known("no index: the content could not be ingested"),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the index");
                self.status.index_failed("cannot open the index", &e);
            }
        }
    }

    /// Serves `lib` at once (the learner routes need the content, not the index), then ingests
    /// it when the index is missing or was built from other content or settings.
    async fn ingest_if_stale(&self, lib: crate::content::Library) {
        let model = self.embedder.as_ref().map(|e| e.model().to_owned());
        let lib = self.set_library(lib);
        let (index, cfg, l) = (self.index.clone(), self.config.clone(), lib.clone());
        let stale = blocking(move || {
            let stale = is_stale(index.as_ref(), &cfg, &l, model.as_deref())?;
            Ok::<_, RetrievalError>((stale, index.current_manifest()?))
        })
        .await;
        match stale {
            None => return,
            Some(Ok((false, manifest))) => {
                tracing::info!("index is up to date");
                if let Some(m) = manifest {
                    keep_snapshot(&self.config, &lib, &m.generation).await;
                }
                return;
            }
            Some(Err(e @ RetrievalError::Unreachable(_))) => {
                tracing::error!(error = %e, "the index server is unreachable; retrying by itself");
                self.status.index_failed("the index is unavailable", &e);
                return;
            }
            Some(_) => {}
        }
        tracing::info!(components = lib.components.len(), "index missing or stale: ingesting");
        match self.ingest(&lib, &indicatif::ProgressBar::hidden()).await {
            Ok(r) => tracing::info!(chunks = r.chunks, ms = r.elapsed_ms, "ingest done"),
            Err(e) => {
                tracing::error!(error = %e, "ingest failed; serving the previous index if any");
                self.status.index_failed("ingest failed", &e);
            }
        }
    }

    /// Serves the content snapshot of `generation` when there is one that matches the index;
    /// else the content stays as it is (none at start: not ready, saying why). Whether it did.
    async fn serve_snapshot(&self, generation: &str) -> bool {
        let (cfg, g) = (self.config.clone(), generation.to_owned());
        let Some(Some(lib)) = blocking(move || snapshot::load(&cfg, &g)).await else {
            tracing::warn!(generation, "no content snapshot of this generation to fall back on");
            return false;
        };
        let model = self.embedder.as_ref().map(|e| e.model().to_owned());
        let (index, cfg, l) = (self.index.clone(), self.config.clone(), lib.clone());
        let stale = blocking(move || is_stale(index.as_ref(), &cfg, &l, model.as_deref())).await;
        if !matches!(stale, Some(Ok(false))) {
            tracing::warn!(generation, "the content snapshot does not match the index; not serving it");
            return false;
        }
        tracing::warn!(generation, "serving the last content that validated, with the index built from it");
        self.status.set_problem(format!(
            "the content in {} does not validate (run `tutor validate`); serving the last content that did, \
             with index generation {generation}",
            self.config.content_dir.display()
        ));
        self.set_library(lib);
        true
    }

    /// Swaps in each new generation the backend marks current. In-flight searches finish on
    /// the old one, which is then closed and swept by a later cleanup.
    async fn follow_new_generations(&self) {
        let (mut retry_in, mut waited) = (GENERATION_POLL, std::time::Duration::ZERO);
        loop {
            tokio::time::sleep(GENERATION_POLL).await;
            // the index server was down when the index was prepared: again, backing off
            if self.retriever.store().is_none() && self.status.unreachable.load(Ordering::Acquire) {
                waited += GENERATION_POLL;
                if waited < retry_in {
                    continue;
                }
                (waited, retry_in) = (std::time::Duration::ZERO, (retry_in * 2).min(RETRY_MAX));
                self.status.unreachable.store(false, Ordering::Release);
                *self.status.problem.lock().expect("status lock") = None;
                tracing::info!("trying the index server again");
                self.prepare_index().await;
                continue;
            }
            let serving = self.retriever.store().map(|s| s.manifest().generation.clone());
            let index = self.index.clone();
            let Some(Ok(Some(named))) = blocking(move || index.current_generation()).await else {
                continue;
            };
            if serving.as_deref() == Some(named.as_str()) {
                continue;
            }
            let index = self.index.clone();
            let Some(opened) = blocking(move || index.open_current()).await else {
                return;
            };
            match opened {
                Ok(Some(store)) => {
                    tracing::info!(generation = %store.manifest().generation, "serving a new index generation");
                    let content = self.config.content_dir.clone();
                    let opts = self.config.load_options();
                    match blocking(move || load_library(&content, &opts)).await {
                        Some(Ok(lib)) => {
                            self.set_library(lib);
                        }
                        None => return,
                        Some(Err(e)) => {
                            tracing::warn!(
                                problems = e.diagnostics.len(),
                                "the content tree no longer validates; serving the content the new generation was built from"
                            );
                            if !self.serve_snapshot(&store.manifest().generation).await {
                                // its content is nowhere to be had: keep the generation and the
                                // content that match
                                tracing::warn!("keeping the generation being served");
                                continue;
                            }
                            self.retriever.set_store(store);
                            self.status.serving(false);
                            continue;
                        }
                    }
                    self.retriever.set_store(store);
                    self.status.serving(true);
                    // give in-flight searches on the old generation time to finish before sweeping
                    let index = self.index.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(GENERATION_POLL).await;
                        let _ = tokio::task::spawn_blocking(move || index.cleanup()).await;
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "a new index generation could not be opened; still serving the old one")
                }
            }
        }
    }
}

/// How often a running server looks for a generation built by `tutor ingest` in another process.
const GENERATION_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest wait between tries of an index server that was unreachable at start.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs blocking work off the async threads; `None` (logged) if it panicked or the runtime is
/// shutting down, so that the caller can stop instead of taking the process down.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) if e.is_cancelled() => None,
        Err(e) => {
            tracing::error!(error = %e, "a background task failed");
            None
        }
    }
}
