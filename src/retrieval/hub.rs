//! The Hugging Face model cache, read and written in its standard layout
//! (`<cache>/models--<org>--<name>/{refs/<revision>, snapshots/<commit>/<file>}`), so a model
//! fetched by `huggingface_hub`, `sentence-transformers` or `hf-hub` is found here and one
//! fetched here is found by them. Files are fetched with the HTTP client the service already
//! has: `hf-hub` would add a second one (0.4: `ureq`) or a whole storage stack (1.0: `hf-xet`)
//! to download three files.
//!
//! Honours `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `HF_ENDPOINT`, `HF_TOKEN` and
//! `HF_HUB_OFFLINE`, as the Python library does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// Files a sentence-transformer folder needs.
const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// Files it may have (pooling, normalisation, input length); absent ones are fine.
const OPTIONAL: [&str; 3] = ["modules.json", "sentence_bert_config.json", "1_Pooling/config.json"];

/// Where models are cached and fetched from.
#[derive(Debug, Clone)]
pub struct Hub {
    cache: PathBuf,
    endpoint: String,
    token: Option<String>,
    offline: bool,
    revision: String,
}

impl Hub {
    /// The cache and endpoint the environment names, the Python library's defaults otherwise.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let cache = var("HF_HUB_CACHE").map(PathBuf::from).unwrap_or_else(|| {
            let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
                var("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))
                    .unwrap_or_else(|| PathBuf::from(".cache"))
                    .join("huggingface")
            });
            home.join("hub")
        });
        let offline = var("HF_HUB_OFFLINE")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        Self {
            cache,
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_owned(),
            token: var("HF_TOKEN"),
            offline,
            revision: "main".into(),
        }
    }

    /// A hub over an explicit cache folder and endpoint.
    pub fn new(cache: PathBuf, endpoint: &str) -> Self {
        Self {
            cache,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token: None,
            offline: false,
            revision: "main".into(),
        }
    }

    /// The cache folder.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    fn repo_dir(&self, id: &str) -> PathBuf {
        self.cache.join(format!("models--{}", id.replace('/', "--")))
    }

    /// The snapshot folder of `id` at the cached revision, when every required file is there.
    pub fn cached(&self, id: &str) -> Option<PathBuf> {
        let repo = self.repo_dir(id);
        let commit = std::fs::read_to_string(repo.join("refs").join(&self.revision)).ok()?;
        let snap = repo.join("snapshots").join(commit.trim());
        REQUIRED.iter().all(|f| snap.join(f).is_file()).then_some(snap)
    }

    /// Downloads `id` at the revision into the cache and returns its snapshot folder. Each file
    /// is written beside its place and renamed into it, and the revision's ref is written last,
    /// so an interrupted fetch is never taken for a model.
    pub async fn fetch(&self, id: &str) -> Result<PathBuf, String> {
        if self.offline {
            return Err(format!(
                "{id} is not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set",
                self.cache.display()
            ));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let repo = self.repo_dir(id);
        let mut commit: Option<String> = None;
        let mut fetched = Vec::new();
        for (file, required) in REQUIRED.iter().map(|f| (f, true)).chain(OPTIONAL.iter().map(|f| (f, false))) {
            let url = format!("{}/{id}/resolve/{}/{file}", self.endpoint, commit.as_deref().unwrap_or(&self.revision));
            let mut req = client.get(&url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| format!("fetching {url}: {e}"))?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND && !required {
                continue;
            }
            if matches!(resp.status().as_u16(), 401 | 403) {
                return Err(format!(
                    "fetching {url}: HTTP {} (a gated or private model needs HF_TOKEN{})",
                    resp.status(),
                    if self.token.is_some() { " with access to it" } else { "" }
                ));
            }
            if !resp.status().is_success() {
                return Err(format!("fetching {url}: HTTP {}", resp.status()));
            }
            // every file from the one commit the first answer named
            let this = resp.headers().get("x-repo-commit").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let commit = commit.get_or_insert_with(|| this.unwrap_or_else(|| self.revision.clone())).clone();
            let dest = repo.join("snapshots").join(&commit).join(file);
            // a name of this process's own: two fetching at once never write one file
            let part = dest.with_file_name(format!(
                ".{}.{}.{}.part",
                dest.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
                std::process::id(),
                crate::ids::now_ms()
            ));
            std::fs::create_dir_all(dest.parent().expect("a file in a folder"))
                .map_err(|e| format!("{}: {e}", dest.display()))?;
            let written = download(resp, &part).await;
            let bytes = match written {
                Ok(n) => n,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(format!("fetching {url}: {e}"));
                }
            };
            tokio::fs::rename(&part, &dest).await.map_err(|e| format!("{}: {e}", dest.display()))?;
            tracing::info!(model = id, file, bytes, "fetched from the Hugging Face hub");
            fetched.push(dest);
        }
        let commit = commit.unwrap_or_else(|| self.revision.clone());
        let refs = repo.join("refs");
        std::fs::create_dir_all(&refs).map_err(|e| format!("{}: {e}", refs.display()))?;
        let (tmp, dest) =
            (refs.join(format!(".{}.{}.part", self.revision, std::process::id())), refs.join(&self.revision));
        std::fs::write(&tmp, &commit)
            .and_then(|()| std::fs::rename(&tmp, &dest))
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        self.cached(id).ok_or_else(|| format!("{id}: fetched {} file(s) but the snapshot is incomplete", fetched.len()))
    }
}

/// Streams a response body into `path`, synced; the bytes written.
async fn download(resp: reqwest::Response, path: &Path) -> Result<u64, String> {
    let mut out = tokio::fs::File::create(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stream = resp.bytes_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        bytes += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    out.sync_all().await.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_found_only_when_its_ref_and_files_are_there() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::new(dir.path().to_path_buf(), "http://127.0.0.1:9");
        let id = "sentence-transformers/all-MiniLM-L6-v2";
        assert_eq!(hub.cached(id), None);
        let snap = dir.path().join("models--sentence-transformers--all-MiniLM-L6-v2/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        for f in REQUIRED {
            std::fs::write(snap.join(f), b"x").unwrap();
        }
        assert_eq!(hub.cached(id), None, "no ref yet: an interrupted fetch");
        std::fs::create_dir_all(dir.path().join("models--sentence-transformers--all-MiniLM-L6-v2/refs")).unwrap();
        std::fs::write(dir.path().join("models--sentence-transformers--all-MiniLM-L6-v2/refs/main"), "abc123\n")
            .unwrap();
        assert_eq!(hub.cached(id), Some(snap.clone()));
        std::fs::remove_file(snap.join("tokenizer.json")).unwrap();
        assert_eq!(hub.cached(id), None, "a snapshot missing a required file is not a model");
    }

    #[tokio::test]
    async fn an_unreachable_hub_is_an_error_naming_the_address() {
        let dir = tempfile::tempdir().unwrap();
        // port 9 (discard) on loopback: nothing listens, the connection is refused at once
        let hub = Hub::new(dir.path().to_path_buf(), "http://127.0.0.1:9");
        let e = hub.fetch("org/model").await.unwrap_err();
        assert!(e.contains("http://127.0.0.1:9/org/model/resolve/main/config.json"), "{e}");
        assert_eq!(hub.cached("org/model"), None);
    }
}
