//! In-process sentence embeddings: a BERT-class sentence-transformer (all-MiniLM-L6-v2,
//! BGE-small, …) run on the CPU with candle and tokenised with `tokenizers`, pooled and
//! normalised as the model's own sentence-transformers files say (`modules.json`,
//! `1_Pooling/config.json`, `sentence_bert_config.json`). No keys, no servers.
//!
//! The model is a folder with `config.json`, `tokenizer.json` and `model.safetensors`, given
//! directly or found in (and, on first use, fetched into) the standard Hugging Face cache by
//! model id; see [`locate`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{Embedder, RetrievalError};

/// Texts per forward pass: long enough to use both cores, short enough that padding to the
/// longest text in a batch (texts are sorted by length first) wastes little.
const FORWARD_BATCH: usize = 16;

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
    Max,
    MeanSqrtLen,
}

#[derive(Deserialize, Default)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// What the model folder says about pooling, normalisation and input length.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub pooling: Pooling,
    pub normalize: bool,
    /// Tokens per text, special tokens included; longer texts are truncated.
    pub max_tokens: usize,
}

impl Recipe {
    /// Reads the sentence-transformers files of `dir`. A plain Hugging Face BERT folder (no
    /// `modules.json`) gets mean pooling and normalisation, the usual sentence-embedding
    /// recipe; `max_tokens` caps the model's own limit.
    pub fn read(dir: &Path, max_tokens: usize, max_positions: usize) -> Result<Self, RetrievalError> {
        let unsupported = |what: String| {
            RetrievalError::Embedding(format!("{}: {what}: not supported by the in-process embedder", dir.display()))
        };
        let modules: Option<Vec<Module>> = read_json_opt(&dir.join("modules.json"))?;
        let (pooling_dir, normalize) = match &modules {
            Some(m) => {
                // what sentence-transformers would run: anything but these changes the vector
                if let Some(other) = m.iter().find(|m| {
                    !m.kind.ends_with(".Transformer")
                        && !m.kind.ends_with(".Pooling")
                        && !m.kind.ends_with(".Normalize")
                }) {
                    return Err(unsupported(format!("module {}", other.kind)));
                }
                (
                    m.iter().find(|m| m.kind.ends_with(".Pooling")).map(|m| dir.join(&m.path)),
                    m.iter().any(|m| m.kind.ends_with(".Normalize")),
                )
            }
            None => (Some(dir.join("1_Pooling")), true),
        };
        let pc: PoolingConfig = match pooling_dir {
            Some(p) => read_json_opt(&p.join("config.json"))?.unwrap_or_default(),
            None => PoolingConfig::default(),
        };
        if pc.pooling_mode_weightedmean_tokens || pc.pooling_mode_lasttoken {
            return Err(unsupported("weighted-mean or last-token pooling".into()));
        }
        let modes = [
            (pc.pooling_mode_cls_token, Pooling::Cls),
            (pc.pooling_mode_mean_tokens, Pooling::Mean),
            (pc.pooling_mode_max_tokens, Pooling::Max),
            (pc.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
        ];
        let on: Vec<Pooling> = modes.iter().filter(|(on, _)| *on).map(|(_, p)| *p).collect();
        let pooling = match on.as_slice() {
            // nothing says otherwise: the usual sentence-embedding recipe
            [] => Pooling::Mean,
            [one] => *one,
            // sentence-transformers concatenates several modes into one longer vector
            _ => return Err(unsupported(format!("several pooling modes at once ({on:?})"))),
        };
        let sb: Option<SentenceBertConfig> = read_json_opt(&dir.join("sentence_bert_config.json"))?;
        let model_max = sb.and_then(|s| s.max_seq_length).unwrap_or(max_positions).min(max_positions);
        Ok(Self { pooling, normalize, max_tokens: max_tokens.clamp(8, model_max.max(8)) })
    }
}

fn read_json_opt<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, RetrievalError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RetrievalError::Embedding(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RetrievalError::io(path, e)),
    }
}

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    recipe: Recipe,
    device: Device,
}

