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
    /// A Qdrant server holding the index instead of the data dir (for several replicas).
    pub qdrant: QdrantConfig,
    /// `postgres://…` for PostgreSQL; unset means a SQLite file `tutor.db` in the data dir.
    /// Serialized redacted: it may hold a password.
    #[serde(serialize_with = "redacted")]
    pub database_url: Option<String>,
    /// The most memory each SQLite connection keeps as page cache, in KiB (SQLite's default,
    /// 2000; the service opens six connections).
    pub sqlite_cache_kib: u32,
    /// Mastery bands and the evidence the plan asks for.
    pub passport: PassportConfig,
    /// The tutor agent: its LLM (off unless configured) and its bounds.
    pub agent: AgentConfig,
    /// Thresholds of the struggle rules.
    pub flags: FlagConfig,
    /// Educators' analytics: the smallest group shown, when a learner counts as gone quiet.
    pub analytics: AnalyticsConfig,
    /// A folder overriding the built-in prompts (`tutor.md`, `tools/*.md`, `render/*.md`).
    pub prompts_dir: Option<PathBuf>,
    /// Who may call: bearer JWTs (off in dev mode, on loopback only).
    pub auth: AuthConfig,
    /// Abuse limits: rates, timeouts, budgets, CORS.
    pub limits: LimitsConfig,
    /// `host:port` of a second listener serving only `GET /metrics`, without authentication
    /// (for a scraper on a private network); unset: `/metrics` is on the main port, for admins.
    pub metrics_addr: Option<String>,
    /// Seed the sample courses' demo learners when the service starts in dev mode on an empty
    /// database (`true`, the default), so that `/educator` has something to show; never with
    /// authentication on. `tutor demo clear` removes them.
    pub demo: bool,
    /// Transcripts and raw learner events older than this many days are deleted (daily, and by
    /// `tutor retention run`); the passport they built is kept. Unset: kept for good.
    pub retention_days: Option<u32>,
}

/// Bearer-token authentication. With neither `jwt_secret` nor `jwks_url` the service runs
/// unauthenticated, and only on a loopback address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The HS256 secret tokens are signed with (at least 32 bytes); `tutor token` mints with it.
    #[serde(serialize_with = "redacted")]
    pub jwt_secret: Option<String>,
    /// A JWKS URL whose keys (RS256, ES256, …) verify tokens, e.g. an identity provider's.
    pub jwks_url: Option<String>,
    /// The `iss` a token must carry, when set.
    pub issuer: Option<String>,
    /// The `aud` a token must carry, when set.
    pub audience: Option<String>,
    /// How long fetched JWKS keys are kept before they are fetched again.
    pub jwks_refresh_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { jwt_secret: None, jwks_url: None, issuer: None, audience: None, jwks_refresh_secs: 600 }
    }
}

impl AuthConfig {
    /// Whether tokens are checked.
    pub fn enabled(&self) -> bool {
        self.jwt_secret.is_some() || self.jwks_url.is_some()
    }
}

/// Limits that keep one caller from taking the service from the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Origins of content pages allowed to call from a browser (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// Time for a non-streaming request to be answered.
    pub request_timeout_secs: u64,
    /// Time for a client to send a request's headers.
    pub header_timeout_secs: u64,
    /// Time for a client to send a request's body.
    pub body_timeout_secs: u64,
    /// Requests per minute per caller (a token's subject, or the client address in dev mode).
    pub requests_per_minute: u32,
    /// Requests per minute per client address, whoever the caller.
    pub requests_per_minute_per_address: u32,
    /// Chat turns one learner may have running at once.
    pub chat_turns_at_once: u32,
    /// `answered` statements per learner and exercise item per hour (an answer oracle otherwise).
    pub answers_per_item_per_hour: u32,
    /// LLM tokens (prompt and completion) per learner per UTC day; 0: no budget. Offline
    /// answers are not counted.
    pub llm_tokens_per_day: u64,
    /// On SIGTERM, how long open streams may take to finish before the process exits.
    pub shutdown_grace_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            request_timeout_secs: 30,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            requests_per_minute: 300,
            requests_per_minute_per_address: 1200,
            chat_turns_at_once: 2,
            answers_per_item_per_hour: 10,
            llm_tokens_per_day: 200_000,
            shutdown_grace_secs: 30,
        }
    }
}

