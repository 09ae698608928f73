//! The tool-calling loop of one turn: bounded in model calls, tool calls and prompt tokens (the
//! turn's wall time is bounded by the caller); independent tool calls of one step run
//! concurrently; text deltas stream out as they come.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionStreamOptions, ChatCompletionToolChoiceOption, ChatCompletionTools,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs, ToolChoiceOptions,
};
use futures::StreamExt;

use super::messages::{self, Call};
use super::{LlmClient, LlmError};
use crate::agent::context::{MESSAGE_OVERHEAD, trim_counted};
use crate::agent::engine::{Engine, EngineFailure, EngineKind, Outcome, Usage};
use crate::agent::tools::{ToolName, ToolOutcome};
use crate::agent::transcript::Role;
use crate::agent::{Conversation, Emitter, TurnCtx};
use crate::content::count_tokens;

/// The LLM engine over one client.
pub struct LlmEngine {
    pub client: Arc<LlmClient>,
}

#[async_trait::async_trait]
impl Engine for LlmEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Llm
    }

    async fn answer(&self, ctx: &TurnCtx, convo: &Conversation, emit: &mut Emitter) -> Result<Outcome, EngineFailure> {
        run(ctx, &self.client, convo, emit)
            .await
            .map_err(|e| EngineFailure { reason: e.public(), detail: e.to_string() })
    }
}

/// A message of the turn with its token cost, so the budget can be kept.
struct Msg {
    msg: ChatCompletionRequestMessage,
    tokens: usize,
    kind: Kind,
}

/// What may give way when the budget runs out.
#[derive(PartialEq, Clone, Copy)]
enum Kind {
    /// Kept: the system prompt, the message, this turn's calls.
    Fixed,
    /// Dropped, oldest first.
    History,
    /// Shrunk to a stub, oldest first.
    ToolResult,
}

fn msg(m: ChatCompletionRequestMessage, text: &str, kind: Kind) -> Msg {
    counted(m, count_tokens(text), kind)
}