/// A sentence-transformer on the CPU, behind the same [`Embedder`] trait as the HTTP one.
pub struct LocalEmbedder {
    inner: Arc<Inner>,
    name: String,
    dims: u32,
    batch_size: usize,
    /// One forward pass at a time: each already uses every core (candle's matmul threads), so
    /// concurrent queries queue here rather than thrash.
    gate: tokio::sync::Semaphore,
}

impl LocalEmbedder {
    /// Loads the model in `dir`. `name` identifies it in the embedding cache and the index
    /// settings; a fingerprint of the files is appended, so changed weights are re-embedded.
    pub fn load(dir: &Path, name: &str, max_tokens: usize, batch_size: usize) -> Result<Self, RetrievalError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            RetrievalError::Embedding(format!("{}: {what}: {e}", dir.display()))
        };
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            if !dir.join(f).is_file() {
                return Err(RetrievalError::Embedding(format!(
                    "{}: no {f} (a model folder needs config.json, tokenizer.json and model.safetensors)",
                    dir.display()
                )));
            }
        }
        let config_bytes =
            std::fs::read(dir.join("config.json")).map_err(|e| RetrievalError::io(&dir.join("config.json"), e))?;
        let config: BertConfig = serde_json::from_slice(&config_bytes).map_err(|e| err("config.json", &e))?;
        let recipe = Recipe::read(dir, max_tokens, config.max_position_embeddings)?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer_bytes = std::fs::read(&tokenizer_path).map_err(|e| RetrievalError::io(&tokenizer_path, e))?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| err("tokenizer.json", &e))?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: recipe.max_tokens, ..Default::default() }))
            .map_err(|e| err("tokenizer truncation", &e))?;
        let pad_id = config.pad_token_id as u32;
        let pad_token = tokenizer.id_to_token(pad_id).unwrap_or_else(|| "[PAD]".into());
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|e| RetrievalError::io(&weights_path, e))?;
        let fingerprint = fingerprint(&[&config_bytes, &tokenizer_bytes], &weights, &recipe);
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| err("model.safetensors", &e))?;
        let model = BertModel::load(vb, &config).map_err(|e| err("loading the BERT weights", &e))?;
        let inner = Arc::new(Inner { model, tokenizer, recipe, device });
        let dims = config.hidden_size as u32;
        Ok(Self {
            inner,
            name: format!("{name}@{fingerprint}"),
            dims,
            batch_size: batch_size.max(1),
            gate: tokio::sync::Semaphore::new(1),
        })
    }

    /// Pooling, normalisation and input length in use.
    pub fn recipe(&self) -> &Recipe {
        &self.inner.recipe
    }
}

/// Eight hex digits over the configuration files, the recipe and the whole weights file (about
/// 0.2 s for 90 MB), so any retrained or re-quantised model is re-embedded.
fn fingerprint(files: &[&[u8]], weights: &[u8], recipe: &Recipe) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f);
    }
    h.update(format!("{recipe:?}").as_bytes());
    h.update(weights);
    super::hex(&h.finalize()[..4])
}

/// What identifies an embedder's vectors: an in-process model's fingerprint (`name@fingerprint`,
/// however its folder was found), any other model's name.
pub fn model_key(model: &str) -> &str {
    match model.rsplit_once('@') {
        Some((_, fp)) if fp.len() == 8 && fp.bytes().all(|b| b.is_ascii_hexdigit()) => fp,
        _ => model,
    }
}

/// Whether two embedder identities name the same vectors (see [`model_key`]).
pub fn same_model(a: &str, b: &str) -> bool {
    model_key(a) == model_key(b)
}

