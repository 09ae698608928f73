//! Ingest: content → chunks → vectors → a fresh index generation, switched to atomically.
//!
//! The index is derived from the content. Each ingest builds a complete generation in a new
//! folder under `data/index/`, flushes and optimizes it, writes its manifest, and only then
//! points `data/index/CURRENT` at it (write-then-rename). A failing or killed ingest leaves
//! `CURRENT` and the generation it names untouched. Dense vectors come from a cache keyed by
//! content hash, so rebuilding re-embeds only text that changed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::edge::{EdgeStore, IndexPoint};
use super::{Bm25, Embedder, EmbeddingCache, RetrievalError, hex, sha256};
use crate::config::Config;
use crate::content::{ChunkSettings, Chunker, Component, Library};

pub(crate) const MANIFEST_FILE: &str = "manifest.json";
const CURRENT_FILE: &str = "CURRENT";
const LOCK_FILE: &str = "ingest.lock";
const GENERATION_PREFIX: &str = "gen-";

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

/// Written last into a generation: what it holds and what it was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: String,
    pub created_unix_ms: u64,
    pub settings: IndexSettings,
    /// Component id → content hash.
    pub components: BTreeMap<String, String>,
    pub chunks: usize,
}

/// What an ingest did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestReport {
    pub components: usize,
    pub chunks: usize,
    /// Components whose content hash matched the previous index.
    pub unchanged: usize,
    /// Components new or changed since the previous index.
    pub updated: usize,
    /// Components in the previous index and no longer in the content.
    pub removed: usize,
    /// Chunks sent to the embeddings endpoint (cache misses).
    pub embedded_chunks: usize,
    /// False when the index was already up to date and nothing was built.
    pub rebuilt: bool,
    pub generation: String,
    pub elapsed_ms: u64,
}

fn component_hash(c: &Component, chunking: ChunkSettings) -> String {
    let v = serde_json::json!({
        "id": c.id, "course": c.course, "title": c.title, "skills": c.skills, "level": c.level,
        "format": c.format, "objectives": c.objectives, "text": c.retrievable_text(), "chunking": chunking,
    });
    hex(&sha256(v.to_string().as_bytes()))
}

fn hashes(lib: &Library, chunking: ChunkSettings) -> BTreeMap<String, String> {
    lib.components.values().map(|c| (c.id.to_string(), component_hash(c, chunking))).collect()
}