fn counted(m: ChatCompletionRequestMessage, tokens: usize, kind: Kind) -> Msg {
    Msg { msg: m, tokens: tokens + MESSAGE_OVERHEAD, kind }
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
            msgs[i] = msg(messages::tool(&id, stub), stub, Kind::ToolResult);
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

/// The first prompt: the system message, the summary of dropped turns, the history, the
/// learner's message.
fn initial_messages(convo: &Conversation) -> Vec<Msg> {
    let mut msgs = vec![counted(messages::system(&convo.system), convo.system_tokens, Kind::Fixed)];
    if let Some(s) = &convo.summary {
        msgs.push(msg(messages::system(s), s, Kind::Fixed));
    }
    for t in &convo.history {
        let m = match t.role {
            Role::Learner => messages::user(&t.content),
            Role::Tutor => messages::assistant(&t.content, &[]),
        };
        msgs.push(counted(m, t.tokens, Kind::History));
    }
    msgs.push(counted(messages::user(&convo.message), convo.message_tokens, Kind::Fixed));
    msgs
}

/// The loop's running totals.
#[derive(Default)]
struct Totals {
    outcome: Outcome,
    usage: Usage,
    tool_calls: u32,
}

/// Runs the tool-calling loop for one turn.
#[tracing::instrument(skip_all, fields(model = %llm.model))]
async fn run(ctx: &TurnCtx, llm: &LlmClient, convo: &Conversation, emit: &mut Emitter) -> Result<Outcome, LlmError> {
    let cfg = &ctx.config.agent;
    let tools_json = messages::tool_defs(&ctx.tools.definitions(&ctx.prompts));
    let tools_tokens =
        *ctx.prompts.tool_tokens.get_or_init(|| count_tokens(&serde_json::to_string(&tools_json).unwrap_or_default()));
    let mut msgs = initial_messages(convo);
    let mut t = Totals::default();
    let mut final_call = false;
    loop {
        // the last allowed call goes without tools, asking for an answer from what was found
        // (a turn makes at most `max_steps` model calls)
        if t.outcome.model_calls + 1 >= cfg.max_steps && !final_call {
            final_call = true;
            let note = "You have used all your tool calls for this turn. Answer the learner now from what you found, citing it.";
            msgs.push(msg(messages::system(note), note, Kind::Fixed));
        }
        t.outcome.model_calls += 1;
        let prompt_now = enforce_budget(&mut msgs, if final_call { 0 } else { tools_tokens }, convo.budget);
        t.usage.peak_prompt = t.usage.peak_prompt.max(prompt_now);
        let req = request(llm, ctx, &msgs, (!final_call).then_some(&tools_json))?;
        let step = stream_step(llm, req, emit).await?;
        t.usage.prompt += step.prompt_tokens.unwrap_or(prompt_now);
        t.usage.completion +=
            step.completion_tokens.unwrap_or_else(|| count_tokens(&step.text) + 10 * step.calls.len());
        if step.calls.is_empty() {
            if step.text.trim().is_empty() {
                return Err(LlmError::Malformed("an empty answer".into()));
            }
            t.outcome.usage = Some(t.usage);
            return Ok(t.outcome);
        }
        if final_call {
            return Err(LlmError::StepLimit(cfg.max_steps));
        }
        let text = format!("{}{:?}", step.text, step.calls);
        msgs.push(msg(messages::assistant(&step.text, &step.calls), &text, Kind::Fixed));
        run_tools(ctx, &step.calls, &mut t, &mut msgs, emit).await;
    }
}

/// One model call's request: the messages, and the tools unless this is the last call.
fn request(
    llm: &LlmClient,
    ctx: &TurnCtx,
    msgs: &[Msg],
    tools: Option<&Vec<ChatCompletionTools>>,
) -> Result<CreateChatCompletionRequest, LlmError> {
    let mut req = CreateChatCompletionRequestArgs::default();
    req.model(llm.model.clone())
        .messages(msgs.iter().map(|m| m.msg.clone()).collect::<Vec<_>>())
        .max_completion_tokens(ctx.config.agent.max_completion_tokens)
        .stream_options(ChatCompletionStreamOptions { include_usage: Some(true), include_obfuscation: None });
    if let Some(tools) = tools {
        req.tools(tools.clone()).tool_choice(ChatCompletionToolChoiceOption::Mode(ToolChoiceOptions::Auto));
    }
    req.build().map_err(LlmError::Permanent)
}

/// Runs one step's tool calls concurrently and appends their results (in call order); calls
/// beyond the per-turn limit are answered with an error the model can read.
async fn run_tools(ctx: &TurnCtx, calls: &[Call], t: &mut Totals, msgs: &mut Vec<Msg>, emit: &mut Emitter) {
    let allowed = ctx.config.agent.max_tool_calls.saturating_sub(t.tool_calls) as usize;
    t.tool_calls += calls.len() as u32;
    let limit = ctx.config.agent.tool_result_tokens;
    let results = futures::future::join_all(calls.iter().enumerate().map(|(n, c)| async move {
        if n >= allowed {
            let e = serde_json::json!({"error": "tool call limit reached for this turn; answer with what you have"});
            let e = e.to_string();
            let n = count_tokens(&e);
            return (c, None::<ToolOutcome>, (e, n));
        }
        let o = ctx.tools.call_json(ctx, &c.name, &c.arguments).await;
        let text = trim_counted(&o.content.to_string(), limit);
        (c, Some(o), text)
    }))
    .await;
    for (c, o, (text, tokens)) in results {
        if let Some(o) = o {
            emit.tool(&o, &c.arguments).await;
            if o.tool == Some(ToolName::RenderFormat) {
                t.outcome.citations.extend(o.citations.iter().cloned());
            }
        }
        msgs.push(counted(messages::tool(&c.id, &text), tokens, Kind::ToolResult));
    }
}

/// One model call's reply.
struct Step {
    text: String,
    calls: Vec<Call>,
    prompt_tokens: Option<usize>,
    completion_tokens: Option<usize>,
}

/// One streamed model call: text deltas go out as they come; tool calls are assembled.
async fn stream_step(llm: &LlmClient, req: CreateChatCompletionRequest, emit: &mut Emitter) -> Result<Step, LlmError> {
    let mut stream = llm.open_stream(req).await?;
    let mut step = Step { text: String::new(), calls: vec![], prompt_tokens: None, completion_tokens: None };
    let mut calls: BTreeMap<u32, Call> = BTreeMap::new();
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
                    c.name.push_str(f.name.as_deref().unwrap_or_default());
                    c.arguments.push_str(f.arguments.as_deref().unwrap_or_default());
                }
            }
            finished |= choice.finish_reason.is_some();
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
