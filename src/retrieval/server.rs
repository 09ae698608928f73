//! The Qdrant server backend: [`QdrantIndex`], index generations as collections on a Qdrant
//! server (through `qdrant-client`, gRPC), and [`QdrantStore`], one generation open for search.
//! Several `tutor` processes on several machines share it.
//!
//! - **Schema**: as the embedded index: a sparse vector `bm25` with the IDF modifier (the BM25
//!   document vectors are computed here, by the same code the embedded index uses, so both
//!   score alike), a named dense vector `dense` when an embedder is configured, keyword payload
//!   indexes on course, component id, skills, level and format.
//! - **Generations**: each build creates a collection `<name>-gen-…`, fills it, writes the
//!   manifest into the collection's metadata last, then points the alias `<name>-current` at it
//!   in one alias operation (Qdrant switches an alias atomically) once the server has finished
//!   indexing it, so it serves at full speed from its first query. A build that fails or is
//!   killed leaves the alias where it was.
//! - **Leases**: a process serving a generation keeps `lease-<replica>` in that collection's
//!   metadata fresh; an old generation is removed only when no lease on it is fresh, so a replica
//!   that has not yet followed the alias keeps answering from the generation it has.
//! - **One writer**: an ingest holds the collection `<name>-ingest-lock` (created only if absent,
//!   which Qdrant decides atomically), beating while it builds; a lock whose holder stopped
//!   beating, or whose holder was a process of this machine that is gone, is taken over. A
//!   half-built generation whose builder no longer holds the lock is swept.
//!
//! The trait's calls block (run them in `spawn_blocking`): each runs on a small runtime of the
//! backend's own, bounded by the configured timeouts, so a server that does not answer fails a
//! call instead of hanging it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use qdrant_client::qdrant::{
    CollectionStatus, Condition, CountPointsBuilder, CreateAliasBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, DeleteCollectionBuilder, Distance, FieldType, Filter, Modifier, NamedVectors,
    OptimizersConfigDiffBuilder, PointStruct, PrefetchQueryBuilder, Query, QueryPointsBuilder, RrfBuilder,
    ScrollPointsBuilder, SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpdateCollectionBuilder,
    UpsertPointsBuilder, Vector, VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};

use super::index::{IndexBackend, IndexPoint, Manifest, VectorStore, WriterLock};
use super::{Hit, RetrievalError, SearchFilter, StoreQuery};
use crate::config::QdrantConfig;
use crate::ids::now_ms;

const SPARSE: &str = "bm25";
const DENSE: &str = "dense";
/// Payload fields with a keyword index, for filters (as in the embedded index).
const INDEXED: &[&str] = &["course", "component_id", "skills", "level", "format"];
/// Points per upsert.
const BATCH: usize = 256;
/// The manifest, in a complete generation's metadata.
const MANIFEST_KEY: &str = "tutor_manifest";
/// When a build or a lock holder last showed it is alive (ms since the epoch).
const BEAT_KEY: &str = "beat_ms";
const HOLDER_KEY: &str = "holder";
/// A serving process's lease on a generation: `lease-<replica>` = ms since the epoch, 0 when
/// released.
const LEASE_PREFIX: &str = "lease-";
/// How often leases, builds and the ingest lock beat.
const BEAT: Duration = Duration::from_secs(3);
/// A lease or lock not renewed for this long belongs to a process that is gone.
const STALE_MS: i64 = 15_000;
/// How long a build waits for the server to index a new generation before switching anyway.
const SETTLE_MAX: Duration = Duration::from_secs(3600);
/// The most a lease's release may hold up the drop of a store.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Runs the client's futures on a runtime of its own, so that the backend's blocking calls
/// work from any thread (a `spawn_blocking` thread, a test, a command-line tool).
struct Io {
    rt: Option<tokio::runtime::Runtime>,
}

