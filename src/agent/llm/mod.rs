//! The LLM engine: any OpenAI-compatible chat completions endpoint through `async-openai`,
//! with tools and streaming. [`LlmClient`] is the endpoint (timeouts, retries, errors
//! classified where they come in); [`LlmEngine`] runs the bounded tool-calling loop of a turn.
//! 429 and 5xx replies are retried by the client (three retries, exponential backoff from
//! 100 ms, honouring `Retry-After`); a request that stalls is abandoned after
//! `llm_timeout_secs` and retried once. Any failure is returned to the caller, which falls back
//! to the offline engine.

mod engine;
mod messages;

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionResponseStream, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
};

pub use engine::{LlmEngine, tool_tokens};

/// One item of a streamed reply.
type StreamItem = <ChatCompletionResponseStream as futures::Stream>::Item;

use crate::config::AgentConfig;

/// Why the LLM engine gave up, classified where the endpoint's errors come in, so that what
/// to do next follows the class rather than status codes scattered around.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Worth another try later: 429 and 5xx after the client's own retries, a connection
    /// that failed or dropped.
    #[error("the model endpoint failed: {0}")]
    Transient(#[source] OpenAIError),
    /// Will fail again as asked: another 4xx, or a request the client refused to build.
    #[error("the model endpoint refused the request: {0}")]
    Permanent(#[source] OpenAIError),
    /// The prompt is longer than the model's context.
    #[error("the prompt does not fit the model's context: {0}")]
    ContextLength(#[source] OpenAIError),
    #[error("the model endpoint did not answer within {0} s")]
    Timeout(u64),
    #[error("the tutor reached its limit of {0} model calls")]
    StepLimit(u32),
    #[error("the model's reply was cut off or malformed: {0}")]
    Malformed(String),
}

impl LlmError {
    /// The class of an error from the client.
    pub fn classify(e: OpenAIError) -> Self {
        match &e {
            OpenAIError::ApiError(r) => {
                let status = r.status_code.as_u16();
                let what = format!(
                    "{} {} {}",
                    r.api_error.code.as_deref().unwrap_or_default(),
                    r.api_error.r#type.as_deref().unwrap_or_default(),
                    r.api_error.message
                )
                .to_lowercase();
                if what.contains("context_length") || what.contains("context size") || what.contains("context length") {
                    LlmError::ContextLength(e)
                } else if status == 429 || status >= 500 {
                    LlmError::Transient(e)
                } else {
                    LlmError::Permanent(e)
                }
            }
            OpenAIError::Reqwest(_) | OpenAIError::StreamError(_) => LlmError::Transient(e),
            // an error body the client cannot read as OpenAI's (llama.cpp sends `"code": 400`)
            OpenAIError::JSONDeserialize(_, content) if is_context_length(content) => LlmError::ContextLength(e),
            // an error body that is not OpenAI's: refused all the same
            OpenAIError::JSONDeserialize(..) => LlmError::Permanent(e),
            _ => LlmError::Permanent(e),
        }
    }

    /// Whether another attempt may go better: a timeout, a dropped connection, a cut stream.
    /// Only a reply that never came, or a stream cut: 429, 5xx and connection errors were
    /// retried by the client already, and a refused request would be refused again.
    fn is_retryable(&self) -> bool {
        matches!(self, LlmError::Timeout(_) | LlmError::Malformed(_) | LlmError::Transient(OpenAIError::StreamError(_)))
    }

    /// Whether the request itself timed out (no bytes within the timeout).
    fn is_timeout(e: &OpenAIError) -> bool {
        matches!(e, OpenAIError::Reqwest(r) if r.is_timeout())
    }

    /// What the learner is told: the kind of failure, never the endpoint's own message (which
    /// may name internal hosts or part of a key). The detail goes to the logs.
    pub fn public(&self) -> String {
        match self {
            LlmError::Transient(_) | LlmError::Permanent(_) | LlmError::ContextLength(_) => {
                "the model service is unavailable".into()
            }
            LlmError::Timeout(s) => format!("the model did not answer within {s} s"),
            LlmError::StepLimit(n) => format!("the tutor reached its limit of {n} model calls"),
            LlmError::Malformed(_) => "the model's reply was cut off".into(),
        }
    }
}

/// Model calls made outside the turn's loop (a tool generating a render), and their tokens.
#[derive(Debug, Default)]
pub struct Calls(std::sync::Mutex<(u32, usize, usize)>);

impl Calls {
    fn add(&self, calls: u32, prompt: usize, completion: usize) {
        let mut c = self.0.lock().expect("calls lock");
        c.0 += calls;
        c.1 += prompt;
        c.2 += completion;
    }

    /// Calls, prompt tokens, completion tokens.
    pub fn totals(&self) -> (u32, usize, usize) {
        *self.0.lock().expect("calls lock")
    }
}

/// Whether an endpoint's error says the prompt was too long for the model.
fn is_context_length(text: &str) -> bool {
    let t = text.to_lowercase();
    ["context_length", "context size", "context length", "exceed_context"].iter().any(|w| t.contains(w))
}

/// A client for one model.
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    model: String,
    /// Between two bytes of a reply.
    timeout: Duration,
    timeout_secs: u64,
    /// Until the first byte of a reply: a slow local server may read a long prompt first.
    first_byte: Duration,
    first_byte_secs: u64,
    /// How many of the server's tokens one `o200k_base` token is worth: `1 + token_margin`
    /// until the server reports its own count, then the largest ratio seen.
    scale: std::sync::Mutex<f64>,
    margin_scale: f64,
}

/// The default API base when only a key is configured.
pub const OPENAI_BASE: &str = "https://api.openai.com/v1";

impl LlmClient {
    /// The configured client; `None` when no LLM is configured.
    pub fn from_config(cfg: &AgentConfig) -> Option<Self> {
        if !cfg.llm_enabled() {
            return None;
        }
        let base = cfg.llm_base_url.clone().unwrap_or_else(|| OPENAI_BASE.into());
        let oc = OpenAIConfig::new()
            .with_api_base(base.trim_end_matches('/'))
            .with_api_key(cfg.llm_api_key.clone().unwrap_or_default());
        let timeout = Duration::from_secs(cfg.llm_timeout_secs);
        let first_byte = Duration::from_secs(cfg.llm_first_byte_timeout_secs.max(cfg.llm_timeout_secs));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            // per read, so a long stream is fine as long as bytes keep coming; the tighter
            // between-bytes limit is kept by the engine once the first byte has come
            .read_timeout(first_byte)
            .build()
            .expect("an HTTP client with timeouts");
        Some(Self {
            client: Client::with_config(oc).with_http_client(http),
            model: cfg.llm_model.clone(),
            timeout,
            timeout_secs: cfg.llm_timeout_secs,
            first_byte,
            first_byte_secs: first_byte.as_secs(),
            scale: std::sync::Mutex::new(1.0 + cfg.token_margin),
            margin_scale: 1.0 + cfg.token_margin,
        })
    }

    /// The prompt tokens, counted here, that fit in `budget` of the server's tokens.
    pub fn effective_budget(&self, budget: usize) -> usize {
        (budget as f64 / *self.scale.lock().expect("scale lock")) as usize
    }

    /// Learns how the server counts: it reported `server` prompt tokens for what was counted
    /// here as `ours`.
    fn observe_tokens(&self, server: usize, ours: usize) {
        if ours > 200 && server > 0 {
            let mut scale = self.scale.lock().expect("scale lock");
            // a little above what was seen: counts vary with the text
            *scale = scale.max(server as f64 / ours as f64 * 1.03);
        }
    }

    /// Forgets what the server's counts taught (the eval suite does, per case).
    pub fn reset_scale(&self) {
        *self.scale.lock().expect("scale lock") = self.margin_scale;
    }

    /// After the server refused a prompt as too long: count more carefully from now on.
    fn grow_scale(&self) {
        let mut scale = self.scale.lock().expect("scale lock");
        *scale *= 1.25;
    }

    /// The model's name, as sent.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// One non-streamed completion without tools (used to generate renders and to judge
    /// evals): the whole reply must come within the first-byte limit; a request with no reply
    /// by then is tried once more.
    pub async fn complete(&self, system: &str, user: &str, max_tokens: u32) -> Result<String, LlmError> {
        self.complete_counted(system, user, max_tokens, &Calls::default()).await
    }

    /// [`LlmClient::complete`], counting its calls and tokens on `calls`.
    pub async fn complete_counted(
        &self,
        system: &str,
        user: &str,
        max_tokens: u32,
        calls: &Calls,
    ) -> Result<String, LlmError> {
        let req = CreateChatCompletionRequestArgs::default()
            .model(self.model.clone())
            .messages(vec![messages::system(system), messages::user(user)])
            .max_completion_tokens(max_tokens)
            .build()
            .map_err(LlmError::Permanent)?;
        for attempt in 0..2 {
            calls.add(1, 0, 0);
            match tokio::time::timeout(self.first_byte, self.client.chat().create(req.clone())).await {
                Ok(Ok(r)) => {
                    if let Some(u) = &r.usage {
                        calls.add(0, u.prompt_tokens as usize, u.completion_tokens as usize);
                    }
                    return r
                        .choices
                        .into_iter()
                        .next()
                        .and_then(|c| c.message.content)
                        .filter(|t| !t.trim().is_empty())
                        .ok_or_else(|| LlmError::Malformed("an empty reply".into()));
                }
                Ok(Err(e)) if LlmError::is_timeout(&e) => tracing::warn!(attempt, "model request timed out"),
                Ok(Err(e)) => return Err(LlmError::classify(e)),
                Err(_) => tracing::warn!(attempt, "model request timed out"),
            }
        }
        Err(LlmError::Timeout(self.first_byte_secs))
    }

    /// Opens a streamed completion and waits for its first chunk, within the first-byte limit.
    async fn open_stream(
        &self,
        req: CreateChatCompletionRequest,
    ) -> Result<(ChatCompletionResponseStream, Option<StreamItem>), LlmError> {
        let open = async {
            let mut stream = self.client.chat().create_stream(req).await.map_err(LlmError::classify)?;
            let first = futures::StreamExt::next(&mut stream).await;
            Ok::<_, LlmError>((stream, first))
        };
        match tokio::time::timeout(self.first_byte, open).await {
            Ok(Err(LlmError::Transient(e))) if LlmError::is_timeout(&e) => Err(LlmError::Timeout(self.first_byte_secs)),
            Ok(r) => r,
            Err(_) => Err(LlmError::Timeout(self.first_byte_secs)),
        }
    }
}
