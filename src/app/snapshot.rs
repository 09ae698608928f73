//! The last content that validated, kept beside each index generation built from it: when the
//! content tree is broken at start (or when a new generation appears while it is), the service
//! serves the snapshot together with the generation, rather than an index with no content.
//! Snapshots live in `<data_dir>/content-snapshots/<generation>/`, one course folder each, and
//! are swept with their generations.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::content::{Library, SKILLS_FILE, load_library};

fn root(cfg: &Config) -> PathBuf {
    cfg.data_dir.join("content-snapshots")
}

/// Copies the files `lib` was loaded from (each course's skills file and its components) into
/// the snapshot of `generation`, atomically (a temporary folder renamed), and removes older
/// snapshots but the newest other one (a replica may still serve its generation).
pub fn save(cfg: &Config, lib: &Library, generation: &str) -> std::io::Result<()> {
    let dir = root(cfg);
    let target = dir.join(generation);
    if !target.is_dir() {
        let tmp = dir.join(format!(".{generation}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        for course in lib.courses.values() {
            let name = course.dir.file_name().unwrap_or_default();
            let into = tmp.join(name);
            std::fs::create_dir_all(&into)?;
            std::fs::copy(course.dir.join(SKILLS_FILE), into.join(SKILLS_FILE))?;
            for id in &course.components {
                let Some(c) = lib.components.get(id) else { continue };
                let Ok(rel) = c.path.strip_prefix(&course.dir) else {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(std::io::Error::other(format!("{} is outside its course folder", c.path.display())));
                };
                let to = into.join(rel);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(&c.path, to)?;
            }
        }
        // the files are read again from disk: an edit made since they were validated must not
        // make a snapshot that differs from the index built from them
        if !same_content(&load_library(&tmp, &cfg.load_options()).ok(), lib) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(std::io::Error::other("the content changed while it was being kept; not kept"));
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::rename(&tmp, &target)?;
    }
    prune(cfg, generation);
    Ok(())
}

/// Whether `copy` holds the same components, skills and answer keys as `lib` (wherever its
/// files are).
fn same_content(copy: &Option<Library>, lib: &Library) -> bool {
    let Some(copy) = copy else { return false };
    copy.skills == lib.skills
        && copy.components.len() == lib.components.len()
        && copy.components.iter().all(|(id, c)| {
            lib.components.get(id).is_some_and(|o| o.body == c.body && o.title == c.title && o.items == c.items)
        })
        && copy.answer_keys().eq(lib.answer_keys())
}

/// The snapshot of `generation`, if there is one and it still validates.
pub fn load(cfg: &Config, generation: &str) -> Option<Library> {
    let dir = root(cfg).join(generation);
    if !dir.is_dir() {
        return None;
    }
    match load_library(&dir, &cfg.load_options()) {
        Ok(lib) => Some(lib),
        Err(e) => {
            tracing::warn!(generation, problems = e.diagnostics.len(), "the content snapshot does not load");
            None
        }
    }
}

/// Removes every snapshot but `current`'s and the newest other one.
fn prune(cfg: &Config, current: &str) {
    let Ok(entries) = std::fs::read_dir(root(cfg)) else { return };
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name != current && !name.starts_with('.')
        })
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
        .collect();
    others.sort();
    others.pop();
    for (_, p) in others {
        remove(&p);
    }
}

fn remove(p: &Path) {
    if let Err(e) = std::fs::remove_dir_all(p) {
        tracing::debug!(path = %p.display(), error = %e, "could not remove an old content snapshot");
    }
}