impl Io {
    fn new() -> Result<Self, RetrievalError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("qdrant-client")
            .enable_all()
            .build()
            .map_err(|e| RetrievalError::Store(format!("starting the Qdrant client's runtime: {e}")))?;
        Ok(Self { rt: Some(rt) })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.as_ref().expect("runtime lives until drop").handle()
    }

    /// Runs `fut` to completion on the client runtime and waits for it here.
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().ok()
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        // never blocks, even when dropped on an async thread
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A connection to the server, shared by the backend and its open generations.
#[derive(Clone)]
struct Conn {
    io: Arc<Io>,
    client: Qdrant,
    url: String,
    /// The most one call may take, connecting included.
    deadline: Duration,
}

impl Conn {
    /// One request, bounded by the deadline, its error said in the operator's terms.
    fn call<T, F>(&self, what: &str, f: impl FnOnce(Qdrant) -> F + Send + 'static) -> Result<T, RetrievalError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, QdrantError>> + Send + 'static,
    {
        let (client, deadline) = (self.client.clone(), self.deadline);
        match self.io.run(async move { tokio::time::timeout(deadline, f(client)).await }) {
            None => Err(RetrievalError::Store(format!("{what}: the Qdrant client stopped"))),
            Some(Err(_)) => Err(RetrievalError::Unreachable(format!(
                "the Qdrant server at {} did not answer within {:.0?} ({what})",
                self.url, deadline
            ))),
            Some(Ok(r)) => r.map_err(|e| self.error(what, e)),
        }
    }

    /// Starts `f` on the client runtime without waiting for it.
    fn spawn<F>(&self, f: impl FnOnce(Qdrant) -> F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let _guard = self.io.handle().enter();
        tokio::spawn(f(self.client.clone()))
    }

    fn error(&self, what: &str, e: QdrantError) -> RetrievalError {
        use tonic::Code;
        let url = &self.url;
        match &e {
            QdrantError::ResponseError { status } => match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => RetrievalError::Unreachable(format!(
                    "the Qdrant server at {url} is unreachable ({what}: {})",
                    status.message()
                )),
                Code::Unauthenticated | Code::PermissionDenied => RetrievalError::Store(format!(
                    "the Qdrant server at {url} refused the request ({what}): {}; check TUTOR_QDRANT_API_KEY",
                    status.message()
                )),
                // the client reports a refused or failed connection so
                Code::Internal if status.message().starts_with("Failed to connect") => {
                    tracing::debug!(error = status.message(), "connecting to Qdrant failed");
                    let why = if status.message().contains("Connection refused") {
                        "connection refused"
                    } else if status.message().contains("timed out") {
                        "connecting timed out"
                    } else {
                        "could not connect"
                    };
                    RetrievalError::Unreachable(format!("the Qdrant server at {url} is unreachable ({what}: {why})"))
                }
                _ => RetrievalError::Store(format!("Qdrant at {url}: {what}: {}", status.message())),
            },
            _ => RetrievalError::Store(format!("Qdrant at {url}: {what}: {e}")),
        }
    }

    /// Merges `entries` into a collection's metadata.
    fn set_metadata(&self, collection: &str, entries: Vec<(&str, serde_json::Value)>) -> Result<(), RetrievalError> {
        let (name, meta) = (collection.to_owned(), metadata(entries));
        self.call("updating collection metadata", move |c| async move {
            c.update_collection(UpdateCollectionBuilder::new(name).metadata(meta)).await.map(drop)
        })
    }

    /// A collection's metadata; `None` when the collection does not exist.
    fn metadata(&self, collection: &str) -> Result<Option<serde_json::Map<String, serde_json::Value>>, RetrievalError> {
        let name = collection.to_owned();
        let info = self.call("reading a collection", move |c| async move {
            if !c.collection_exists(&name).await? {
                return Ok(None);
            }
            c.collection_info(&name).await.map(Some)
        })?;
        Ok(info.map(|i| {
            i.result
                .and_then(|r| r.config)
                .map(|c| c.metadata.into_iter().map(|(k, v)| (k, serde_json::Value::from(v))).collect())
                .unwrap_or_default()
        }))
    }