fn point_id(component: &str, chunk: usize) -> u64 {
    let h = sha256(format!("{component}\0{chunk}").as_bytes());
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// The manifest of a generation folder, `None` when it has none (incomplete).
pub(crate) fn read_manifest(dir: &Path) -> Result<Option<Manifest>, RetrievalError> {
    let path = dir.join(MANIFEST_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RetrievalError::Store(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RetrievalError::io(&path, e)),
    }
}

fn current_dir(index_dir: &Path) -> Result<Option<PathBuf>, RetrievalError> {
    let path = index_dir.join(CURRENT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(name) => Ok(Some(index_dir.join(name.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RetrievalError::io(&path, e)),
    }
}

/// Opens the generation `CURRENT` names; `None` when no index was ever built.
pub fn open_current(index_dir: &Path) -> Result<Option<EdgeStore>, RetrievalError> {
    current_dir(index_dir)?.map(|d| EdgeStore::open(&d)).transpose()
}

fn current_manifest(index_dir: &Path) -> Result<Option<Manifest>, RetrievalError> {
    match current_dir(index_dir)? {
        Some(d) => read_manifest(&d),
        None => Ok(None),
    }
}

fn matches(m: &Manifest, chunking: ChunkSettings, model: Option<&str>, hashes: &BTreeMap<String, String>) -> bool {
    m.settings.chunking == chunking
        && m.settings.dense.as_ref().map(|d| d.model.as_str()) == model
        && &m.components == hashes
}

/// True when the current index is missing or was built from other content or settings.
pub fn is_stale(cfg: &Config, lib: &Library, model: Option<&str>) -> Result<bool, RetrievalError> {
    let h = hashes(lib, cfg.chunking());
    Ok(!current_manifest(&cfg.index_dir())?.is_some_and(|m| matches(&m, cfg.chunking(), model, &h)))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Holds `data/index/ingest.lock` so that two ingests never interleave.
struct IngestLock(#[allow(dead_code)] std::fs::File);

impl IngestLock {
    fn take(index_dir: &Path) -> Result<Self, RetrievalError> {
        std::fs::create_dir_all(index_dir).map_err(|e| RetrievalError::io(index_dir, e))?;
        let path = index_dir.join(LOCK_FILE);
        let f = std::fs::File::create(&path).map_err(|e| RetrievalError::io(&path, e))?;
        match f.try_lock() {
            Ok(()) => Ok(Self(f)),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(RetrievalError::Busy("another ingest is running on this data directory".into()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(RetrievalError::io(&path, e)),
        }
    }
}

/// Dense vectors by the content hash of the text they embed.
type VectorsByHash = HashMap<[u8; 32], Vec<f32>>;

/// Builds the index for `lib` unless it is already current. See the module docs.
#[tracing::instrument(skip_all, fields(components = lib.components.len()))]
pub async fn ingest(
    cfg: &Config,
    lib: &Library,
    embedder: Option<Arc<dyn Embedder>>,
    progress: &ProgressBar,
) -> Result<IngestReport, RetrievalError> {
    let started = Instant::now();
    let index_dir = cfg.index_dir();
    let _lock = IngestLock::take(&index_dir)?;
    let chunking = cfg.chunking();
    let model = embedder.as_ref().map(|e| e.model().to_owned());
    let new_hashes = hashes(lib, chunking);
    let previous = current_manifest(&index_dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "previous index unreadable; rebuilding everything");
        None
    });
    let prev_components = previous.as_ref().map(|m| m.components.clone()).unwrap_or_default();
    let unchanged = new_hashes.iter().filter(|(id, h)| prev_components.get(*id) == Some(h)).count();
    let removed = prev_components.keys().filter(|id| !new_hashes.contains_key(*id)).count();
    let mut report = IngestReport {
        components: new_hashes.len(),
        chunks: 0,
        unchanged,
        updated: new_hashes.len() - unchanged,
        removed,
        embedded_chunks: 0,
        rebuilt: false,
        generation: String::new(),
        elapsed_ms: 0,
    };
    if let Some(m) = previous.as_ref().filter(|m| matches(m, chunking, model.as_deref(), &new_hashes)) {
        report.chunks = m.chunks;
        report.generation = m.generation.clone();
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        cleanup_generations(&index_dir);
        return Ok(report);
    }

    // chunk every component
    let chunker = Chunker::new(chunking).map_err(RetrievalError::Content)?;
    let mut chunks: Vec<(&Component, usize, String)> = Vec::new();
    for c in lib.components.values() {
        for (i, text) in chunker.split(&c.retrievable_text()).into_iter().enumerate() {
            chunks.push((c, i, text));
        }
    }
    report.chunks = chunks.len();
    let embed_text = |c: &Component, text: &str| format!("{}\n\n{}", c.title, text);

    // dense vectors: cache first, then the endpoint for what is missing
    let mut dense: Option<(DenseSettings, VectorsByHash)> = None;
    if let Some(e) = &embedder {
        let mut cache = EmbeddingCache::open(&cfg.data_dir.join("embeddings"), e.model(), e.dimensions())?;
        let mut missing: Vec<String> = Vec::new();
        let mut queued = std::collections::HashSet::new();
        for (c, _, t) in &chunks {
            let text = embed_text(c, t);
            let key = EmbeddingCache::key(&text);
            if cache.get(&key).is_none() && queued.insert(key) {
                missing.push(text);
            }
        }
        progress.set_length(missing.len() as u64);
        progress.set_message("embedding");
        for batch in missing.chunks(e.batch_size().max(1)) {
            let vectors = e.embed(batch).await?;
            for (text, v) in batch.iter().zip(vectors) {
                cache.insert(EmbeddingCache::key(text), v);
            }
            // persist per batch: a crash later does not waste what was already paid for
            cache.persist()?;
            progress.inc(batch.len() as u64);
        }
        report.embedded_chunks = missing.len();
        let mut vectors = HashMap::new();
        let mut dims = None;
        for (c, _, t) in &chunks {
            let key = EmbeddingCache::key(&embed_text(c, t));
            let v = cache
                .get(&key)
                .cloned()
                .ok_or_else(|| RetrievalError::Embedding("vector missing after embedding".into()))?;
            if *dims.get_or_insert(v.len()) != v.len() {
                return Err(RetrievalError::Embedding(format!(
                    "model returned vectors of {} and {} dimensions",
                    dims.unwrap_or(0),
                    v.len()
                )));
            }
            vectors.insert(key, v);
        }
        let dimensions = e.dimensions().or(dims.map(|d| d as u32)).unwrap_or(1);
        dense = Some((DenseSettings { model: e.model().to_owned(), dimensions }, vectors));
    }

    // BM25 documents and payloads
    let words: usize = chunks.iter().map(|(_, _, t)| t.split_whitespace().count()).sum();
    let avg_len = if chunks.is_empty() { 60.0 } else { words as f64 / chunks.len() as f64 };
    let bm25 = Bm25::new(avg_len);
    let points: Vec<IndexPoint> = chunks
        .iter()
        .map(|(c, i, text)| {
            let et = embed_text(c, text);
            IndexPoint {
                id: point_id(c.id.as_str(), *i),
                payload: serde_json::json!({
                    "component_id": c.id, "course": c.course, "title": c.title, "skills": c.skills,
                    "level": c.level, "format": c.format, "chunk_index": i, "text": text,
                }),
                sparse: bm25.document(&et),
                dense: dense.as_ref().map(|(_, m)| m[&EmbeddingCache::key(&et)].clone()),
            }
        })
        .collect();

    let generation = format!("{GENERATION_PREFIX}{}-{}", now_ms(), std::process::id());
    let manifest = Manifest {
        generation: generation.clone(),
        created_unix_ms: now_ms(),
        settings: IndexSettings { chunking, dense: dense.map(|(d, _)| d), bm25_avg_len: avg_len },
        components: new_hashes,
        chunks: points.len(),
    };
    let dir = index_dir.join(&generation);
    progress.set_position(0);
    progress.set_length(points.len() as u64);
    progress.set_message("indexing");
    let pb = progress.clone();
    let build_dir = dir.clone();
    tokio::task::spawn_blocking(move || {
        EdgeStore::build(&build_dir, manifest, points, &|n| pb.set_position(n as u64)).map(drop)
    })
    .await
    .map_err(|e| RetrievalError::Store(format!("index build task: {e}")))?
    .inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&dir);
    })?;

    // the switch: CURRENT names the new generation only once it is complete and durable
    let tmp = index_dir.join(format!("{CURRENT_FILE}.tmp"));
    let io = |e| RetrievalError::io(&tmp, e);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(generation.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, index_dir.join(CURRENT_FILE)).map_err(io)?;
    std::fs::File::open(&index_dir).and_then(|d| d.sync_all()).map_err(io)?;
    tracing::info!(generation, chunks = report.chunks, "index switched");

    cleanup_generations(&index_dir);
    report.rebuilt = true;
    report.generation = generation;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Removes generations other than the current one that no process holds open
/// (an older one a running server still serves from is kept until it lets go).
pub fn cleanup_generations(index_dir: &Path) {
    let current = current_dir(index_dir).ok().flatten();
    let Ok(entries) = std::fs::read_dir(index_dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let is_gen = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(GENERATION_PREFIX));
        if !is_gen || Some(&path) == current.as_ref() || in_use(&path) {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::debug!(path = %path.display(), "removed old index generation"),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not remove old index generation")
            }
        }
    }
}

/// qdrant-edge holds an exclusive `flock` on a shard's `wal/` folder while it is open.
fn in_use(generation: &Path) -> bool {
    match std::fs::File::open(generation.join("wal")) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}