/// A readable name for a model folder: the repository of a Hugging Face cache snapshot
/// (`models--org--name/snapshots/<commit>` → `org/name`), else the folder's own name.
pub fn folder_name(dir: &Path) -> String {
    let parent = dir.parent();
    if parent.and_then(|p| p.file_name()).is_some_and(|n| n == "snapshots")
        && let Some(repo) = parent.and_then(Path::parent).and_then(|r| r.file_name()).and_then(|n| n.to_str())
        && let Some(id) = repo.strip_prefix("models--")
    {
        return id.replace("--", "/");
    }
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

impl Inner {
    /// One vector per text, in order: sorted by length into forward batches, padded to the
    /// longest in each.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for group in order.chunks(FORWARD_BATCH) {
            let batch: Vec<&str> = group.iter().map(|&i| texts[i].as_str()).collect();
            for (i, v) in group.iter().zip(self.forward(batch)?) {
                out[*i] = v;
            }
        }
        Ok(out)
    }

    fn forward(&self, texts: Vec<&str>) -> Result<Vec<Vec<f32>>, String> {
        let enc = self.tokenizer.encode_batch(texts, true).map_err(|e| format!("tokenizing: {e}"))?;
        let n = enc.len();
        let truncated = enc.iter().filter(|e| !e.get_overflowing().is_empty()).count();
        if truncated > 0 {
            tracing::debug!(
                truncated,
                of = n,
                max_tokens = self.recipe.max_tokens,
                "texts truncated to the model's limit"
            );
        }
        let len = enc.first().map_or(0, |e| e.get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            enc.iter().flat_map(|e| f(e).iter().copied()).collect()
        };
        let t = |v: Vec<u32>| Tensor::from_vec(v, (n, len), &self.device).map_err(|e| e.to_string());
        let ids = t(flat(&|e| e.get_ids()))?;
        let types = t(flat(&|e| e.get_type_ids()))?;
        let mask = t(flat(&|e| e.get_attention_mask()))?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(|e| format!("model: {e}"))?;
        let pooled = pool(&hidden, &mask, self.recipe.pooling).map_err(|e| format!("pooling: {e}"))?;
        let pooled = if self.recipe.normalize {
            let norm = pooled
                .sqr()
                .and_then(|s| s.sum_keepdim(1))
                .and_then(|s| s.sqrt())
                .and_then(|s| s.clamp(1e-12, f32::MAX));
            norm.and_then(|nm| pooled.broadcast_div(&nm)).map_err(|e| format!("normalising: {e}"))?
        } else {
            pooled
        };
        pooled.to_vec2::<f32>().map_err(|e| e.to_string())
    }
}

/// Sentence vectors `(n, hidden)` from token vectors `(n, len, hidden)` and the mask `(n, len)`.
fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
        Pooling::Max => {
            // padded positions can never win: pushed far below any real activation
            let floor = ((m.ones_like()? - &m)? * -1e9f64)?;
            hidden.broadcast_add(&floor)?.max(1)
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let sum = hidden.broadcast_mul(&m)?.sum(1)?;
            let count = m.sum(1)?.clamp(1e-9, f32::MAX)?;
            let count = if pooling == Pooling::MeanSqrtLen { count.sqrt()? } else { count };
            sum.broadcast_div(&count)
        }
    }
}

#[async_trait::async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        &self.name
    }
    fn dimensions(&self) -> Option<u32> {
        Some(self.dims)
    }
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    #[tracing::instrument(skip_all, fields(model = %self.name, texts = texts.len()))]
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, RetrievalError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let _turn = self.gate.acquire().await.map_err(|e| RetrievalError::Embedding(e.to_string()))?;
        let (inner, texts) = (self.inner.clone(), texts.to_vec());
        tokio::task::spawn_blocking(move || inner.embed(&texts))
            .await
            .map_err(|e| RetrievalError::Embedding(format!("embedding task: {e}")))?
            .map_err(RetrievalError::Embedding)
    }
}

