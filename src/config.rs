//! Configuration: defaults, then `tutor.toml`, then `TUTOR_*` environment variables, then CLI flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::content::{ChunkSettings, LoadOptions};

/// Every setting of the service. See the README's configuration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the index, caches and the database live.
    pub data_dir: PathBuf,
    /// The content tree ingested by `serve` and by default by `ingest`/`validate`.
    pub content_dir: PathBuf,
    pub host: String,
    pub port: u16,
    pub chunk_tokens: usize,
    pub chunk_overlap: usize,
    pub max_file_bytes: u64,
    /// Dense embeddings; off unless `base_url` is set.
    pub embed: EmbedConfig,
    /// `postgres://…` for PostgreSQL; unset means a SQLite file `tutor.db` in the data dir.
    /// Not serialized: it may hold a password.
    #[serde(skip_serializing)]
    pub database_url: Option<String>,
    /// Mastery bands and the evidence the plan asks for.
    pub passport: PassportConfig,
    /// The tutor agent: its LLM (off unless configured) and its bounds.
    pub agent: AgentConfig,
    /// Thresholds of the struggle rules.
    pub flags: crate::flags::FlagConfig,
    /// A folder overriding the built-in prompts (`tutor.md`, `tools/*.md`, `render/*.md`).
    pub prompts_dir: Option<PathBuf>,
}

/// The tutor agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// An OpenAI-compatible API base, e.g. `https://api.openai.com/v1`. With neither this nor
    /// an API key, the offline engine answers.
    pub llm_base_url: Option<String>,
    pub llm_model: String,
    #[serde(skip_serializing)]
    pub llm_api_key: Option<String>,
    /// A request with no bytes for this long is abandoned (and retried once).
    pub llm_timeout_secs: u64,
    /// Model calls per turn.
    pub max_steps: u32,
    /// Tool calls per turn.
    pub max_tool_calls: u32,
    /// Completion tokens per model call.
    pub max_completion_tokens: u32,
    /// Wall time of a turn before it falls back to the offline engine.
    pub turn_timeout_secs: u64,
    /// Prompt tokens per model call: system prompt, page, passport, history, tool results.
    pub context_tokens: usize,
    /// Tokens kept of one tool result.
    pub tool_result_tokens: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            llm_base_url: None,
            llm_model: "gpt-4o-mini".into(),
            llm_api_key: None,
            llm_timeout_secs: 30,
            max_steps: 6,
            max_tool_calls: 12,
            max_completion_tokens: 700,
            turn_timeout_secs: 90,
            context_tokens: 4000,
            tool_result_tokens: 700,
        }
    }
}

impl AgentConfig {
    /// Whether an LLM is configured.
    pub fn llm_enabled(&self) -> bool {
        self.llm_base_url.is_some() || self.llm_api_key.is_some()
    }
}

/// Where mastery bands start, and how much evidence a skip offer needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PassportConfig {
    /// Mastery at which the band `developing` starts (below it: `intro`).
    pub developing: f64,
    /// Mastery at which `proficient` starts; prerequisites below it are gaps.
    pub proficient: f64,
    /// Mastery at which `mastered` starts; a skip offer needs every skill here.
    pub mastered: f64,
    /// Answers on a skill before its mastery is trusted for a skip offer.
    pub min_evidence: u32,
}

impl Default for PassportConfig {
    fn default() -> Self {
        Self { developing: 0.4, proficient: 0.7, mastered: 0.95, min_evidence: 3 }
    }
}

