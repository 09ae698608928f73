//! The index seam: an [`IndexBackend`] builds generations and says which one is current; a
//! [`VectorStore`] is one built generation, open for search. The embedded backend is
//! `qdrant-edge` ([`super::EdgeIndex`]); a Qdrant server backend is a second implementation of
//! the same two traits. Every call blocks (file or network I/O): run them in `spawn_blocking`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Hit, RetrievalError, Sparse, StoreQuery};
use crate::content::ChunkSettings;

/// The dense half of the index, when configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseSettings {
    pub model: String,
    pub dimensions: u32,
}

/// How an index generation was built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexSettings {
    pub chunking: ChunkSettings,
    pub dense: Option<DenseSettings>,
    /// Mean chunk length in words, BM25's `avg_len`.
    pub bm25_avg_len: f64,
}

/// Stored with a generation, written last: what it holds and what it was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: String,
    pub created_unix_ms: i64,
    pub settings: IndexSettings,
    /// Component id → content hash.
    pub components: BTreeMap<String, String>,
    pub chunks: usize,
}

/// One chunk to store.
pub struct IndexPoint {
    pub id: u64,
    pub payload: serde_json::Value,
    pub sparse: Sparse,
    pub dense: Option<Vec<f32>>,
}

/// One built index generation serving searches.
pub trait VectorStore: Send + Sync {
    /// Chunks best matching the query, best first.
    fn query(&self, q: &StoreQuery) -> Result<Vec<Hit>, RetrievalError>;
    /// Number of chunks stored.
    fn count(&self) -> Result<usize, RetrievalError>;
    /// What this generation was built from.
    fn manifest(&self) -> &Manifest;
    /// Every stored payload (for audits such as "no answer key is indexed").
    fn payloads(&self) -> Result<Vec<serde_json::Value>, RetrievalError>;
}

/// Held while a generation is built; dropping it lets the next writer in.
pub type WriterLock = Box<dyn Send>;

/// Where index generations are built and found.
pub trait IndexBackend: Send + Sync {
    /// The generation marked current, if any. Cheap: a serving process polls it to follow
    /// builds made by other processes.
    fn current_generation(&self) -> Result<Option<String>, RetrievalError>;
    /// The manifest of the current generation.
    fn current_manifest(&self) -> Result<Option<Manifest>, RetrievalError>;
    /// Opens the current generation for search; `None` when none was ever built.
    fn open_current(&self) -> Result<Option<Arc<dyn VectorStore>>, RetrievalError>;
    /// Takes the single-writer lock: two builds never interleave.
    fn lock_writer(&self) -> Result<WriterLock, RetrievalError>;
    /// Builds a complete generation named `manifest.generation` from `points` and only then
    /// marks it current, atomically: a failed or killed build leaves the current one as it was.
    /// `on_progress` gets the number of points stored so far.
    fn build(
        &self,
        manifest: Manifest,
        points: Vec<IndexPoint>,
        on_progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(), RetrievalError>;
    /// Removes generations that are neither current nor still open somewhere.
    fn cleanup(&self);
}
