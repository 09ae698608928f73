//! The LLM engine: any OpenAI-compatible chat completions endpoint through `async-openai`,
//! with tools and streaming. The loop is bounded (model calls, tool calls, tokens, and the
//! turn's wall time, enforced by the caller); independent tool calls run concurrently.
//! 429 and 5xx replies are retried by the client (three retries, exponential backoff from
//! 100 ms, honouring `Retry-After`); a request that stalls is abandoned after
//! `llm_timeout_secs` and retried once. Any failure is returned to the caller, which falls back
//! to the offline engine.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessageArgs,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestToolMessageArgs,
    ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions, ChatCompletionTool,
    ChatCompletionToolChoiceOption, ChatCompletionTools, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    FunctionCall, FunctionObjectArgs, ToolChoiceOptions,
};
use futures::StreamExt;

use super::context::{MESSAGE_OVERHEAD, trim_counted};
use super::tools::{self, ToolDef};
use super::{Conversation, Emitter, TurnCtx};
use crate::config::AgentConfig;
use crate::content::{ComponentId, count_tokens};

/// Why the LLM engine gave up.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the model endpoint failed: {0}")]
    Api(String),
    #[error("the model endpoint did not answer within {0} s")]
    Timeout(u64),
    #[error("the tutor reached its limit of {0} model calls")]
    StepLimit(u32),
    #[error("the model's reply was cut off or malformed: {0}")]
    Malformed(String),
}

impl LlmError {
    /// What the learner is told: the kind of failure, never the endpoint's own message (which
    /// may name internal hosts or part of a key). The detail goes to the logs.
    pub fn public(&self) -> String {
        match self {
            LlmError::Api(_) => "the model service is unavailable".into(),
            LlmError::Timeout(s) => format!("the model did not answer within {s} s"),
            LlmError::StepLimit(n) => format!("the tutor reached its limit of {n} model calls"),
            LlmError::Malformed(_) => "the model's reply was cut off".into(),
        }
    }
}

/// A client for one model.
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    model: String,
    timeout: Duration,
    timeout_secs: u64,
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
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            // per read, so a long stream is fine as long as bytes keep coming
            .read_timeout(timeout)
            .build()
            .expect("an HTTP client with timeouts");
        Some(Self {
            client: Client::with_config(oc).with_http_client(http),
            model: cfg.llm_model.clone(),
            timeout,
            timeout_secs: cfg.llm_timeout_secs,
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// One non-streamed completion (used to generate renders).
    pub async fn complete(&self, system: &str, user: &str, max_tokens: u32) -> Result<String, LlmError> {
        let req = CreateChatCompletionRequestArgs::default()
            .model(self.model.clone())
            .messages(vec![system_msg(system), user_msg(user)])
            .max_completion_tokens(max_tokens)
            .build()
            .map_err(|e| LlmError::Api(e.to_string()))?;
        for attempt in 0..2 {
            match tokio::time::timeout(self.timeout, self.client.chat().create(req.clone())).await {
                Ok(Ok(r)) => {
                    return r
                        .choices
                        .into_iter()
                        .next()
                        .and_then(|c| c.message.content)
                        .filter(|t| !t.trim().is_empty())
                        .ok_or_else(|| LlmError::Malformed("an empty reply".into()));
                }
                Ok(Err(async_openai::error::OpenAIError::Reqwest(e))) if e.is_timeout() => {
                    tracing::warn!(attempt, "model request timed out")
                }
                Ok(Err(e)) => return Err(LlmError::Api(e.to_string())),
                Err(_) => tracing::warn!(attempt, "model request timed out"),
            }
        }
        Err(LlmError::Timeout(self.timeout_secs))
    }
}

fn system_msg(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestSystemMessageArgs::default().content(text).build().expect("a system message").into()
}

fn user_msg(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessageArgs::default().content(text).build().expect("a user message").into()
}

fn assistant_msg(text: &str, calls: &[Call]) -> ChatCompletionRequestMessage {
    let mut b = ChatCompletionRequestAssistantMessageArgs::default();
    if !text.is_empty() {
        b.content(text);
    }
    if !calls.is_empty() {
        b.tool_calls(
            calls
                .iter()
                .map(|c| {
                    ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                        id: c.id.clone(),
                        function: FunctionCall { name: c.name.clone(), arguments: c.arguments.clone() },
                    })
                })
                .collect::<Vec<_>>(),
        );
    }
    b.build().expect("an assistant message").into()
}

fn tool_msg(id: &str, content: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestToolMessageArgs::default()
        .content(content)
        .tool_call_id(id)
        .build()
        .expect("a tool message")
        .into()
}