    fn delete_collection(&self, collection: &str) -> Result<(), RetrievalError> {
        let name = collection.to_owned();
        self.call("deleting a collection", move |c| async move {
            c.delete_collection(DeleteCollectionBuilder::new(name)).await.map(drop)
        })
    }
}

fn metadata(entries: Vec<(&str, serde_json::Value)>) -> HashMap<String, serde_json::Value> {
    entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn manifest_of(meta: &serde_json::Map<String, serde_json::Value>) -> Result<Option<Manifest>, RetrievalError> {
    meta.get(MANIFEST_KEY)
        .and_then(|v| v.as_str())
        .map(|s| serde_json::from_str(s).map_err(|e| RetrievalError::Store(format!("a generation's manifest: {e}"))))
        .transpose()
}

fn beat_of(meta: &serde_json::Map<String, serde_json::Value>, key: &str) -> i64 {
    meta.get(key).and_then(serde_json::Value::as_i64).unwrap_or(0)
}

/// This process, as leases and the ingest lock name it.
fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    // the process-id namespace too: containers may share a host name, never a namespace
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|l| l.to_string_lossy().chars().filter(char::is_ascii_digit).collect::<String>())
        .unwrap_or_default();
    // and the boot: namespaces' numbers repeat on hosts that boot alike
    let boot: String = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    let host = if host.is_empty() { "tutor" } else { &host };
    let place = if ns.is_empty() || boot.is_empty() { String::new() } else { format!("{ns}.{boot}") };
    format!("{host}:{place}:{}:{}", std::process::id(), crate::ids::random_hex(3))
}

