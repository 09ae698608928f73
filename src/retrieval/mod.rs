//! Retrieval: BM25 and dense embeddings, the index seam ([`IndexBackend`] builds generations,
//! [`VectorStore`] serves one) with its embedded `qdrant-edge` backend, hybrid search with
//! filters ([`Retriever`]), and the ingest that builds the index.

mod edge;
mod embed;
pub mod eval;
mod generations;
mod hub;
mod index;
mod ingest;
mod local;
mod notation;
mod server;

use std::path::Path;
use std::sync::{Arc, LazyLock, RwLock};

use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::external::serde_json::json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use edge::{EdgeIndex, EdgeStore};
pub use embed::{Embedder, EmbeddingCache, OpenAiEmbedder};
pub use eval::{EvalReport, QuestionSet};
pub use hub::Hub;
pub use index::{DenseSettings, IndexBackend, IndexPoint, IndexSettings, Manifest, VectorStore, WriterLock};
pub use ingest::{IngestReport, ingest, is_stale};
pub use local::{LocalEmbedder, ModelSource, Pooling, Recipe, folder_name, locate, model_key, same_model};
pub use server::{QdrantIndex, QdrantStore};

use crate::content::{ComponentId, Format, Level, SkillId};

/// Why a retrieval operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("vector store: {0}")]
    Store(String),
    #[error("embeddings: {0}")]
    Embedding(String),
    #[error("no index yet: run `tutor ingest` first")]
    NoIndex,
    #[error("{0}")]
    Busy(String),
    /// The index server did not answer (down, unreachable, or too slow).
    #[error("{0}")]
    Unreachable(String),
    #[error("content: {0}")]
    Content(String),
}

impl RetrievalError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), source }
    }
}

/// Restricts a search to matching components; empty lists mean no restriction,
/// several values in one list match any of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchFilter {
    #[serde(default)]
    pub course: Option<String>,
    #[serde(default)]
    pub skills: Vec<SkillId>,
    #[serde(default)]
    pub levels: Vec<Level>,
    #[serde(default)]
    pub formats: Vec<Format>,
}

impl SearchFilter {
    /// The filter in Qdrant's JSON filter language (shared by the edge and server backends).
    pub fn to_qdrant_json(&self) -> Option<serde_json::Value> {
        let mut must = Vec::new();
        let any = |key: &str, values: Vec<String>| {
            if values.len() == 1 {
                json!({"key": key, "match": {"value": values[0]}})
            } else {
                json!({"key": key, "match": {"any": values}})
            }
        };
        if let Some(c) = &self.course {
            must.push(any("course", vec![c.clone()]));
        }
        if !self.skills.is_empty() {
            must.push(any("skills", self.skills.iter().map(ToString::to_string).collect()));
        }
        if !self.levels.is_empty() {
            must.push(any("level", self.levels.iter().map(ToString::to_string).collect()));
        }
        if !self.formats.is_empty() {
            must.push(any("format", self.formats.iter().map(ToString::to_string).collect()));
        }
        (!must.is_empty()).then(|| json!({ "must": must }))
    }
}

/// The most components a search returns.
pub const MAX_K: usize = 100;

/// One search result: the best chunk of a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Hit {
    pub component_id: ComponentId,
    pub course: String,
    pub title: String,
    pub skills: Vec<SkillId>,
    pub level: Level,
    pub format: Format,
    pub chunk_index: usize,
    pub score: f32,
    pub text: String,
}

/// A sparse vector (dimension ids and weights).
#[derive(Debug, Clone, PartialEq)]
pub struct Sparse {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

/// A query as the store sees it: vectors already computed. With both vectors the two rankings
/// are fused by reciprocal rank; with one, that ranking alone.
#[derive(Debug, Clone)]
pub struct StoreQuery {
    pub sparse: Option<Sparse>,
    pub dense: Option<Vec<f32>>,
    pub filter: SearchFilter,
    /// Chunks to return.
    pub limit: usize,
    /// How the two rankings are fused, when there are two.
    pub fusion: Fusion,
}

/// Reciprocal rank fusion of BM25 and dense rankings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    /// The dense ranking's weight; BM25's is 1.
    pub dense_weight: f32,
    /// Chunks each ranking brings; 0: four times the chunks asked for.
    pub candidates: usize,
}

impl Default for Fusion {
    fn default() -> Self {
        Self { dense_weight: 1.0, candidates: 0 }
    }
}

impl Fusion {
    /// As configured.
    pub fn from_config(cfg: &crate::config::EmbedConfig) -> Self {
        Self { dense_weight: cfg.dense_weight, candidates: cfg.candidates }
    }
}

/// BM25 as Qdrant computes it, so scores match a Qdrant server given the same config.
pub struct Bm25(EdgeBm25);

impl Bm25 {
    /// English BM25 with stopwords and a Snowball stemmer; `avg_len` in words.
    pub fn new(avg_len: f64) -> Self {
        let cfg: EdgeBm25Config = serde_json::from_value(json!({
            "language": "english",
            "avg_len": avg_len.max(1.0),
            "stopwords": {"languages": ["english"]},
            "stemmer": {"type": "snowball", "language": "english"},
        }))
        .expect("static BM25 config is valid");
        Self(EdgeBm25::new(cfg).expect("static BM25 config is valid"))
    }

