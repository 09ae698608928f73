//! The embedded index backend: [`EdgeIndex`], one `qdrant-edge` shard per generation folder
//! under `data/index/`, and [`EdgeStore`], one generation open for search (read-only once
//! built).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::external::serde_json::{self as qjson, json};
use qdrant_edge::{
    CountRequest, CreateIndex, Distance, EdgeConfig, EdgeShard, EdgeSparseVectorParams, EdgeVectorParams,
    FieldIndexOperations, Filter, Fusion, JsonPath, Modifier, NamedQuery, PayloadFieldSchema, PayloadSchemaType,
    PointInsertOperations, PointOperations, PointStruct, PointStructPersisted, Prefetch, QueryEnum, QueryRequest,
    ScoringQuery, ScrollRequest, SparseVector, UpdateOperation, Vector, VectorInternal, Vectors, WithPayloadInterface,
    WithVector,
};

use super::generations::{self, IngestLock};
use super::index::{IndexBackend, IndexPoint, Manifest, VectorStore, WriterLock};
use super::{Hit, RetrievalError, StoreQuery};

const SPARSE: &str = "bm25";
const DENSE: &str = "dense";
/// Payload fields with a keyword index, for filters.
const INDEXED: &[&str] = &["course", "component_id", "skills", "level", "format"];
/// Upserts per `update()` call.
const BATCH: usize = 512;
/// Optimize while building every so many points: BM25 inserts slow down as segments grow.
const OPTIMIZE_EVERY: usize = 10_000;

/// Index generations as folders under one directory (`data/index/`), switched by `CURRENT`.
pub struct EdgeIndex {
    dir: PathBuf,
}

impl EdgeIndex {
    /// The index kept under `dir` (created on the first build).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl IndexBackend for EdgeIndex {
    fn current_generation(&self) -> Result<Option<String>, RetrievalError> {
        generations::current(&self.dir)
    }

    fn current_manifest(&self) -> Result<Option<Manifest>, RetrievalError> {
        generations::current_manifest(&self.dir)
    }

    fn open_current(&self) -> Result<Option<Arc<dyn VectorStore>>, RetrievalError> {
        match generations::current(&self.dir)? {
            Some(name) => Ok(Some(
                Arc::new(EdgeStore::open(&generations::generation_dir(&self.dir, &name))?) as Arc<dyn VectorStore>
            )),
            None => Ok(None),
        }
    }

    fn lock_writer(&self) -> Result<WriterLock, RetrievalError> {
        Ok(Box::new(IngestLock::take(&self.dir)?))
    }

    fn build(
        &self,
        manifest: Manifest,
        points: Vec<IndexPoint>,
        on_progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(), RetrievalError> {
        let name = manifest.generation.clone();
        let dir = generations::generation_dir(&self.dir, &name);
        EdgeStore::build(&dir, manifest, points, on_progress).map(drop).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        // the switch: CURRENT names the new generation only once it is complete and durable
        generations::set_current(&self.dir, &name)?;
        tracing::info!(generation = name, "index switched");
        Ok(())
    }

    fn cleanup(&self) {
        generations::cleanup(&self.dir);
    }
}

/// A built index generation, open for search.
pub struct EdgeStore {
    /// Dropped by hand: qdrant-edge flushes on drop and panics if that fails (say the
    /// generation's folder was deleted under it); see `Drop for EdgeStore`.
    shard: std::mem::ManuallyDrop<EdgeShard>,
    manifest: Manifest,
    dir: PathBuf,
}

fn store_err(what: &str, e: impl std::fmt::Display) -> RetrievalError {
    RetrievalError::Store(format!("{what}: {e}"))
}

impl Drop for EdgeStore {
    fn drop(&mut self) {
        // SAFETY: the shard is taken once, here, and never used again.
        let shard = unsafe { std::mem::ManuallyDrop::take(&mut self.shard) };
        if !self.dir.join("wal").exists() {
            // the folder is gone (removed by an operator, or a test's temp dir): there is nothing
            // to flush to, and qdrant-edge would panic trying
            tracing::warn!(dir = %self.dir.display(), "an index generation was removed while open");
            std::mem::forget(shard);
            return;
        }
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(shard))).is_err() {
            tracing::error!(dir = %self.dir.display(), "closing an index generation failed (was its folder removed?)");
        }
    }
}