/// A secret, serialized as `"(set)"` or `null`, never as itself.
fn redacted<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("(set)"),
        None => s.serialize_none(),
    }
}

/// The tutor agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// An OpenAI-compatible API base, e.g. `https://api.openai.com/v1`. With neither this nor
    /// an API key, the offline engine answers.
    pub llm_base_url: Option<String>,
    pub llm_model: String,
    #[serde(serialize_with = "redacted")]
    pub llm_api_key: Option<String>,
    /// A reply with no bytes for this long, once it has begun, is abandoned.
    pub llm_timeout_secs: u64,
    /// A request with no first byte of its reply for this long is abandoned (and tried once
    /// more): a slow local server reads a long prompt before it writes anything.
    pub llm_first_byte_timeout_secs: u64,
    /// How many more tokens the model's server may count than `o200k_base` does (0.2: 20 %
    /// more), until it reports its own counts; prompts are kept within `context_tokens` of the
    /// server's tokens.
    pub token_margin: f64,
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
            llm_first_byte_timeout_secs: 120,
            token_margin: 0.2,
            max_steps: 6,
            max_tool_calls: 12,
            max_completion_tokens: 700,
            turn_timeout_secs: 300,
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

/// Thresholds of the struggle rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlagConfig {
    /// Wrong answers in a row on a skill.
    pub wrong_streak: u32,
    /// Mastery drop over the recent answers (with at least 3 answers).
    pub falling_by: f64,
    /// Hints per answer, with at least 3 answers.
    pub hints_per_answer: f64,
}

impl Default for FlagConfig {
    fn default() -> Self {
        Self { wrong_streak: 3, falling_by: 0.2, hints_per_answer: 2.0 }
    }
}

/// Educators' analytics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Any figure over fewer learners than this is suppressed.
    pub min_group: u64,
    /// A learner with no events in a course for this many days has gone quiet (drop-off).
    pub dropoff_days: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self { min_group: 5, dropoff_days: 14 }
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
    #[serde(serialize_with = "redacted")]
    pub api_key: Option<String>,
    /// A request with no answer after this long is abandoned (and retried).
    pub timeout_secs: u64,
    /// Retries after a timeout. 429, 5xx and connection errors are retried by the client itself.
    pub timeout_retries: u32,
    /// The in-process model: a sentence-transformers folder (`config.json`, `tokenizer.json`,
    /// `model.safetensors`). Used when `base_url` is unset.
    pub model_dir: Option<PathBuf>,
    /// The in-process model by Hugging Face id, fetched into the Hugging Face cache on first
    /// use; `none` turns it off. Unset: [`DEFAULT_LOCAL_MODEL`] if it is already cached.
    pub model_id: Option<String>,
    /// Tokens per text for the in-process model (capped by the model's own limit).
    pub max_tokens: usize,
    /// Whether a chunk's embedded text carries its skills' names and descriptions.
    pub skill_context: bool,
    /// Weight of the dense ranking against BM25's (1) in reciprocal rank fusion.
    pub dense_weight: f32,
    /// Chunks each ranking brings to the fusion; 0: four times the chunks asked for.
    pub candidates: usize,
}

/// A Qdrant server for the index. Unset `url`: the embedded index in the data dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QdrantConfig {
    /// The server's gRPC address, e.g. `http://qdrant:6334`; TLS when it is `https://…`.
    pub url: Option<String>,
    /// Serialized redacted.
    #[serde(serialize_with = "redacted")]
    pub api_key: Option<String>,
    /// Names the index's collections (`<collection>-gen-…`) and alias (`<collection>-current`),
    /// so that several services can share one server.
    pub collection: String,
    /// A request with no answer after this long fails.
    pub timeout_secs: u64,
    /// Connecting gives up after this long.
    pub connect_timeout_secs: u64,
}

impl Default for QdrantConfig {
    fn default() -> Self {
        Self { url: None, api_key: None, collection: "tutor".into(), timeout_secs: 10, connect_timeout_secs: 3 }
    }
}