/// An OpenAI-compatible `/v1/embeddings` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// e.g. `https://api.openai.com/v1`; dense vectors are off when unset.
    pub base_url: Option<String>,
    pub model: String,
    /// Requested output dimensions; when unset, whatever the model returns.
    pub dimensions: Option<u32>,
    pub batch_size: usize,
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// A request with no answer after this long is abandoned (and retried).
    pub timeout_secs: u64,
    /// Retries after a timeout. 429, 5xx and connection errors are retried by the client itself.
    pub timeout_retries: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            content_dir: PathBuf::from("content"),
            host: "127.0.0.1".into(),
            port: 8080,
            chunk_tokens: ChunkSettings::default().tokens,
            chunk_overlap: ChunkSettings::default().overlap,
            max_file_bytes: LoadOptions::default().max_file_bytes,
            embed: EmbedConfig::default(),
            database_url: None,
            passport: PassportConfig::default(),
            agent: AgentConfig::default(),
            flags: crate::flags::FlagConfig::default(),
            prompts_dir: None,
        }
    }
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            model: "text-embedding-3-small".into(),
            dimensions: None,
            batch_size: 64,
            api_key: None,
            timeout_secs: 30,
            timeout_retries: 2,
        }
    }
}

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {name}={value:?}: {message}")]
    Env { name: &'static str, value: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The environment variables read, for the README and `--help`.
pub const ENV_VARS: &[&str] = &[
    "TUTOR_CONFIG",
    "TUTOR_DATA_DIR",
    "TUTOR_CONTENT_DIR",
    "TUTOR_HOST",
    "TUTOR_PORT",
    "TUTOR_CHUNK_TOKENS",
    "TUTOR_CHUNK_OVERLAP",
    "TUTOR_MAX_FILE_BYTES",
    "TUTOR_EMBED_BASE_URL",
    "TUTOR_EMBED_MODEL",
    "TUTOR_EMBED_DIMENSIONS",
    "TUTOR_EMBED_BATCH_SIZE",
    "TUTOR_EMBED_API_KEY",
    "TUTOR_EMBED_TIMEOUT_SECS",
    "TUTOR_EMBED_TIMEOUT_RETRIES",
    "OPENAI_API_KEY",
    "TUTOR_DATABASE_URL",
    "TUTOR_BAND_DEVELOPING",
    "TUTOR_BAND_PROFICIENT",
    "TUTOR_BAND_MASTERED",
    "TUTOR_MIN_EVIDENCE",
    "TUTOR_LLM_BASE_URL",
    "TUTOR_LLM_MODEL",
    "TUTOR_LLM_API_KEY",
    "TUTOR_LLM_TIMEOUT_SECS",
    "TUTOR_MAX_STEPS",
    "TUTOR_MAX_TOOL_CALLS",
    "TUTOR_MAX_COMPLETION_TOKENS",
    "TUTOR_TURN_TIMEOUT_SECS",
    "TUTOR_CONTEXT_TOKENS",
    "TUTOR_TOOL_RESULT_TOKENS",
    "TUTOR_FLAG_WRONG_STREAK",
    "TUTOR_PROMPTS_DIR",
];

impl Config {
    /// Loads `file` (or `./tutor.toml` when it exists), then applies the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, |k| std::env::var(k).ok())
    }

    /// As [`Config::load`], with the environment given as a function (for tests).
    pub fn load_with(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let explicit = file.map(Path::to_path_buf).or_else(|| env("TUTOR_CONFIG").map(PathBuf::from));
        let path = explicit.clone().unwrap_or_else(|| PathBuf::from("tutor.toml"));
        let mut cfg = if explicit.is_some() || path.is_file() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::File { path: path.clone(), message: e.to_string() })?;
            toml::from_str(&text).map_err(|e| ConfigError::File { path: path.clone(), message: e.to_string() })?
        } else {
            Config::default()
        };
        cfg.apply_env(&env)?;
        cfg.check()?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parsed<T: std::str::FromStr>(name: &'static str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.trim().parse().map_err(|e: T::Err| ConfigError::Env { name, value, message: e.to_string() })
        }
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(v) = get("TUTOR_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("TUTOR_CONTENT_DIR") {
            self.content_dir = v.into();
        }
        if let Some(v) = get("TUTOR_HOST") {
            self.host = v;
        }
        if let Some(v) = get("TUTOR_PORT") {
            self.port = parsed("TUTOR_PORT", v)?;
        }
        if let Some(v) = get("TUTOR_CHUNK_TOKENS") {
            self.chunk_tokens = parsed("TUTOR_CHUNK_TOKENS", v)?;
        }
        if let Some(v) = get("TUTOR_CHUNK_OVERLAP") {
            self.chunk_overlap = parsed("TUTOR_CHUNK_OVERLAP", v)?;
        }
        if let Some(v) = get("TUTOR_MAX_FILE_BYTES") {
            self.max_file_bytes = parsed("TUTOR_MAX_FILE_BYTES", v)?;
        }
        if let Some(v) = get("TUTOR_EMBED_BASE_URL") {
            self.embed.base_url = Some(v);
        }
        if let Some(v) = get("TUTOR_EMBED_MODEL") {
            self.embed.model = v;
        }
        if let Some(v) = get("TUTOR_EMBED_DIMENSIONS") {
            self.embed.dimensions = Some(parsed("TUTOR_EMBED_DIMENSIONS", v)?);
        }
        if let Some(v) = get("TUTOR_EMBED_BATCH_SIZE") {
            self.embed.batch_size = parsed("TUTOR_EMBED_BATCH_SIZE", v)?;
        }
        if let Some(v) = get("TUTOR_EMBED_TIMEOUT_SECS") {
            self.embed.timeout_secs = parsed("TUTOR_EMBED_TIMEOUT_SECS", v)?;
        }
        if let Some(v) = get("TUTOR_EMBED_TIMEOUT_RETRIES") {
            self.embed.timeout_retries = parsed("TUTOR_EMBED_TIMEOUT_RETRIES", v)?;
        }
        if let Some(v) = get("TUTOR_EMBED_API_KEY").or_else(|| get("OPENAI_API_KEY")) {
            self.embed.api_key = Some(v);
        }
        if let Some(v) = get("TUTOR_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = get("TUTOR_BAND_DEVELOPING") {
            self.passport.developing = parsed("TUTOR_BAND_DEVELOPING", v)?;
        }
        if let Some(v) = get("TUTOR_BAND_PROFICIENT") {
            self.passport.proficient = parsed("TUTOR_BAND_PROFICIENT", v)?;
        }
        if let Some(v) = get("TUTOR_BAND_MASTERED") {
            self.passport.mastered = parsed("TUTOR_BAND_MASTERED", v)?;
        }
        if let Some(v) = get("TUTOR_MIN_EVIDENCE") {
            self.passport.min_evidence = parsed("TUTOR_MIN_EVIDENCE", v)?;
        }
        if let Some(v) = get("TUTOR_LLM_BASE_URL") {
            self.agent.llm_base_url = Some(v.trim_end_matches('/').to_owned());
        }
        if let Some(v) = get("TUTOR_LLM_MODEL") {
            self.agent.llm_model = v;
        }
        if let Some(v) = get("TUTOR_LLM_API_KEY").or_else(|| get("OPENAI_API_KEY")) {
            self.agent.llm_api_key = Some(v);
        }
        if let Some(v) = get("TUTOR_LLM_TIMEOUT_SECS") {
            self.agent.llm_timeout_secs = parsed("TUTOR_LLM_TIMEOUT_SECS", v)?;
        }
        if let Some(v) = get("TUTOR_MAX_STEPS") {
            self.agent.max_steps = parsed("TUTOR_MAX_STEPS", v)?;
        }
        if let Some(v) = get("TUTOR_MAX_TOOL_CALLS") {
            self.agent.max_tool_calls = parsed("TUTOR_MAX_TOOL_CALLS", v)?;
        }
        if let Some(v) = get("TUTOR_MAX_COMPLETION_TOKENS") {
            self.agent.max_completion_tokens = parsed("TUTOR_MAX_COMPLETION_TOKENS", v)?;
        }
        if let Some(v) = get("TUTOR_TURN_TIMEOUT_SECS") {
            self.agent.turn_timeout_secs = parsed("TUTOR_TURN_TIMEOUT_SECS", v)?;
        }
        if let Some(v) = get("TUTOR_CONTEXT_TOKENS") {
            self.agent.context_tokens = parsed("TUTOR_CONTEXT_TOKENS", v)?;
        }
        if let Some(v) = get("TUTOR_TOOL_RESULT_TOKENS") {
            self.agent.tool_result_tokens = parsed("TUTOR_TOOL_RESULT_TOKENS", v)?;
        }
        if let Some(v) = get("TUTOR_FLAG_WRONG_STREAK") {
            self.flags.wrong_streak = parsed("TUTOR_FLAG_WRONG_STREAK", v)?;
        }
        if let Some(v) = get("TUTOR_PROMPTS_DIR") {
            self.prompts_dir = Some(PathBuf::from(v));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.chunk_tokens < 16 {
            return Err(ConfigError::Invalid(format!(
                "chunk_tokens = {} is too small (at least 16)",
                self.chunk_tokens
            )));
        }
        if self.chunk_overlap >= self.chunk_tokens {
            return Err(ConfigError::Invalid(format!(
                "chunk_overlap = {} must be below chunk_tokens = {}",
                self.chunk_overlap, self.chunk_tokens
            )));
        }
        let p = &self.passport;
        if !(0.0 < p.developing && p.developing < p.proficient && p.proficient < p.mastered && p.mastered <= 1.0) {
            return Err(ConfigError::Invalid(format!(
                "mastery bands must rise within 0..1: developing {} < proficient {} < mastered {}",
                p.developing, p.proficient, p.mastered
            )));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:"))
        {
            return Err(ConfigError::Invalid(format!(
                "database_url must start with postgres://, postgresql:// or sqlite: (got {:?})",
                url.split('@').next_back().unwrap_or_default()
            )));
        }
        let a = &self.agent;
        if a.max_steps == 0 || a.max_completion_tokens == 0 || a.llm_timeout_secs == 0 || a.turn_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "agent.max_steps, max_completion_tokens, llm_timeout_secs and turn_timeout_secs must be at least 1"
                    .into(),
            ));
        }
        if a.context_tokens < 1000 {
            return Err(ConfigError::Invalid(format!(
                "agent.context_tokens = {} is too small (at least 1000)",
                a.context_tokens
            )));
        }
        if self.flags.wrong_streak == 0 {
            return Err(ConfigError::Invalid("flags.wrong_streak must be at least 1".into()));
        }
        if self.embed.batch_size == 0 {
            return Err(ConfigError::Invalid("embed.batch_size must be at least 1".into()));
        }
        Ok(())
    }

    /// The database URL: the configured one, or the SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("tutor.db").display()))
    }

    /// Chunking settings.
    pub fn chunking(&self) -> ChunkSettings {
        ChunkSettings { tokens: self.chunk_tokens, overlap: self.chunk_overlap }
    }

    /// Content loading limits.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions { max_file_bytes: self.max_file_bytes }
    }

    /// The folder holding index generations.
    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_overrides_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tutor.toml");
        std::fs::write(&file, "port = 9000\nchunk_tokens = 128\n[embed]\nmodel = \"m1\"\n").unwrap();
        let cfg = Config::load_with(Some(&file), env(&[("TUTOR_PORT", "9100"), ("OPENAI_API_KEY", "k")])).unwrap();
        assert_eq!(cfg.port, 9100);
        assert_eq!(cfg.chunk_tokens, 128);
        assert_eq!(cfg.embed.model, "m1");
        assert_eq!(cfg.embed.api_key.as_deref(), Some("k"));
        assert_eq!(cfg.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn bad_values_name_the_variable_or_key() {
        let err = Config::load_with(None, env(&[("TUTOR_PORT", "eighty")])).unwrap_err().to_string();
        assert!(err.contains("TUTOR_PORT"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "prot = 1\n").unwrap();
        let err = Config::load_with(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown field `prot`"), "{err}");
        let err = Config::load_with(None, env(&[("TUTOR_CHUNK_OVERLAP", "300")])).unwrap_err().to_string();
        assert!(err.contains("chunk_overlap"), "{err}");
    }
}