    /// The query side (term presence; independent of `avg_len`).
    pub fn query(text: &str) -> Sparse {
        static QUERY: LazyLock<Bm25> = LazyLock::new(|| Bm25::new(60.0));
        to_sparse(QUERY.0.embed_query(text))
    }

    /// The document side.
    pub fn document(&self, text: &str) -> Sparse {
        to_sparse(self.0.embed_document(text))
    }
}

fn to_sparse(v: qdrant_edge::SparseVector) -> Sparse {
    Sparse { indices: v.indices, values: v.values }
}

/// What a search asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SearchRequest {
    pub text: String,
    #[serde(default)]
    pub filter: SearchFilter,
    /// Components to return.
    pub k: usize,
}

/// Which rankings a search uses. The service always searches [`SearchMode::Hybrid`] (which is
/// BM25 alone when there are no dense vectors); the others are for measuring each side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    #[default]
    Hybrid,
    Bm25,
    Dense,
}

impl std::fmt::Display for SearchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Hybrid => "hybrid",
            Self::Bm25 => "bm25",
            Self::Dense => "dense",
        })
    }
}

/// Hybrid search over whichever index is current; swapped in place when a new one is built.
pub struct Retriever {
    store: RwLock<Option<Arc<dyn VectorStore>>>,
    embedder: Option<Arc<dyn Embedder>>,
    fusion: Fusion,
}

impl Retriever {
    /// A retriever with no index yet.
    pub fn new(embedder: Option<Arc<dyn Embedder>>) -> Self {
        Self { store: RwLock::new(None), embedder, fusion: Fusion::default() }
    }

    /// Fuses BM25 and dense rankings as `fusion` says.
    pub fn with_fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }

    /// Serves searches from `store` from now on.
    pub fn set_store(&self, store: Arc<dyn VectorStore>) {
        // the old one is dropped after the lock is released (a server backend releases its
        // lease then)
        let old = self.store.write().expect("retriever lock").replace(store);
        drop(old);
    }

    /// The index being served.
    pub fn store(&self) -> Option<Arc<dyn VectorStore>> {
        self.store.read().expect("retriever lock").clone()
    }

    /// The `k` best components for the request, one hit (the best chunk) per component.
    /// Dense vectors join by RRF when the index has them and the embedder answers; when the
    /// embedder fails, the search degrades to BM25 rather than failing.
    pub async fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>, RetrievalError> {
        self.search_with(req, SearchMode::Hybrid).await
    }

    /// Whether searches use dense vectors: the index has them, from the embedder loaded here.
    pub fn dense(&self) -> bool {
        match (self.store(), &self.embedder) {
            (Some(s), Some(e)) => s.manifest().settings.dense.as_ref().is_some_and(|d| same_model(&d.model, e.model())),
            _ => false,
        }
    }

    /// [`Retriever::search`] with one side only, or both. [`SearchMode::Dense`] fails when the
    /// index has no dense vectors of this embedder, rather than answering with BM25.
    #[tracing::instrument(skip_all, fields(k = req.k, %mode))]
    pub async fn search_with(&self, req: &SearchRequest, mode: SearchMode) -> Result<Vec<Hit>, RetrievalError> {
        let store = self.store().ok_or(RetrievalError::NoIndex)?;
        let k = req.k.clamp(1, MAX_K);
        // the arithmetic in the question, said in words
        // (for BM25 and the model both: measured, either alone helps less)
        let text = match notation::describe(&req.text) {
            Some(words) => format!("{}\n{words}", req.text),
            None => req.text.clone(),
        };
        let dense = match (mode, &store.manifest().settings.dense, &self.embedder) {
            (SearchMode::Bm25, _, _) => None,
            (_, Some(d), Some(e)) if same_model(&d.model, e.model()) => {
                match e.embed(std::slice::from_ref(&text)).await {
                    Ok(mut v) => v.pop(),
                    Err(err) if mode == SearchMode::Dense => return Err(err),
                    Err(err) => {
                        tracing::warn!(error = %err, "query embedding failed; searching with BM25 only");
                        None
                    }
                }
            }
            (SearchMode::Dense, _, _) => {
                return Err(RetrievalError::Embedding("the index has no dense vectors of the loaded model".into()));
            }
            _ => None,
        };
        let sparse = (mode != SearchMode::Dense).then(|| Bm25::query(&text));
        let q = StoreQuery { sparse, dense, filter: req.filter.clone(), limit: (k * 4).max(20), fusion: self.fusion };
        let chunks = tokio::task::spawn_blocking(move || store.query(&q))
            .await
            .map_err(|e| RetrievalError::Store(e.to_string()))??;
        let mut seen = std::collections::HashSet::new();
        Ok(chunks.into_iter().filter(|h| seen.insert(h.component_id.clone())).take(k).collect())
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