/// The in-process model used when it is in the Hugging Face cache and nothing else is set.
pub const DEFAULT_LOCAL_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

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
            qdrant: QdrantConfig::default(),
            database_url: None,
            sqlite_cache_kib: crate::db::DEFAULT_SQLITE_CACHE_KIB,
            passport: PassportConfig::default(),
            agent: AgentConfig::default(),
            flags: FlagConfig::default(),
            analytics: AnalyticsConfig::default(),
            prompts_dir: None,
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            metrics_addr: None,
            demo: true,
            retention_days: None,
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
            model_dir: None,
            model_id: None,
            max_tokens: 256,
            skill_context: true,
            dense_weight: 1.0,
            candidates: 0,
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

/// One setting: its `tutor.toml` key, the environment variable that overrides it (and a
/// fallback variable some settings also read), and how a variable's text sets it. [`KEYS`] is
/// the one list of settings: the environment is applied from it, `--help` lists it, and tests
/// check that every `tutor.toml` key is in it and that the README documents each one.
pub struct Key {
    /// The dotted `tutor.toml` key, e.g. `agent.max_steps`.
    pub toml: &'static str,
    pub var: &'static str,
    /// Read when `var` is unset, e.g. `OPENAI_API_KEY`.
    pub fallback: Option<&'static str>,
    set: fn(&mut Config, &str) -> Result<(), String>,
}

fn parse<T: std::str::FromStr>(value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| e.to_string())
}

macro_rules! key {
    ($toml:literal, $var:literal, else $fallback:literal, |$c:ident, $v:ident| $set:expr) => {
        Key { fallback: Some($fallback), ..key!($toml, $var, |$c, $v| $set) }
    };
    ($toml:literal, $var:literal, |$c:ident, $v:ident| $set:expr) => {
        Key {
            toml: $toml,
            var: $var,
            fallback: None,
            set: |$c, $v| {
                $set;
                Ok(())
            },
        }
    };
}

