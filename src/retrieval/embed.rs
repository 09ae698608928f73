//! Dense embeddings: the [`Embedder`] trait, an OpenAI-compatible client with retries, and an
//! on-disk cache keyed by content hash so a rebuild never re-embeds unchanged text.

use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput};

use super::RetrievalError;
use crate::config::EmbedConfig;

/// Anything that turns texts into dense vectors.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync {
    /// The model name; part of the cache key and of the index settings.
    fn model(&self) -> &str;
    /// Requested dimensions, when fixed in configuration.
    fn dimensions(&self) -> Option<u32>;
    /// How many texts to send per request.
    fn batch_size(&self) -> usize;
    /// One vector per text, in order. Implementations retry transient failures themselves.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, RetrievalError>;
}

/// An OpenAI-compatible `/v1/embeddings` endpoint through `async-openai`.
pub struct OpenAiEmbedder {
    client: Client<OpenAIConfig>,
    cfg: EmbedConfig,
}

impl OpenAiEmbedder {
    /// `None` when no base URL is configured (dense vectors off).
    pub fn from_config(cfg: &EmbedConfig) -> Option<Self> {
        let base = cfg.base_url.as_ref()?;
        let oa = OpenAIConfig::new()
            .with_api_base(base.trim_end_matches('/'))
            .with_api_key(cfg.api_key.clone().unwrap_or_default());
        Some(Self { client: Client::with_config(oa), cfg: cfg.clone() })
    }

    async fn attempt(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, (bool, String)> {
        let request = CreateEmbeddingRequest {
            model: self.cfg.model.clone(),
            input: EmbeddingInput::StringArray(texts.to_vec()),
            encoding_format: None,
            user: None,
            dimensions: self.cfg.dimensions,
        };
        let embeddings = self.client.embeddings();
        let call = embeddings.create(request);
        let response = match tokio::time::timeout(Duration::from_secs(self.cfg.timeout_secs.max(1)), call).await {
            Err(_) => {
                return Err((true, format!("no answer within {} s", self.cfg.timeout_secs)));
            }
            Ok(Err(e)) => return Err(classify(&e)),
            Ok(Ok(r)) => r,
        };
        let mut data = response.data;
        if data.len() != texts.len() {
            return Err((false, format!("asked for {} embeddings, got {}", texts.len(), data.len())));
        }
        data.sort_by_key(|e| e.index);
        let vectors: Vec<Vec<f32>> = data.into_iter().map(|e| e.embedding).collect();
        let dims = vectors[0].len();
        if dims == 0 || vectors.iter().any(|v| v.len() != dims) {
            return Err((false, "embeddings of unequal or zero length".into()));
        }
        if let Some(want) = self.cfg.dimensions
            && dims != want as usize
        {
            return Err((false, format!("asked for {want} dimensions, got {dims}")));
        }
        Ok(vectors)
    }
}

/// `(retry, message)`. async-openai already retried 429, 5xx and connection errors (three
/// retries, exponential backoff from 100 ms, honouring `Retry-After`), so only a hang is
/// worth another attempt here.
fn classify(e: &OpenAIError) -> (bool, String) {
    match e {
        OpenAIError::ApiError(r) => (false, format!("HTTP {}: {}", r.status_code.as_u16(), r.api_error.message)),
        other => (false, other.to_string()),
    }
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.cfg.model
    }
    fn dimensions(&self) -> Option<u32> {
        self.cfg.dimensions
    }
    fn batch_size(&self) -> usize {
        self.cfg.batch_size
    }

    #[tracing::instrument(skip_all, fields(model = %self.cfg.model, texts = texts.len()))]
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, RetrievalError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            match self.attempt(texts).await {
                Ok(v) => return Ok(v),
                Err((true, msg)) if attempt < self.cfg.timeout_retries => {
                    attempt += 1;
                    tracing::warn!(attempt, error = %msg, "embedding request hung, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(8));
                }
                Err((_, msg)) => {
                    return Err(RetrievalError::Embedding(format!("{msg} (after {} attempt(s))", attempt + 1)));
                }
            }
        }
    }
}

/// An append-only file of `(sha256(text), vector)` records for one model.
/// A torn last record (a crash mid-append) is ignored on load.
pub struct EmbeddingCache {
    path: PathBuf,
    map: HashMap<[u8; 32], Vec<f32>>,
    pending: Vec<([u8; 32], Vec<f32>)>,
}

impl EmbeddingCache {
    /// Opens (or starts) the cache of `model` under `dir`.
    pub fn open(dir: &Path, model: &str, dims: Option<u32>) -> Result<Self, RetrievalError> {
        std::fs::create_dir_all(dir).map_err(|e| RetrievalError::io(dir, e))?;
        let model = super::model_key(model);
        let name = super::hex(&super::sha256(format!("{model}\0{dims:?}").as_bytes())[..8]);
        let path = dir.join(format!("{name}.bin"));
        let mut map = HashMap::new();
        if let Ok(mut f) = std::fs::File::open(&path) {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(|e| RetrievalError::io(&path, e))?;
            let mut rest = bytes.as_slice();
            while rest.len() >= 36 {
                let n = u32::from_le_bytes(rest[32..36].try_into().expect("4 bytes")) as usize;
                let Some(end) = n.checked_mul(4).map(|b| 36 + b).filter(|&e| e <= rest.len()) else {
                    break;
                };
                let key: [u8; 32] = rest[..32].try_into().expect("32 bytes");
                let v =
                    rest[36..end].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
                map.insert(key, v);
                rest = &rest[end..];
            }
        }
        Ok(Self { path, map, pending: Vec::new() })
    }

    /// The cache key of a text.
    pub fn key(text: &str) -> [u8; 32] {
        super::sha256(text.as_bytes())
    }

    /// The cached vector of a key.
    pub fn get(&self, key: &[u8; 32]) -> Option<&Vec<f32>> {
        self.map.get(key)
    }

    /// Adds a vector, written by the next [`EmbeddingCache::persist`].
    pub fn insert(&mut self, key: [u8; 32], v: Vec<f32>) {
        self.pending.push((key, v.clone()));
        self.map.insert(key, v);
    }

    /// Appends pending vectors durably.
    pub fn persist(&mut self) -> Result<(), RetrievalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let io = |e| RetrievalError::io(&self.path, e);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
        let mut w = BufWriter::new(file);
        for (k, v) in &self.pending {
            w.write_all(k).map_err(io)?;
            w.write_all(&(v.len() as u32).to_le_bytes()).map_err(io)?;
            for x in v {
                w.write_all(&x.to_le_bytes()).map_err(io)?;
            }
        }
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        self.pending.clear();
        Ok(())
    }
}