/// Whether `holder` (a [`replica_id`]) names a process that has exited, as far as this process
/// can tell: one of this machine and process namespace, no longer running.
fn gone_from_this_machine(holder: &str, me: &str) -> bool {
    let place = |id: &str| id.split(':').take(2).collect::<Vec<_>>().join(":");
    let pid = holder.split(':').nth(2).and_then(|p| p.parse::<u32>().ok());
    match pid {
        Some(pid) if place(holder) == place(me) && !place(me).ends_with(':') => {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

/// Index generations as collections on a Qdrant server, switched by an alias.
pub struct QdrantIndex {
    conn: Conn,
    /// Every collection and alias of this index starts with it.
    name: String,
    replica: String,
}

impl QdrantIndex {
    /// A client for the server `cfg.url` says. Connects lazily: an unreachable server fails
    /// the first call, not this.
    pub fn connect(cfg: &QdrantConfig) -> Result<Self, RetrievalError> {
        let url = cfg.url.clone().ok_or_else(|| RetrievalError::Store("no Qdrant URL configured".into()))?;
        let io = Arc::new(Io::new()?);
        let mut builder = Qdrant::from_url(&url)
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .skip_compatibility_check();
        if let Some(key) = &cfg.api_key {
            builder = builder.api_key(key.clone());
        }
        let client = {
            let _guard = io.handle().enter();
            builder.build().map_err(|e| RetrievalError::Store(format!("Qdrant URL {url}: {e}")))?
        };
        let deadline = Duration::from_secs(cfg.timeout_secs + cfg.connect_timeout_secs + 1);
        Ok(Self { conn: Conn { io, client, url, deadline }, name: cfg.collection.clone(), replica: replica_id() })
    }

    /// The server's version (a health check).
    pub fn server_version(&self) -> Result<String, RetrievalError> {
        self.conn.call("health check", |c| async move { c.health_check().await.map(|r| r.version) })
    }

    /// This index's generations on the server, oldest first: each collection's generation name
    /// and whether it is complete (has its manifest).
    pub fn generations(&self) -> Result<Vec<(String, bool)>, RetrievalError> {
        let mut out = Vec::new();
        for c in self.generation_collections()? {
            if let Some(meta) = self.conn.metadata(&c)? {
                out.push((self.generation_of(&c).unwrap_or_default().to_owned(), meta.contains_key(MANIFEST_KEY)));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes every collection and the alias of this index (for tests and decommissioning).
    pub fn remove_all(&self) -> Result<(), RetrievalError> {
        let mut doomed = self.generation_collections()?;
        doomed.push(self.lock_name());
        for c in doomed {
            if self.conn.metadata(&c)?.is_some() {
                self.conn.delete_collection(&c)?;
            }
        }
        Ok(())
    }

    /// The alias searches follow.
    pub fn alias(&self) -> String {
        format!("{}-current", self.name)
    }

    fn collection(&self, generation: &str) -> String {
        format!("{}-{generation}", self.name)
    }

    fn generation_of<'a>(&self, collection: &'a str) -> Option<&'a str> {
        collection.strip_prefix(&self.name).and_then(|s| s.strip_prefix('-')).filter(|g| g.starts_with("gen-"))
    }

    fn lock_name(&self) -> String {
        format!("{}-ingest-lock", self.name)
    }

    /// The collection the alias points at.
    fn current_collection(&self) -> Result<Option<String>, RetrievalError> {
        let aliases = self.conn.call("listing aliases", |c| async move { c.list_aliases().await })?;
        let alias = self.alias();
        Ok(aliases.aliases.into_iter().find(|a| a.alias_name == alias).map(|a| a.collection_name))
    }

    /// Every collection of this index's generations, complete or not.
    fn generation_collections(&self) -> Result<Vec<String>, RetrievalError> {
        let all = self.conn.call("listing collections", |c| async move { c.list_collections().await })?;
        Ok(all.collections.into_iter().map(|c| c.name).filter(|n| self.generation_of(n).is_some()).collect())
    }

    fn create_generation(&self, manifest: &Manifest, collection: &str) -> Result<(), RetrievalError> {
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(SPARSE, SparseVectorParamsBuilder::default().modifier(Modifier::Idf));
        let mut create = CreateCollectionBuilder::new(collection)
            .sparse_vectors_config(sparse)
            .metadata(metadata(vec![(HOLDER_KEY, self.replica.clone().into())]));
        if let Some(d) = &manifest.settings.dense {
            let mut dense = VectorsConfigBuilder::default();
            dense.add_named_vector_params(DENSE, VectorParamsBuilder::new(u64::from(d.dimensions), Distance::Cosine));
            create = create.vectors_config(dense);
        }
        self.conn.call("creating a collection", move |c| async move { c.create_collection(create).await.map(drop) })?;
        for field in INDEXED {
            let req = CreateFieldIndexCollectionBuilder::new(collection, *field, FieldType::Keyword).wait(true);
            self.conn
                .call("creating a payload index", move |c| async move { c.create_field_index(req).await.map(drop) })?;
        }
        Ok(())
    }

    fn fill(
        &self,
        collection: &str,
        points: Vec<IndexPoint>,
        on_progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(), RetrievalError> {
        let mut done = 0;
        let mut iter = points.into_iter().peekable();
        while iter.peek().is_some() {
            let batch = iter.by_ref().take(BATCH).map(to_point).collect::<Result<Vec<_>, _>>()?;
            let n = batch.len();
            let req = UpsertPointsBuilder::new(collection, batch).wait(true);
            self.conn.call("storing points", move |c| async move { c.upsert_points(req).await.map(drop) })?;
            done += n;
            on_progress(done);
        }
        self.settle(collection)
    }

    /// Waits until the server has finished indexing a collection (HNSW and payload indexes
    /// built, status green), so that a generation serves at full speed from its first query. A
    /// collection whose optimisation is pending (grey) is nudged once.
    fn settle(&self, collection: &str) -> Result<(), RetrievalError> {
        let started = std::time::Instant::now();
        let mut nudged: Option<std::time::Instant> = None;
        let mut said = false;
        loop {
            let name = collection.to_owned();
            let info = self.conn.call("reading a collection", move |c| async move { c.collection_info(name).await })?;
            match info.result.map(|r| CollectionStatus::try_from(r.status)) {
                Some(Ok(CollectionStatus::Green)) => return Ok(()),
                None => return Err(RetrievalError::Store(format!("Qdrant did not describe {collection}"))),
                _ if started.elapsed() > SETTLE_MAX => {
                    tracing::warn!(
                        collection,
                        "the Qdrant server is still indexing after an hour; serving it as it is"
                    );
                    return Ok(());
                }
                Some(Ok(CollectionStatus::Red)) => {
                    return Err(RetrievalError::Store(format!("Qdrant failed to index {collection} (status red)")));
                }
                Some(Ok(CollectionStatus::Grey)) if nudged.is_none() => {
                    nudged = Some(std::time::Instant::now());
                    let req = UpdateCollectionBuilder::new(collection)
                        .optimizers_config(OptimizersConfigDiffBuilder::default());
                    self.conn.call("starting the optimisers", move |c| async move {
                        c.update_collection(req).await.map(drop)
                    })?;
                }
                // still pending well after the nudge: the optimisers are off (an operator's
                // choice), so it is served as it is
                Some(Ok(CollectionStatus::Grey)) if nudged.is_some_and(|t| t.elapsed() > Duration::from_secs(30)) => {
                    tracing::warn!(
                        collection,
                        "the Qdrant server does not optimise this collection; serving it as it is"
                    );
                    return Ok(());
                }
                _ => {
                    if !said {
                        said = true;
                        tracing::info!(collection, "waiting for the Qdrant server to finish indexing");
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }
}

fn to_point(p: IndexPoint) -> Result<PointStruct, RetrievalError> {
    let mut vectors = NamedVectors::default().add_vector(SPARSE, Vector::new_sparse(p.sparse.indices, p.sparse.values));
    if let Some(d) = p.dense {
        vectors = vectors.add_vector(DENSE, Vector::new_dense(d));
    }
    let payload = Payload::try_from(p.payload).map_err(|e| RetrievalError::Store(format!("payload: {e}")))?;
    Ok(PointStruct::new(p.id, vectors, payload))
}

impl IndexBackend for QdrantIndex {
    fn current_generation(&self) -> Result<Option<String>, RetrievalError> {
        Ok(self.current_collection()?.and_then(|c| self.generation_of(&c).map(str::to_owned)))
    }

    fn current_manifest(&self) -> Result<Option<Manifest>, RetrievalError> {
        match self.current_collection()? {
            Some(c) => self.conn.metadata(&c)?.map_or(Ok(None), |m| manifest_of(&m)),
            None => Ok(None),
        }
    }

    fn open_current(&self) -> Result<Option<Arc<dyn VectorStore>>, RetrievalError> {
        // The lease is written, then the alias read again: a cleanup elsewhere reads the alias
        // before the leases, so a generation still current after the lease landed is kept.
        for _ in 0..3 {
            let Some(collection) = self.current_collection()? else {
                return Ok(None);
            };
            let manifest =
                self.conn.metadata(&collection)?.map_or(Ok(None), |m| manifest_of(&m))?.ok_or_else(|| {
                    RetrievalError::Store(format!(
                        "{collection}: the alias points at an incomplete generation (no manifest)"
                    ))
                })?;
            let store = QdrantStore::open(self.conn.clone(), collection, manifest, &self.replica)?;
            if self.current_collection()?.as_deref() == Some(store.collection()) {
                return Ok(Some(Arc::new(store)));
            }
        }
        Err(RetrievalError::Store("the index alias kept moving while it was opened; a later poll will".into()))
    }

    fn lock_writer(&self) -> Result<WriterLock, RetrievalError> {
        let lock = self.lock_name();
        for _ in 0..3 {
            let create = CreateCollectionBuilder::new(&lock)
                .metadata(metadata(vec![(BEAT_KEY, now_ms().into()), (HOLDER_KEY, self.replica.clone().into())]));
            match self.conn.call("taking the ingest lock", move |c| async move { c.create_collection(create).await }) {
                Ok(_) => return Ok(Box::new(IngestLock::hold(self.conn.clone(), lock, self.replica.clone()))),
                Err(RetrievalError::Store(msg)) if msg.contains("already exists") => {
                    let meta = self.conn.metadata(&lock)?.unwrap_or_default();
                    let holder = meta.get(HOLDER_KEY).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
                    let age = now_ms() - beat_of(&meta, BEAT_KEY);
                    if age < STALE_MS && !gone_from_this_machine(&holder, &self.replica) {
                        return Err(RetrievalError::Busy(format!(
                            "another ingest is running on the Qdrant server at {} (held by {holder})",
                            self.conn.url
                        )));
                    }
                    // only the lock judged stale: another process taking it over meanwhile made
                    // a new one, which stays
                    let again = self.conn.metadata(&lock)?.unwrap_or_default();
                    if again.get(HOLDER_KEY) != meta.get(HOLDER_KEY)
                        || beat_of(&again, BEAT_KEY) != beat_of(&meta, BEAT_KEY)
                    {
                        continue;
                    }
                    tracing::warn!(holder, age_ms = age, "taking over the ingest lock of a process that stopped");
                    self.conn.delete_collection(&lock)?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(RetrievalError::Busy("another ingest took the lock first".into()))
    }

    fn build(
        &self,
        manifest: Manifest,
        points: Vec<IndexPoint>,
        on_progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(), RetrievalError> {
        let collection = self.collection(&manifest.generation);
        let built = self
            .create_generation(&manifest, &collection)
            .and_then(|()| self.fill(&collection, points, on_progress))
            .and_then(|()| {
                let json = serde_json::to_string(&manifest).expect("serialisable");
                self.conn.set_metadata(&collection, vec![(MANIFEST_KEY, json.into())])
            });
        if let Err(e) = built {
            if let Err(cleanup) = self.conn.delete_collection(&collection) {
                tracing::warn!(collection, error = %cleanup, "could not remove a failed build; a later cleanup will");
            }
            return Err(e);
        }
        // still the writer? (a lock that lapsed, say while the server was away, may have been
        // taken over: the newer build wins)
        let holder = self.conn.metadata(&self.lock_name())?.and_then(|m| m.get(HOLDER_KEY).cloned());
        if holder.as_ref().and_then(|h| h.as_str()) != Some(self.replica.as_str()) {
            let _ = self.conn.delete_collection(&collection);
            return Err(RetrievalError::Busy(
                "this ingest's lock lapsed and another ingest took it over; the other one's index will serve".into(),
            ));
        }
        // the switch: one alias operation, atomic on the server
        let (alias, target) = (self.alias(), collection.clone());
        self.conn.call("switching the alias", move |c| async move {
            c.create_alias(CreateAliasBuilder::new(target, alias)).await.map(drop)
        })?;
        tracing::info!(collection, alias = self.alias(), "index switched");
        Ok(())
    }

    fn cleanup(&self) {
        let swept = || -> Result<(), RetrievalError> {
            // The order of the reads matters. A generation listed here was created under the
            // lock, so when the lock is read next, its build either still holds it (kept) or
            // has ended: switched the alias (read after the lock, so seen as current unless a
            // later build replaced it) or failed or was killed (left over).
            let collections = self.generation_collections()?;
            let lock = self.conn.metadata(&self.lock_name())?;
            let building = lock
                .filter(|m| now_ms() - beat_of(m, BEAT_KEY) < STALE_MS)
                .and_then(|m| m.get(HOLDER_KEY).and_then(|h| h.as_str()).map(str::to_owned));
            let current = self.current_collection()?;
            for c in collections {
                if Some(&c) == current.as_ref() {
                    continue;
                }
                let Some(meta) = self.conn.metadata(&c)? else { continue };
                let now = now_ms();
                let builder = meta.get(HOLDER_KEY).and_then(|h| h.as_str());
                let alive = (builder.is_some() && builder == building.as_deref())
                    // complete: kept while a replica serves it
                    || (meta.contains_key(MANIFEST_KEY)
                        && meta
                            .iter()
                            .any(|(k, v)| k.starts_with(LEASE_PREFIX) && now - v.as_i64().unwrap_or(0) < STALE_MS));
                if !alive {
                    self.conn.delete_collection(&c)?;
                    tracing::debug!(collection = c, "removed old index generation");
                }
            }
            Ok(())
        };
        if let Err(e) = swept() {
            tracing::warn!(error = %e, "could not sweep old index generations; a later cleanup will");
        }
    }
}

/// The ingest lock, beating while held and removed when dropped.
struct IngestLock {
    conn: Conn,
    name: String,
    holder: String,
    beat: tokio::task::JoinHandle<()>,
}

impl IngestLock {
    fn hold(conn: Conn, name: String, holder: String) -> Self {
        let lock = name.clone();
        let beat = conn.spawn(move |c| async move {
            loop {
                tokio::time::sleep(BEAT).await;
                let meta = metadata(vec![(BEAT_KEY, now_ms().into())]);
                // bounded by the beat, so that a slow renewal never leaves a gap near the
                // stale limit
                let renew = c.update_collection(UpdateCollectionBuilder::new(&lock).metadata(meta));
                if !matches!(tokio::time::timeout(BEAT, renew).await, Ok(Ok(_))) {
                    tracing::warn!("could not renew the ingest lock");
                }
            }
        });
        Self { conn, name, holder, beat }
    }
}

impl Drop for IngestLock {
    fn drop(&mut self) {
        self.beat.abort();
        // only this process's lock: one that lapsed may have been taken over
        let ours = match self.conn.metadata(&self.name) {
            Ok(meta) => meta.is_some_and(|m| m.get(HOLDER_KEY).and_then(|h| h.as_str()) == Some(self.holder.as_str())),
            Err(_) => false,
        };
        if ours && let Err(e) = self.conn.delete_collection(&self.name) {
            tracing::warn!(error = %e, "could not release the ingest lock; it lapses by itself within 15 s");
        }
    }
}

/// A generation on the server, open for search, leased while open.
pub struct QdrantStore {
    conn: Conn,
    collection: String,
    manifest: Manifest,
    lease: String,
    beat: tokio::task::JoinHandle<()>,
}

impl QdrantStore {
    fn open(conn: Conn, collection: String, manifest: Manifest, replica: &str) -> Result<Self, RetrievalError> {
        let lease = format!("{LEASE_PREFIX}{replica}");
        conn.set_metadata(&collection, vec![(&lease, now_ms().into())])?;
        let (name, key) = (collection.clone(), lease.clone());
        let beat = conn.spawn(move |c| async move {
            loop {
                tokio::time::sleep(BEAT).await;
                let meta = metadata(vec![(&key, now_ms().into())]);
                let renew = c.update_collection(UpdateCollectionBuilder::new(&name).metadata(meta));
                if !matches!(tokio::time::timeout(BEAT, renew).await, Ok(Ok(_))) {
                    tracing::debug!("could not renew the lease on the served index generation");
                }
            }
        });
        Ok(Self { conn, collection, manifest, lease, beat })
    }

    /// The collection this generation lives in.
    pub fn collection(&self) -> &str {
        &self.collection
    }
}

impl Drop for QdrantStore {
    fn drop(&mut self) {
        self.beat.abort();
        // waits a moment at most (a drop may happen on an async thread); a lease that is not
        // released lapses by itself
        let (name, key) = (self.collection.clone(), self.lease.clone());
        let client = self.conn.client.clone();
        let released = self.conn.io.run(async move {
            let meta = metadata(vec![(&key, 0.into())]);
            let update = client.update_collection(UpdateCollectionBuilder::new(&name).metadata(meta));
            matches!(tokio::time::timeout(RELEASE_WAIT, update).await, Ok(Ok(_)))
        });
        if released != Some(true) {
            tracing::debug!(collection = self.collection, "could not release the lease; it lapses by itself");
        }
    }
}

/// Our filter in the client's terms: the same conditions as [`SearchFilter::to_qdrant_json`].
fn server_filter(f: &SearchFilter) -> Option<Filter> {
    let any = |key: &str, values: Vec<String>| {
        if values.len() == 1 {
            Condition::matches(key, values.into_iter().next().expect("one value"))
        } else {
            Condition::matches(key, values)
        }
    };
    let mut must = Vec::new();
    if let Some(c) = &f.course {
        must.push(any("course", vec![c.clone()]));
    }
    if !f.skills.is_empty() {
        must.push(any("skills", f.skills.iter().map(ToString::to_string).collect()));
    }
    if !f.levels.is_empty() {
        must.push(any("level", f.levels.iter().map(ToString::to_string).collect()));
    }
    if !f.formats.is_empty() {
        must.push(any("format", f.formats.iter().map(ToString::to_string).collect()));
    }
    (!must.is_empty()).then(|| Filter::must(must))
}

fn payload_json(payload: HashMap<String, qdrant_client::qdrant::Value>) -> serde_json::Value {
    serde_json::Value::Object(payload.into_iter().map(|(k, v)| (k, v.into())).collect())
}

impl VectorStore for QdrantStore {
    fn query(&self, q: &StoreQuery) -> Result<Vec<Hit>, RetrievalError> {
        let sparse = q.sparse.as_ref().map(|s| VectorInput::new_sparse(s.indices.clone(), s.values.clone()));
        let dense = match (&q.dense, &self.manifest.settings.dense) {
            (Some(v), Some(_)) => Some(VectorInput::new_dense(v.clone())),
            _ => None,
        };
        let mut req = QueryPointsBuilder::new(&self.collection).limit(q.limit as u64).with_payload(true);
        if let Some(f) = server_filter(&q.filter) {
            req = req.filter(f);
        }
        req = match (sparse, dense) {
            (Some(sparse), Some(dense)) => {
                let limit = if q.fusion.candidates > 0 { q.fusion.candidates } else { q.limit * 4 } as u64;
                let pf = |v: VectorInput, using: &str| {
                    PrefetchQueryBuilder::default().query(Query::new_nearest(v)).using(using).limit(limit)
                };
                let mut rrf = RrfBuilder::with_k(60);
                if q.fusion.dense_weight != 1.0 {
                    rrf = rrf.weights(vec![1.0, q.fusion.dense_weight]);
                }
                req.add_prefetch(pf(sparse, SPARSE)).add_prefetch(pf(dense, DENSE)).query(Query::new_rrf(rrf))
            }
            (Some(sparse), None) => req.query(Query::new_nearest(sparse)).using(SPARSE),
            (None, Some(dense)) => req.query(Query::new_nearest(dense)).using(DENSE),
            (None, None) => return Err(RetrievalError::Store("a query needs a BM25 or a dense vector".into())),
        };
        let res = self.conn.call("searching", move |c| async move { c.query(req).await })?;
        res.result
            .into_iter()
            .map(|p| {
                let mut value = payload_json(p.payload);
                value["score"] = p.score.into();
                serde_json::from_value::<Hit>(value).map_err(|e| RetrievalError::Store(format!("payload: {e}")))
            })
            .collect()
    }

    fn count(&self) -> Result<usize, RetrievalError> {
        let req = CountPointsBuilder::new(&self.collection).exact(true);
        let res = self.conn.call("counting points", move |c| async move { c.count(req).await })?;
        Ok(res.result.map_or(0, |r| r.count as usize))
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn payloads(&self) -> Result<Vec<serde_json::Value>, RetrievalError> {
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let mut req = ScrollPointsBuilder::new(&self.collection).limit(1000).with_payload(true);
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let res = self.conn.call("reading points", move |c| async move { c.scroll(req).await })?;
            out.extend(res.result.into_iter().map(|r| payload_json(r.payload)));
            match res.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(out),
            }
        }
    }
}