/// Every setting.
pub const KEYS: &[Key] = &[
    key!("data_dir", "TUTOR_DATA_DIR", |c, v| c.data_dir = v.into()),
    key!("content_dir", "TUTOR_CONTENT_DIR", |c, v| c.content_dir = v.into()),
    key!("host", "TUTOR_HOST", |c, v| c.host = v.to_owned()),
    key!("port", "TUTOR_PORT", |c, v| c.port = parse(v)?),
    key!("chunk_tokens", "TUTOR_CHUNK_TOKENS", |c, v| c.chunk_tokens = parse(v)?),
    key!("chunk_overlap", "TUTOR_CHUNK_OVERLAP", |c, v| c.chunk_overlap = parse(v)?),
    key!("max_file_bytes", "TUTOR_MAX_FILE_BYTES", |c, v| c.max_file_bytes = parse(v)?),
    key!("embed.base_url", "TUTOR_EMBED_BASE_URL", |c, v| c.embed.base_url = Some(v.to_owned())),
    key!("embed.model", "TUTOR_EMBED_MODEL", |c, v| c.embed.model = v.to_owned()),
    key!("embed.dimensions", "TUTOR_EMBED_DIMENSIONS", |c, v| c.embed.dimensions = Some(parse(v)?)),
    key!("embed.batch_size", "TUTOR_EMBED_BATCH_SIZE", |c, v| c.embed.batch_size = parse(v)?),
    key!("embed.api_key", "TUTOR_EMBED_API_KEY", else "OPENAI_API_KEY", |c, v| c.embed.api_key = Some(v.to_owned())),
    key!("embed.timeout_secs", "TUTOR_EMBED_TIMEOUT_SECS", |c, v| c.embed.timeout_secs = parse(v)?),
    key!("embed.timeout_retries", "TUTOR_EMBED_TIMEOUT_RETRIES", |c, v| c.embed.timeout_retries = parse(v)?),
    key!("embed.model_dir", "TUTOR_EMBED_MODEL_DIR", |c, v| c.embed.model_dir = Some(v.into())),
    key!("embed.model_id", "TUTOR_EMBED_MODEL_ID", |c, v| c.embed.model_id = Some(v.to_owned())),
    key!("embed.max_tokens", "TUTOR_EMBED_MAX_TOKENS", |c, v| c.embed.max_tokens = parse(v)?),
    key!("embed.skill_context", "TUTOR_EMBED_SKILL_CONTEXT", |c, v| c.embed.skill_context = parse(v)?),
    key!("embed.dense_weight", "TUTOR_EMBED_DENSE_WEIGHT", |c, v| c.embed.dense_weight = parse(v)?),
    key!("embed.candidates", "TUTOR_EMBED_CANDIDATES", |c, v| c.embed.candidates = parse(v)?),
    key!("qdrant.url", "TUTOR_QDRANT_URL", |c, v| c.qdrant.url = Some(v.trim().to_owned())),
    key!("qdrant.api_key", "TUTOR_QDRANT_API_KEY", |c, v| c.qdrant.api_key = Some(v.to_owned())),
    key!("qdrant.collection", "TUTOR_QDRANT_COLLECTION", |c, v| c.qdrant.collection = v.trim().to_owned()),
    key!("qdrant.timeout_secs", "TUTOR_QDRANT_TIMEOUT_SECS", |c, v| c.qdrant.timeout_secs = parse(v)?),
    key!("qdrant.connect_timeout_secs", "TUTOR_QDRANT_CONNECT_TIMEOUT_SECS", |c, v| c.qdrant.connect_timeout_secs =
        parse(v)?),
    key!("database_url", "TUTOR_DATABASE_URL", |c, v| c.database_url = Some(v.to_owned())),
    key!("sqlite_cache_kib", "TUTOR_SQLITE_CACHE_KIB", |c, v| c.sqlite_cache_kib = parse(v)?),
    key!("passport.developing", "TUTOR_BAND_DEVELOPING", |c, v| c.passport.developing = parse(v)?),
    key!("passport.proficient", "TUTOR_BAND_PROFICIENT", |c, v| c.passport.proficient = parse(v)?),
    key!("passport.mastered", "TUTOR_BAND_MASTERED", |c, v| c.passport.mastered = parse(v)?),
    key!("passport.min_evidence", "TUTOR_MIN_EVIDENCE", |c, v| c.passport.min_evidence = parse(v)?),
    key!("agent.llm_base_url", "TUTOR_LLM_BASE_URL", |c, v| c.agent.llm_base_url =
        Some(v.trim_end_matches('/').to_owned())),
    key!("agent.llm_model", "TUTOR_LLM_MODEL", |c, v| c.agent.llm_model = v.to_owned()),
    key!("agent.llm_api_key", "TUTOR_LLM_API_KEY", else "OPENAI_API_KEY", |c, v| c.agent.llm_api_key =
        Some(v.to_owned())),
    key!("agent.llm_timeout_secs", "TUTOR_LLM_TIMEOUT_SECS", |c, v| c.agent.llm_timeout_secs = parse(v)?),
    key!("agent.llm_first_byte_timeout_secs", "TUTOR_LLM_FIRST_BYTE_TIMEOUT_SECS", |c, v| c
        .agent
        .llm_first_byte_timeout_secs =
        parse(v)?),
    key!("agent.token_margin", "TUTOR_LLM_TOKEN_MARGIN", |c, v| c.agent.token_margin = parse(v)?),
    key!("agent.max_steps", "TUTOR_MAX_STEPS", |c, v| c.agent.max_steps = parse(v)?),
    key!("agent.max_tool_calls", "TUTOR_MAX_TOOL_CALLS", |c, v| c.agent.max_tool_calls = parse(v)?),
    key!("agent.max_completion_tokens", "TUTOR_MAX_COMPLETION_TOKENS", |c, v| c.agent.max_completion_tokens =
        parse(v)?),
    key!("agent.turn_timeout_secs", "TUTOR_TURN_TIMEOUT_SECS", |c, v| c.agent.turn_timeout_secs = parse(v)?),
    key!("agent.context_tokens", "TUTOR_CONTEXT_TOKENS", |c, v| c.agent.context_tokens = parse(v)?),
    key!("agent.tool_result_tokens", "TUTOR_TOOL_RESULT_TOKENS", |c, v| c.agent.tool_result_tokens = parse(v)?),
    key!("flags.wrong_streak", "TUTOR_FLAG_WRONG_STREAK", |c, v| c.flags.wrong_streak = parse(v)?),
    key!("flags.falling_by", "TUTOR_FLAG_FALLING_BY", |c, v| c.flags.falling_by = parse(v)?),
    key!("flags.hints_per_answer", "TUTOR_FLAG_HINTS_PER_ANSWER", |c, v| c.flags.hints_per_answer = parse(v)?),
    key!("analytics.min_group", "TUTOR_MIN_GROUP", |c, v| c.analytics.min_group = parse(v)?),
    key!("analytics.dropoff_days", "TUTOR_DROPOFF_DAYS", |c, v| c.analytics.dropoff_days = parse(v)?),
    key!("prompts_dir", "TUTOR_PROMPTS_DIR", |c, v| c.prompts_dir = Some(PathBuf::from(v))),
    key!("demo", "TUTOR_DEMO", |c, v| c.demo = parse(v)?),
    key!("retention_days", "TUTOR_RETENTION_DAYS", |c, v| c.retention_days = Some(parse(v)?)),
    key!("metrics_addr", "TUTOR_METRICS_ADDR", |c, v| c.metrics_addr = Some(v.trim().to_owned())),
    key!("auth.jwt_secret", "TUTOR_JWT_SECRET", |c, v| c.auth.jwt_secret = Some(v.to_owned())),
    key!("auth.jwks_url", "TUTOR_JWKS_URL", |c, v| c.auth.jwks_url = Some(v.trim().to_owned())),
    key!("auth.issuer", "TUTOR_JWT_ISSUER", |c, v| c.auth.issuer = Some(v.to_owned())),
    key!("auth.audience", "TUTOR_JWT_AUDIENCE", |c, v| c.auth.audience = Some(v.to_owned())),
    key!("auth.jwks_refresh_secs", "TUTOR_JWKS_REFRESH_SECS", |c, v| c.auth.jwks_refresh_secs = parse(v)?),
    key!("limits.cors_origins", "TUTOR_CORS_ORIGINS", |c, v| c.limits.cors_origins =
        v.split(',').map(|o| o.trim().trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()).collect()),
    key!("limits.request_timeout_secs", "TUTOR_REQUEST_TIMEOUT_SECS", |c, v| c.limits.request_timeout_secs = parse(v)?),
    key!("limits.header_timeout_secs", "TUTOR_HEADER_TIMEOUT_SECS", |c, v| c.limits.header_timeout_secs = parse(v)?),
    key!("limits.body_timeout_secs", "TUTOR_BODY_TIMEOUT_SECS", |c, v| c.limits.body_timeout_secs = parse(v)?),
    key!("limits.requests_per_minute", "TUTOR_RATE_PER_MINUTE", |c, v| c.limits.requests_per_minute = parse(v)?),
    key!("limits.requests_per_minute_per_address", "TUTOR_RATE_PER_ADDRESS_PER_MINUTE", |c, v| c
        .limits
        .requests_per_minute_per_address =
        parse(v)?),
    key!("limits.chat_turns_at_once", "TUTOR_CHAT_TURNS_AT_ONCE", |c, v| c.limits.chat_turns_at_once = parse(v)?),
    key!("limits.answers_per_item_per_hour", "TUTOR_ANSWERS_PER_ITEM_PER_HOUR", |c, v| c
        .limits
        .answers_per_item_per_hour =
        parse(v)?),
    key!("limits.llm_tokens_per_day", "TUTOR_LLM_TOKENS_PER_DAY", |c, v| c.limits.llm_tokens_per_day = parse(v)?),
    key!("limits.shutdown_grace_secs", "TUTOR_SHUTDOWN_GRACE_SECS", |c, v| c.limits.shutdown_grace_secs = parse(v)?),
];