impl EdgeStore {
    /// Builds a complete generation in `dir` (which must not exist yet): create, upsert,
    /// flush and optimize. `manifest` is written last, so a generation without one is incomplete.
    pub fn build(
        dir: &Path,
        manifest: Manifest,
        points: Vec<IndexPoint>,
        on_progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Self, RetrievalError> {
        std::fs::create_dir_all(dir).map_err(|e| RetrievalError::io(dir, e))?;
        let mut cfg = EdgeConfig::builder()
            .sparse_vector(SPARSE, EdgeSparseVectorParams::builder().modifier(Modifier::Idf).build());
        if let Some(d) = &manifest.settings.dense {
            cfg = cfg.vector(DENSE, EdgeVectorParams::builder(d.dimensions as usize, Distance::Cosine).build());
        }
        let shard = EdgeShard::new(dir, cfg.build()).map_err(|e| store_err("create shard", e))?;
        // owned by the store from here on, so that an error or panic below closes it safely
        let store = Self { shard: std::mem::ManuallyDrop::new(shard), manifest, dir: dir.to_owned() };
        let shard = &*store.shard;
        for field in INDEXED {
            shard
                .update(UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name: field.parse::<JsonPath>().map_err(|()| store_err("field", field))?,
                    field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                })))
                .map_err(|e| store_err("create payload index", e))?;
        }
        let mut done = 0;
        let mut since_optimize = 0;
        let mut iter = points.into_iter().peekable();
        while iter.peek().is_some() {
            let batch: Vec<PointStructPersisted> = iter
                .by_ref()
                .take(BATCH)
                .map(|p| {
                    let sparse = SparseVector { indices: p.sparse.indices, values: p.sparse.values };
                    let mut vectors = vec![(SPARSE, Vector::from(sparse))];
                    if let Some(d) = p.dense {
                        vectors.push((DENSE, Vector::from(d)));
                    }
                    PointStruct::new(p.id, Vectors::new_named(vectors), p.payload).into()
                })
                .collect();
            let n = batch.len();
            shard
                .update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                    PointInsertOperations::PointsList(batch),
                )))
                .map_err(|e| store_err("upsert", e))?;
            done += n;
            since_optimize += n;
            if since_optimize >= OPTIMIZE_EVERY {
                shard.optimize().map_err(|e| store_err("optimize", e))?;
                since_optimize = 0;
            }
            on_progress(done);
        }
        // one writer, and no update() in flight: flush() is safe here (see the qdrant-edge note)
        store.flush()?;
        shard.optimize().map_err(|e| store_err("optimize", e))?;
        store.flush()?;
        generations::write_manifest(dir, &store.manifest)?;
        Ok(store)
    }

    /// Flushes to disk. qdrant-edge panics when a flush fails (a full disk, a folder removed
    /// under it); that becomes an error here.
    fn flush(&self) -> Result<(), RetrievalError> {
        if !self.dir.join("wal").exists() {
            return Err(store_err("flush", format!("{} was removed", self.dir.display())));
        }
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.shard.flush()))
            .map_err(|_| store_err("flush", format!("writing {} failed", self.dir.display())))
    }

    /// Opens a complete generation.
    pub fn open(dir: &Path) -> Result<Self, RetrievalError> {
        let manifest = generations::read_manifest(dir)?.ok_or_else(|| {
            RetrievalError::Store(format!("{}: incomplete index generation (no manifest)", dir.display()))
        })?;
        let shard = EdgeShard::load(dir, None).map_err(|e| {
            let msg = e.to_string();
            if msg.contains("lock") || msg.contains("WouldBlock") || msg.contains("temporarily unavailable") {
                RetrievalError::Busy(format!(
                    "the index at {} is open in another process (a running `tutor serve`?); ask that server instead (`tutor search --server http://127.0.0.1:8080 …`), or stop it",
                    dir.display()
                ))
            } else {
                store_err("open shard", msg)
            }
        })?;
        Ok(Self { shard: std::mem::ManuallyDrop::new(shard), manifest, dir: dir.to_owned() })
    }

    /// The generation folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn edge_filter(q: &StoreQuery) -> Result<Option<Filter>, RetrievalError> {
    q.filter
        .to_qdrant_json()
        .map(|v| qjson::from_value::<Filter>(qjson::from_str(&v.to_string()).expect("valid json")))
        .transpose()
        .map_err(|e| store_err("filter", e))
}