fn tool_defs(defs: &[ToolDef]) -> Vec<ChatCompletionTools> {
    defs.iter()
        .map(|d| {
            ChatCompletionTools::Function(ChatCompletionTool {
                function: FunctionObjectArgs::default()
                    .name(d.name)
                    .description(d.description.clone())
                    .parameters(d.parameters.clone())
                    .build()
                    .expect("a function definition"),
            })
        })
        .collect()
}

/// A tool call assembled from the stream.
#[derive(Debug, Clone, Default)]
struct Call {
    id: String,
    name: String,
    arguments: String,
}

/// A message of the turn with its token cost, so the budget can be kept.
struct Msg {
    msg: ChatCompletionRequestMessage,
    tokens: usize,
    /// History (may be dropped, oldest first) or a tool result (may be shrunk).
    kind: Kind,
}

#[derive(PartialEq, Clone, Copy)]
enum Kind {
    Fixed,
    History,
    ToolResult,
}

fn msg(m: ChatCompletionRequestMessage, text: &str, kind: Kind) -> Msg {
    counted(m, count_tokens(text), kind)
}

fn counted(m: ChatCompletionRequestMessage, tokens: usize, kind: Kind) -> Msg {
    Msg { msg: m, tokens: tokens + MESSAGE_OVERHEAD, kind }
}

/// What the engine produced.
pub struct LlmTurn {
    pub citations: Vec<ComponentId>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub peak_prompt_tokens: usize,
    pub steps: u32,
    pub tool_calls: u32,
}

/// Keeps the messages within `budget`: shrinks the oldest tool results, then drops the oldest
/// history. Returns the tokens of what is left.
fn enforce_budget(msgs: &mut Vec<Msg>, tools_tokens: usize, budget: usize) -> usize {
    let total = |m: &[Msg]| m.iter().map(|x| x.tokens).sum::<usize>() + tools_tokens;
    let mut i = 0;
    while total(msgs) > budget && i < msgs.len() {
        if msgs[i].kind == Kind::ToolResult && msgs[i].tokens > 20 {
            let id = match &msgs[i].msg {
                ChatCompletionRequestMessage::Tool(t) => t.tool_call_id.clone(),
                _ => String::new(),
            };
            let stub = r#"{"trimmed": "this earlier result was removed to stay within the token budget"}"#;
            msgs[i] = msg(tool_msg(&id, stub), stub, Kind::ToolResult);
        }
        i += 1;
    }
    while total(msgs) > budget {
        let Some(pos) = msgs.iter().position(|m| m.kind == Kind::History) else {
            break;
        };
        msgs.remove(pos);
    }
    total(msgs)
}

/// Runs the tool-calling loop for one turn.
#[tracing::instrument(skip_all, fields(model = %llm.model))]
pub async fn run(
    ctx: &TurnCtx,
    llm: &LlmClient,
    convo: &Conversation,
    emit: &mut Emitter,
) -> Result<LlmTurn, LlmError> {
    let cfg = &ctx.config.agent;
    let defs = tools::definitions(&ctx.prompts);
    let tools_json = tool_defs(&defs);
    let tools_tokens =
        *ctx.prompts.tool_tokens.get_or_init(|| count_tokens(&serde_json::to_string(&tools_json).unwrap_or_default()));
    let mut msgs = vec![counted(system_msg(&convo.system), convo.system_tokens, Kind::Fixed)];
    if let Some(s) = &convo.summary {
        msgs.push(msg(system_msg(s), s, Kind::Fixed));
    }
    for t in &convo.history {
        let m = if t.role == "learner" { user_msg(&t.content) } else { assistant_msg(&t.content, &[]) };
        msgs.push(counted(m, t.tokens, Kind::History));
    }
    msgs.push(counted(user_msg(&convo.message), convo.message_tokens, Kind::Fixed));

    let mut out = LlmTurn {
        citations: vec![],
        prompt_tokens: 0,
        completion_tokens: 0,
        peak_prompt_tokens: 0,
        steps: 0,
        tool_calls: 0,
    };
    let mut final_call = false;
    loop {
        // the last allowed call goes without tools, asking for an answer from what was found
        // (a turn makes at most `max_steps` model calls)
        if out.steps + 1 >= cfg.max_steps && !final_call {
            final_call = true;
            let note = "You have used all your tool calls for this turn. Answer the learner now from what you found, citing it.";
            msgs.push(msg(system_msg(note), note, Kind::Fixed));
        }
        out.steps += 1;
        let prompt_now = enforce_budget(&mut msgs, if final_call { 0 } else { tools_tokens }, convo.budget);
        out.peak_prompt_tokens = out.peak_prompt_tokens.max(prompt_now);
        let mut req = CreateChatCompletionRequestArgs::default();
        req.model(llm.model.clone())
            .messages(msgs.iter().map(|m| m.msg.clone()).collect::<Vec<_>>())
            .max_completion_tokens(cfg.max_completion_tokens)
            .stream_options(ChatCompletionStreamOptions { include_usage: Some(true), include_obfuscation: None });
        if !final_call {
            req.tools(tools_json.clone()).tool_choice(ChatCompletionToolChoiceOption::Mode(ToolChoiceOptions::Auto));
        }
        let req = req.build().map_err(|e| LlmError::Api(e.to_string()))?;
        let step = stream_step(llm, req, emit).await?;
        out.prompt_tokens += step.prompt_tokens.unwrap_or(prompt_now);
        out.completion_tokens +=
            step.completion_tokens.unwrap_or_else(|| count_tokens(&step.text) + 10 * step.calls.len());
        if step.calls.is_empty() {
            if step.text.trim().is_empty() {
                return Err(LlmError::Malformed("an empty answer".into()));
            }
            return Ok(out);
        }
        if final_call {
            return Err(LlmError::StepLimit(cfg.max_steps));
        }
        // tool calls beyond the per-turn limit are answered with an error the model can read
        let allowed = cfg.max_tool_calls.saturating_sub(out.tool_calls) as usize;
        out.tool_calls += step.calls.len() as u32;
        msgs.push(msg(assistant_msg(&step.text, &step.calls), &format!("{}{:?}", step.text, step.calls), Kind::Fixed));
        let results = futures::future::join_all(step.calls.iter().enumerate().map(|(n, c)| async move {
            if n >= allowed {
                let e =
                    serde_json::json!({"error": "tool call limit reached for this turn; answer with what you have"});
                let e = e.to_string();
                let n = count_tokens(&e);
                return (c, None, (e, n));
            }
            let o = tools::call(ctx, &c.name, &c.arguments).await;
            let text = trim_counted(&o.content.to_string(), cfg.tool_result_tokens);
            (c, Some(o), text)
        }))
        .await;
        for (c, o, text) in results {
            if let Some(o) = o {
                emit.tool(&o, &c.arguments).await;
                if o.name == "render_format" {
                    out.citations.extend(o.citations.iter().cloned());
                }
            }
            msgs.push(counted(tool_msg(&c.id, &text.0), text.1, Kind::ToolResult));
        }
    }
}