/// The variable naming the configuration file (it has no `tutor.toml` key).
pub const CONFIG_VAR: &str = "TUTOR_CONFIG";

/// Every environment variable read, in the order of [`KEYS`], for `--help`.
pub fn env_vars() -> Vec<&'static str> {
    let mut out = vec![CONFIG_VAR];
    for k in KEYS {
        for v in std::iter::once(k.var).chain(k.fallback) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

impl Config {
    /// Loads `file` (or `./tutor.toml` when it exists), then applies the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, |k| std::env::var(k).ok())
    }

    /// As [`Config::load`], with the environment given as a function (for tests).
    pub fn load_with(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let explicit = file.map(Path::to_path_buf).or_else(|| env(CONFIG_VAR).map(PathBuf::from));
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
        let get = |name: &'static str| env(name).filter(|v| !v.is_empty()).map(|v| (name, v));
        for k in KEYS {
            if let Some((name, value)) = get(k.var).or_else(|| k.fallback.and_then(get)) {
                (k.set)(self, &value).map_err(|message| ConfigError::Env { name, value, message })?;
            }
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
        if !(0.0..=2.0).contains(&a.token_margin) {
            return Err(ConfigError::Invalid(format!("agent.token_margin = {} must be in 0..2", a.token_margin)));
        }
        // the tutor's prompt and the tool definitions alone take about 1,200 tokens
        if a.context_tokens < 2000 {
            return Err(ConfigError::Invalid(format!(
                "agent.context_tokens = {} is too small (at least 2000)",
                a.context_tokens
            )));
        }
        let f = &self.flags;
        if f.wrong_streak == 0 {
            return Err(ConfigError::Invalid("flags.wrong_streak must be at least 1".into()));
        }
        if !(f.falling_by > 0.0 && f.falling_by <= 1.0 && f.hints_per_answer > 0.0 && f.hints_per_answer.is_finite()) {
            return Err(ConfigError::Invalid(format!(
                "flags.falling_by ({}) must be in 0..1 and flags.hints_per_answer ({}) above 0",
                f.falling_by, f.hints_per_answer
            )));
        }
        if self.analytics.min_group < 2 || self.analytics.dropoff_days == 0 {
            return Err(ConfigError::Invalid(format!(
                "analytics.min_group ({}) must be at least 2 and analytics.dropoff_days ({}) at least 1",
                self.analytics.min_group, self.analytics.dropoff_days
            )));
        }
        if self.retention_days == Some(0) {
            return Err(ConfigError::Invalid(
                "retention_days must be at least 1 (leave it unset to keep everything)".into(),
            ));
        }
        let auth = &self.auth;
        if auth.jwt_secret.is_some() && auth.jwks_url.is_some() {
            return Err(ConfigError::Invalid("set auth.jwt_secret or auth.jwks_url, not both".into()));
        }
        if auth.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::Invalid(
                "auth.jwt_secret must be at least 32 bytes (e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        if let Some(url) = &auth.jwks_url {
            let host = url.strip_prefix("http://").map(|r| r.split(['/', ':']).next().unwrap_or_default());
            let loopback = host
                .is_some_and(|h| h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()));
            if !(url.starts_with("https://") || loopback) {
                return Err(ConfigError::Invalid(format!(
                    "auth.jwks_url must be an https URL (plain http only on loopback), got {url:?}"
                )));
            }
        }
        let l = &self.limits;
        if l.request_timeout_secs == 0
            || l.header_timeout_secs == 0
            || l.body_timeout_secs == 0
            || l.requests_per_minute == 0
            || l.requests_per_minute_per_address == 0
            || l.chat_turns_at_once == 0
            || l.answers_per_item_per_hour == 0
        {
            return Err(ConfigError::Invalid(
                "limits: timeouts, rates, chat_turns_at_once and answers_per_item_per_hour must be at least 1".into(),
            ));
        }
        if let Some(o) = l.cors_origins.iter().find(|o| !(o.starts_with("https://") || o.starts_with("http://"))) {
            return Err(ConfigError::Invalid(format!(
                "limits.cors_origins: {o:?} is not an origin like https://lessons.example.org"
            )));
        }
        if self.embed.batch_size == 0 {
            return Err(ConfigError::Invalid("embed.batch_size must be at least 1".into()));
        }
        if !(self.embed.dense_weight.is_finite() && self.embed.dense_weight > 0.0) {
            return Err(ConfigError::Invalid("embed.dense_weight must be a positive number".into()));
        }
        let q = &self.qdrant;
        if let Some(url) = &q.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "qdrant.url: {url:?} is not a gRPC address like http://qdrant:6334 (https:// for TLS)"
            )));
        }
        if q.collection.is_empty()
            || q.collection.len() > 100
            || !q.collection.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::Invalid(format!(
                "qdrant.collection: {:?} must be 1 to 100 letters, digits, '-' or '_'",
                q.collection
            )));
        }
        if q.timeout_secs == 0 || q.connect_timeout_secs == 0 {
            return Err(ConfigError::Invalid("qdrant: timeouts must be at least 1 second".into()));
        }
        if self.embed.max_tokens < 8 {
            return Err(ConfigError::Invalid("embed.max_tokens must be at least 8".into()));
        }
        Ok(())
    }

    /// Whether `host` is a loopback address (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn binds_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
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

    /// The dotted paths of every leaf of a serialized value.
    fn leaves(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    leaves(v, &p, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    #[test]
    fn every_toml_key_has_exactly_one_variable_and_sets_the_same_field() {
        let mut toml_keys = Vec::new();
        leaves(&serde_json::to_value(Config::default()).unwrap(), "", &mut toml_keys);
        let mut table: Vec<String> = KEYS.iter().map(|k| k.toml.to_owned()).collect();
        toml_keys.sort();
        table.sort();
        assert_eq!(toml_keys, table, "KEYS and the Config struct disagree");
        let vars: std::collections::BTreeSet<&str> = KEYS.iter().map(|k| k.var).collect();
        assert_eq!(vars.len(), KEYS.len(), "a variable is used twice");
        // a sample value set through the variable and through the file gives the same config
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        for k in KEYS {
            let (table, leaf) = k.toml.rsplit_once('.').map_or((None, k.toml), |(t, l)| (Some(t), l));
            let string = match k.toml {
                "database_url" => "sqlite://x.db",
                "qdrant.collection" => "sample_collection",
                // a secret of 32 bytes or more, and an http(s) URL or origin
                _ => "https://sample-value.example.org/thirty-two-bytes",
            };
            // the first sample of the key's type
            let (sample, from_file) = [
                n_sample(k.toml).to_string(),
                "0.33".into(),
                "0.5".into(),
                "0.8".into(),
                "false".into(),
                string.into(),
            ]
            .into_iter()
            .find_map(|sample| {
                let literal = if sample.parse::<f64>().is_ok() || sample == "false" {
                    sample.clone()
                } else if k.toml == "limits.cors_origins" {
                    format!("[{sample:?}]")
                } else {
                    format!("{sample:?}")
                };
                let text = match table {
                    Some(t) => format!("[{t}]\n{leaf} = {literal}\n"),
                    None => format!("{leaf} = {literal}\n"),
                };
                std::fs::write(&file, text).unwrap();
                Config::load_with(Some(&file), env(&[])).ok().map(|c| (sample, c))
            })
            .unwrap_or_else(|| panic!("no sample value fits {}", k.toml));
            let from_env = Config::load_with(None, env(&[(k.var, &sample)])).unwrap();
            assert_eq!(from_file, from_env, "{} and {}", k.toml, k.var);
            assert_ne!(from_env, Config::default(), "{} changes nothing", k.var);
        }
    }

    /// A valid whole number for a key (the chunk overlap must stay below the chunk size).
    fn n_sample(key: &str) -> u32 {
        if key == "chunk_overlap" { 16 } else { 3000 }
    }

    #[test]
    fn the_readme_documents_every_variable_with_its_key() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        for k in KEYS {
            let row = readme.lines().find(|l| l.starts_with(&format!("| `{}`", k.var)));
            let row = row.unwrap_or_else(|| panic!("README has no row for {}", k.var));
            assert!(row.contains(&format!("`{}`", k.toml)), "README's row for {} does not name `{}`", k.var, k.toml);
        }
        for line in readme.lines().filter(|l| l.starts_with("| `TUTOR_")) {
            let var = line.split('`').nth(1).unwrap();
            assert!(env_vars().contains(&var), "README documents {var}, which is not read");
        }
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