/// Where the in-process model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A folder given by the operator.
    Dir(PathBuf),
    /// A Hugging Face model id, looked up in the cache; fetched when `fetch` and missing.
    Hub { id: String, fetch: bool },
}

/// The model folder for `source`, fetching it into the Hugging Face cache if allowed.
pub async fn locate(source: &ModelSource, hub: &super::hub::Hub) -> Result<PathBuf, String> {
    match source {
        ModelSource::Dir(d) => Ok(d.clone()),
        ModelSource::Hub { id, fetch } => match hub.cached(id) {
            Some(d) => Ok(d),
            None if *fetch => hub.fetch(id).await,
            None => Err(format!("{id} is not in the Hugging Face cache ({})", hub.cache_dir().display())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: Vec<f32>, shape: (usize, usize, usize)) -> Tensor {
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn pooling_ignores_padding() {
        // two texts of 3 positions and 2 dimensions; the second has one padded position whose
        // values would change every pooling if they counted
        let hidden = t(vec![1., 2., 3., 4., 5., 6., /* padded: */ 7., 8., 100., -100., 1., 1.], (2, 3, 2));
        let mask = Tensor::from_vec(vec![1u32, 1, 1, 1, 0, 1], (2, 3), &Device::Cpu).unwrap();
        let got = |p| pool(&hidden, &mask, p).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(got(Pooling::Mean), vec![vec![3., 4.], vec![4., 4.5]]);
        assert_eq!(got(Pooling::Cls), vec![vec![1., 2.], vec![7., 8.]]);
        assert_eq!(got(Pooling::Max), vec![vec![5., 6.], vec![7., 8.]]);
        let s = 2f32.sqrt();
        let sqrt = got(Pooling::MeanSqrtLen);
        assert!((sqrt[1][0] - 8. / s).abs() < 1e-5 && (sqrt[1][1] - 9. / s).abs() < 1e-5, "{sqrt:?}");
    }

    #[test]
    fn a_recipe_the_embedder_cannot_follow_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |f: &str, s: &str| {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        write(
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
        );
        write("1_Pooling/config.json", r#"{"pooling_mode_cls_token": true}"#);
        write("sentence_bert_config.json", r#"{"max_seq_length": 512}"#);
        let r = Recipe::read(dir.path(), 256, 512).unwrap();
        assert_eq!(r, Recipe { pooling: Pooling::Cls, normalize: false, max_tokens: 256 });
        write("1_Pooling/config.json", r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#);
        let e = Recipe::read(dir.path(), 256, 512).unwrap_err().to_string();
        assert!(e.contains("several pooling modes"), "{e}");
        write("1_Pooling/config.json", r#"{"pooling_mode_weightedmean_tokens": true}"#);
        assert!(Recipe::read(dir.path(), 256, 512).is_err());
        write("1_Pooling/config.json", r#"{"pooling_mode_mean_tokens": true}"#);
        write(
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                {"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#,
        );
        let e = Recipe::read(dir.path(), 256, 512).unwrap_err().to_string();
        assert!(e.contains("sentence_transformers.models.Dense"), "{e}");
    }

    #[test]
    fn the_same_files_are_the_same_model_however_they_were_found() {
        assert!(same_model("all-MiniLM-L6-v2@54228b6a", "sentence-transformers/all-MiniLM-L6-v2@54228b6a"));
        assert!(!same_model("all-MiniLM-L6-v2@54228b6a", "all-MiniLM-L6-v2@0000beef"));
        assert!(same_model("text-embedding-3-small", "text-embedding-3-small"));
        assert!(!same_model("text-embedding-3-small", "text-embedding-3-large"));
        let snap = Path::new("/c/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/abc123");
        assert_eq!(folder_name(snap), "sentence-transformers/all-MiniLM-L6-v2");
        assert_eq!(folder_name(Path::new("/m/all-MiniLM-L6-v2")), "all-MiniLM-L6-v2");
    }
}