impl VectorStore for EdgeStore {
    fn query(&self, q: &StoreQuery) -> Result<Vec<Hit>, RetrievalError> {
        let filter = edge_filter(q)?;
        let sparse_q = q.sparse.as_ref().map(|sp| {
            ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::new(
                VectorInternal::from(SparseVector { indices: sp.indices.clone(), values: sp.values.clone() }),
                SPARSE,
            )))
        });
        let dense_q = match (&q.dense, &self.manifest.settings.dense) {
            (Some(dense), Some(_)) => Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::new(
                VectorInternal::from(dense.clone()),
                DENSE,
            )))),
            _ => None,
        };
        let (prefetches, query) = match (sparse_q, dense_q) {
            (Some(sparse_q), Some(dense_q)) => {
                let pf = |query| Prefetch {
                    prefetches: vec![],
                    query: Some(query),
                    limit: if q.fusion.candidates > 0 { q.fusion.candidates } else { q.limit * 4 },
                    params: None,
                    filter: None,
                    score_threshold: None,
                };
                let weights = (q.fusion.dense_weight != 1.0)
                    .then(|| vec![OrderedFloat(1.0), OrderedFloat(q.fusion.dense_weight)]);
                (vec![pf(sparse_q), pf(dense_q)], ScoringQuery::Fusion(Fusion::Rrf { k: 60, weights }))
            }
            (Some(one), None) | (None, Some(one)) => (vec![], one),
            (None, None) => return Err(RetrievalError::Store("a query needs a BM25 or a dense vector".into())),
        };
        let points = self
            .shard
            .query(QueryRequest {
                prefetches,
                query: Some(query),
                filter,
                score_threshold: None,
                limit: q.limit,
                offset: 0,
                params: None,
                with_vector: WithVector::Bool(false),
                with_payload: WithPayloadInterface::Bool(true),
            })
            .map_err(|e| store_err("query", e))?;
        points
            .into_iter()
            .filter_map(|p| {
                let payload = p.payload?;
                let mut value = qjson::Value::Object(payload.0.into_iter().collect());
                value["score"] = json!(p.score);
                Some(serde_json::from_str::<Hit>(&value.to_string()).map_err(|e| store_err("payload", e)))
            })
            .collect()
    }

    fn count(&self) -> Result<usize, RetrievalError> {
        self.shard.count(CountRequest { filter: None, exact: true }).map_err(|e| store_err("count", e))
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn payloads(&self) -> Result<Vec<serde_json::Value>, RetrievalError> {
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let (records, next) = self
                .shard
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(1000),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: WithVector::Bool(false),
                    order_by: None,
                })
                .map_err(|e| store_err("scroll", e))?;
            for r in records {
                if let Some(p) = r.payload {
                    let v = qjson::Value::Object(p.0.into_iter().collect());
                    out.push(serde_json::from_str(&v.to_string()).map_err(|e| store_err("payload", e))?);
                }
            }
            match next {
                Some(n) => offset = Some(n),
                None => return Ok(out),
            }
        }
    }
}