struct Step {
    text: String,
    calls: Vec<Call>,
    prompt_tokens: Option<usize>,
    completion_tokens: Option<usize>,
}

/// One streamed model call: text deltas go out as they come; tool calls are assembled.
async fn stream_step(llm: &LlmClient, req: CreateChatCompletionRequest, emit: &mut Emitter) -> Result<Step, LlmError> {
    let mut stream = None;
    for attempt in 0..2 {
        match tokio::time::timeout(llm.timeout, llm.client.chat().create_stream(req.clone())).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(async_openai::error::OpenAIError::Reqwest(e))) if e.is_timeout() && attempt == 0 => {
                tracing::warn!("model request timed out; retrying once")
            }
            Ok(Err(async_openai::error::OpenAIError::Reqwest(e))) if e.is_timeout() => {}
            Ok(Err(e)) => return Err(LlmError::Api(e.to_string())),
            Err(_) if attempt == 0 => tracing::warn!("model request timed out; retrying once"),
            Err(_) => {}
        }
    }
    let Some(mut stream) = stream else {
        return Err(LlmError::Timeout(llm.timeout_secs));
    };
    let mut step = Step { text: String::new(), calls: vec![], prompt_tokens: None, completion_tokens: None };
    let mut calls: std::collections::BTreeMap<u32, Call> = Default::default();
    let mut finished = false;
    loop {
        let item = match tokio::time::timeout(llm.timeout, stream.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => return Err(LlmError::Timeout(llm.timeout_secs)),
        };
        let chunk = item.map_err(|e| LlmError::Malformed(e.to_string()))?;
        if let Some(u) = chunk.usage {
            step.prompt_tokens = Some(u.prompt_tokens as usize);
            step.completion_tokens = Some(u.completion_tokens as usize);
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content
                && !text.is_empty()
            {
                step.text.push_str(&text);
                emit.delta(&text).await;
            }
            for tc in choice.delta.tool_calls.unwrap_or_default() {
                let c = calls.entry(tc.index).or_default();
                if let Some(id) = tc.id {
                    c.id = id;
                }
                if let Some(f) = tc.function {
                    if let Some(n) = f.name {
                        c.name.push_str(&n);
                    }
                    if let Some(a) = f.arguments {
                        c.arguments.push_str(&a);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                finished = true;
            }
        }
    }
    if !finished && step.prompt_tokens.is_none() {
        return Err(LlmError::Malformed("the stream ended without a finish reason".into()));
    }
    step.calls = calls
        .into_values()
        .enumerate()
        .map(|(i, mut c)| {
            if c.id.is_empty() {
                c.id = format!("call_{i}");
            }
            c
        })
        .collect();
    Ok(step)
}
