//! Index generations on disk, for the embedded backend: each generation is a folder
//! `index/gen-*` holding its shard and, written last, its `manifest.json`; `index/CURRENT` names
//! the one being served and is switched by write-then-rename; `index/ingest.lock` keeps two
//! builds from interleaving. Everything that reads or writes these files lives here.

use std::path::{Path, PathBuf};

use super::RetrievalError;
use super::index::Manifest;

pub(crate) const MANIFEST_FILE: &str = "manifest.json";
const CURRENT_FILE: &str = "CURRENT";
const LOCK_FILE: &str = "ingest.lock";
/// Every generation folder's name starts so.
pub const GENERATION_PREFIX: &str = "gen-";

/// The folder of generation `name`.
pub(crate) fn generation_dir(index_dir: &Path, name: &str) -> PathBuf {
    index_dir.join(name)
}

/// The generation `CURRENT` names, if any.
pub(crate) fn current(index_dir: &Path) -> Result<Option<String>, RetrievalError> {
    let path = index_dir.join(CURRENT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(name) => Ok(Some(name.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RetrievalError::io(&path, e)),
    }
}

/// Points `CURRENT` at generation `name`, durably: written to a temporary file, synced,
/// renamed over the old one, and the folder synced.
pub(crate) fn set_current(index_dir: &Path, name: &str) -> Result<(), RetrievalError> {
    use std::io::Write;
    let tmp = index_dir.join(format!("{CURRENT_FILE}.tmp"));
    let io = |e| RetrievalError::io(&tmp, e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(name.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, index_dir.join(CURRENT_FILE)).map_err(io)?;
    std::fs::File::open(index_dir).and_then(|d| d.sync_all()).map_err(io)
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

/// Writes a generation's manifest durably (the last step of a build).
pub(crate) fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), RetrievalError> {
    use std::io::Write;
    let path = dir.join(MANIFEST_FILE);
    let io = |e| RetrievalError::io(&path, e);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&serde_json::to_vec_pretty(manifest).expect("serialisable")).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// The manifest of the generation `CURRENT` names.
pub(crate) fn current_manifest(index_dir: &Path) -> Result<Option<Manifest>, RetrievalError> {
    match current(index_dir)? {
        Some(name) => read_manifest(&generation_dir(index_dir, &name)),
        None => Ok(None),
    }
}

/// Holds `index/ingest.lock` so that two builds never interleave.
pub(crate) struct IngestLock(#[allow(dead_code)] std::fs::File);

impl IngestLock {
    pub(crate) fn take(index_dir: &Path) -> Result<Self, RetrievalError> {
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

/// Removes generations other than the current one that no process holds open (an older one a
/// running server still serves from is kept until it lets go), and half-built ones.
pub(crate) fn cleanup(index_dir: &Path) {
    let current = current(index_dir).ok().flatten().map(|n| generation_dir(index_dir, &n));
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
