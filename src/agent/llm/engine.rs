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
use crate::agent::context::MESSAGE_OVERHEAD;
use crate::agent::engine::{Engine, EngineFailure, EngineKind, Outcome};
use crate::agent::markup::MarkupFilter;
use crate::agent::tools::{ToolName, ToolOutcome};
use crate::agent::transcript::Role;
use crate::agent::{Conversation, Emitter, TurnCtx};
use crate::content::count_tokens;
use crate::content::trim_counted;

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
        run(ctx, &self.client, convo, emit).await.map_err(failure)
    }
}

fn failure(e: LlmError) -> EngineFailure {
    EngineFailure { reason: e.public(), detail: e.to_string() }
}

impl LlmEngine {
    /// One repair request: the conversation, the answer that failed its checks, and what to
    /// fix (`prompts/repair.md`); no tools. The new answer streams through `emit`.
    pub async fn repair(
        &self,
        ctx: &TurnCtx,
        convo: &Conversation,
        previous: &str,
        problems: &str,
        components: &str,
        emit: &mut Emitter,
    ) -> Result<Outcome, EngineFailure> {
        let llm = &self.client;
        let note = crate::agent::prompts::fill(
            &ctx.prompts.get("repair").text,
            &[("problems", problems), ("components", components)],
        );
        let mut msgs = initial_messages(convo);
        msgs.push(msg(messages::assistant(previous, &[]), previous, Kind::Fixed));
        msgs.push(msg(messages::system(&note), &note, Kind::Fixed));
        let prompt_now = enforce_budget(&mut msgs, 0, llm.effective_budget(ctx.config.agent.context_tokens));
        let req = request(llm, ctx, &msgs, None).map_err(failure)?;
        let step = stream_step(llm, req, emit, prompt_now).await.map_err(failure)?;
        if step.text.trim().is_empty() {
            return Err(failure(LlmError::Malformed("an empty repair".into())));
        }
        Ok(Outcome { unparsed_markup: step.unparsed_markup, ..Outcome::default() })
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
    // the tutor's prompt alone first: with the tools, the same prefix every turn, which a
    // server can cache; then this turn's context
    let mut msgs = vec![
        counted(messages::system(&convo.system), convo.system_tokens, Kind::Fixed),
        counted(messages::system(&convo.context), convo.context_tokens, Kind::Fixed),
    ];
    // the summary of dropped turns goes first when the budget is short
    if let Some(s) = &convo.summary {
        msgs.push(msg(messages::system(s), s, Kind::History));
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

/// Runs the tool-calling loop for one turn. Model calls and their tokens are counted on the
/// emitter as they happen, so they are reported also when the turn fails or times out.
#[tracing::instrument(skip_all, fields(model = %llm.model))]
async fn run(ctx: &TurnCtx, llm: &LlmClient, convo: &Conversation, emit: &mut Emitter) -> Result<Outcome, LlmError> {
    let cfg = &ctx.config.agent;
    let tools_json = messages::tool_defs(&ctx.tools.definitions(&ctx.prompts));
    let tools_tokens = tool_tokens(&ctx.tools, &ctx.prompts);
    let mut msgs = initial_messages(convo);
    let mut outcome = Outcome::default();
    let (mut steps, mut tool_calls) = (0u32, 0u32);
    let mut final_call = false;
    loop {
        // the last allowed call goes without tools, asking for an answer from what was found
        // (a turn makes at most `max_steps` model calls)
        if steps + 1 >= cfg.max_steps && !final_call {
            final_call = true;
            let note = "You have used all your tool calls for this turn. Answer the learner now from what you found, citing it.";
            msgs.push(msg(messages::system(note), note, Kind::Fixed));
        }
        steps += 1;
        let budget = llm.effective_budget(cfg.context_tokens);
        let mut prompt_now = enforce_budget(&mut msgs, if final_call { 0 } else { tools_tokens }, budget);
        if prompt_now > budget && !final_call {
            // the tool definitions do not fit beside what must be sent: answer without them
            tracing::warn!(prompt_now, budget, "no room for the tools; asking for an answer without them");
            final_call = true;
            prompt_now = enforce_budget(&mut msgs, 0, budget);
        }
        let req = request(llm, ctx, &msgs, (!final_call).then_some(&tools_json))?;
        let step = match stream_step(llm, req.clone(), emit, prompt_now).await {
            // counted too loosely for this server: count more carefully, and send it again if
            // that made it smaller
            Err(LlmError::ContextLength(e)) => {
                tracing::warn!(error = %e, "the prompt did not fit the model's context; shrinking it");
                llm.grow_scale();
                let budget = llm.effective_budget(cfg.context_tokens);
                let smaller = enforce_budget(&mut msgs, if final_call { 0 } else { tools_tokens }, budget);
                if smaller >= prompt_now {
                    return Err(LlmError::ContextLength(e));
                }
                stream_step(llm, request(llm, ctx, &msgs, (!final_call).then_some(&tools_json))?, emit, smaller).await?
            }
            other => other?,
        };
        outcome.unparsed_markup += step.unparsed_markup;
        if step.calls.is_empty() {
            if step.text.trim().is_empty() {
                return Err(LlmError::Malformed("an empty answer".into()));
            }
            return Ok(outcome);
        }
        if final_call {
            return Err(LlmError::StepLimit(cfg.max_steps));
        }
        let text = format!("{}{:?}", step.text, step.calls);
        msgs.push(msg(messages::assistant(&step.text, &step.calls), &text, Kind::Fixed));
        run_tools(ctx, &step.calls, &mut tool_calls, &mut outcome, &mut msgs, emit).await;
    }
}

/// Tokens of the tool definitions as sent, counted once.
pub fn tool_tokens(tools: &crate::agent::ToolSet, prompts: &crate::agent::Prompts) -> usize {
    *prompts.tool_tokens.get_or_init(|| {
        let json = messages::tool_defs(&tools.definitions(prompts));
        count_tokens(&serde_json::to_string(&json).unwrap_or_default())
    })
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
async fn run_tools(
    ctx: &TurnCtx,
    calls: &[Call],
    tool_calls: &mut u32,
    outcome: &mut Outcome,
    msgs: &mut Vec<Msg>,
    emit: &mut Emitter,
) {
    let allowed = ctx.config.agent.max_tool_calls.saturating_sub(*tool_calls) as usize;
    *tool_calls += calls.len() as u32;
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
            emit.tool(&o, &c.arguments, true).await;
            if o.tool == Some(ToolName::RenderFormat) {
                outcome.citations.extend(o.citations.iter().cloned());
            }
        }
        msgs.push(counted(messages::tool(&c.id, &text), tokens, Kind::ToolResult));
    }
}

/// One model call's reply.
struct Step {
    /// The text shown (tool-call markup removed).
    text: String,
    /// The tool calls: the API's, then those written as text.
    calls: Vec<Call>,
    unparsed_markup: usize,
}

/// Why one attempt at a streamed call ended early.
struct Cut {
    error: LlmError,
    /// Whether any of the reply had come (then it is not tried again).
    started: bool,
}

/// One streamed model call, counted on the emitter: text deltas go out as they come (tool-call
/// markup held back), tool calls are assembled. A call cut before any of its reply came, or
/// with no first byte in time, is tried once more.
async fn stream_step(
    llm: &LlmClient,
    req: CreateChatCompletionRequest,
    emit: &mut Emitter,
    prompt_counted: usize,
) -> Result<Step, LlmError> {
    emit.usage.peak_prompt = emit.usage.peak_prompt.max(prompt_counted);
    for attempt in 0..2 {
        emit.model_calls += 1;
        let started = std::time::Instant::now();
        let (prompt_before, completion_before) = (emit.usage.prompt, emit.usage.completion);
        let result = stream_once(llm, req.clone(), emit, prompt_counted).await;
        let model = llm.model();
        crate::metrics::observe(
            "tutor_llm_call_duration_seconds",
            &[("model", model)],
            started.elapsed().as_secs_f64(),
        );
        let outcome = if result.is_ok() { "ok" } else { "error" };
        crate::metrics::inc("tutor_llm_calls_total", &[("model", model), ("outcome", outcome)]);
        let (p, c) = (emit.usage.prompt - prompt_before, emit.usage.completion - completion_before);
        crate::metrics::add("tutor_llm_tokens_total", &[("model", model), ("kind", "prompt")], p as u64);
        crate::metrics::add("tutor_llm_tokens_total", &[("model", model), ("kind", "completion")], c as u64);
        match result {
            Ok(step) => return Ok(step),
            Err(Cut { error, started: false }) if attempt == 0 && error.is_retryable() => {
                tracing::warn!(error = %error, "the model's reply was cut before it began; trying once more");
            }
            Err(cut) => return Err(cut.error),
        }
    }
    unreachable!("the second attempt returns")
}

async fn stream_once(
    llm: &LlmClient,
    req: CreateChatCompletionRequest,
    emit: &mut Emitter,
    prompt_counted: usize,
) -> Result<Step, Cut> {
    let cut = |error, started| Cut { error, started };
    let (mut stream, mut next) = llm.open_stream(req).await.map_err(|e| cut(e, false))?;
    let mut filter = MarkupFilter::default();
    let (mut text, mut started, mut finished) = (String::new(), false, false);
    let mut calls: BTreeMap<u32, Call> = BTreeMap::new();
    let mut usage = None;
    loop {
        let item = match next.take() {
            Some(item) => item,
            None => match tokio::time::timeout(llm.timeout, stream.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => return Err(cut(LlmError::Timeout(llm.timeout_secs), started)),
            },
        };
        let chunk = item.map_err(|e| cut(LlmError::Malformed(e.to_string()), started))?;
        if let Some(u) = chunk.usage {
            usage = Some((u.prompt_tokens as usize, u.completion_tokens as usize));
        }
        for choice in chunk.choices {
            if let Some(t) = choice.delta.content.filter(|t: &String| !t.is_empty()) {
                started = true;
                let shown = filter.push(&t);
                text.push_str(&shown);
                emit.delta(&shown).await;
            }
            for tc in choice.delta.tool_calls.unwrap_or_default() {
                started = true;
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
    if !finished && usage.is_none() {
        return Err(cut(LlmError::Malformed("the stream ended without a finish reason".into()), started));
    }
    let rest = filter.finish();
    text.push_str(&rest.text);
    emit.delta(&rest.text).await;
    let mut calls: Vec<Call> = calls.into_values().collect();
    for (i, c) in calls.iter_mut().enumerate().filter(|(_, c)| c.id.is_empty()) {
        c.id = format!("call_{i}");
    }
    // ids of their own, so they never clash with the server's
    calls.extend(rest.calls.into_iter().enumerate().map(|(i, c)| Call {
        id: format!("text_call_{i}"),
        name: c.name,
        arguments: c.arguments,
    }));
    match usage {
        Some((prompt, completion)) => {
            llm.observe_tokens(prompt, prompt_counted);
            emit.usage.prompt += prompt;
            emit.usage.completion += completion;
        }
        None => {
            emit.usage.prompt += prompt_counted;
            emit.usage.completion += count_tokens(&text) + 10 * calls.len();
        }
    }
    Ok(Step { text, calls, unparsed_markup: rest.unparsed })
}
