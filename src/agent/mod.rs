//! The tutor agent: one turn of a learner's conversation. It loads the session and the
//! learner's passport, builds the context within a token budget, answers with the LLM engine
//! (when one is configured) or the offline engine (the default, and the fallback when the LLM
//! fails), runs the struggle rules, stores the transcript, and streams what happens as
//! [`TurnEvent`]s.

pub mod context;
pub mod guard;
pub mod llm;
pub mod offline;
pub mod prompts;
pub mod tools;
pub mod transcript;

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::content::{Component, ComponentId, Library, SkillId, count_tokens};
use crate::flags::{Flag, FlagStore, Observation, detect};
use crate::passport::{LearnerId, LearnerState, Store, StoreError};
use crate::retrieval::Retriever;
pub use llm::LlmClient;
pub use prompts::Prompts;
pub use transcript::{AgentStore, Session, Turn};

/// What the learner sent.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub learner: LearnerId,
    pub session_id: Option<String>,
    pub component: Option<ComponentId>,
    pub message: String,
}

/// A tool call, as the client sees it: short summaries, never an answer key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolTrace {
    pub name: String,
    pub ok: bool,
    pub arguments: String,
    pub result: String,
    /// The arguments as the engine sent them (for the eval suite; never streamed).
    #[serde(skip)]
    pub raw_arguments: String,
}

/// Tokens of a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tokens {
    /// Prompt tokens over all model calls (the endpoint's count when it reports one).
    pub prompt: usize,
    pub completion: usize,
    /// The per-call prompt budget.
    pub budget: usize,
    /// The largest prompt of one call, counted here; never above `budget`.
    pub peak_prompt: usize,
}

/// A flag raised or extended by the turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagRef {
    pub id: String,
    pub skill: String,
    pub reason: String,
    pub severity: crate::flags::Severity,
    pub opened: bool,
}

/// The end of a turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnResult {
    pub answer: String,
    pub citations: Vec<String>,
    pub flags: Vec<FlagRef>,
    pub tokens: Tokens,
    /// `offline`, `llm`, or `offline_fallback` (the LLM failed; `fallback_reason` says why).
    pub engine: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    pub session_id: String,
    pub model_calls: u32,
    pub tool_calls: usize,
    pub prompt_version: String,
}

/// What a turn streams. (`Tool` carries the full, redacted arguments for in-process
/// consumers such as the eval suite; the HTTP stream sends the short form.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TurnEvent {
    Tool(ToolTrace),
    Delta { text: String },
    Done(TurnResult),
}

/// Why a turn could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no session '{0}' for this learner")]
    UnknownSession(String),
    #[error("no component '{0}'")]
    UnknownComponent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything a turn's tools and engines work with.
pub struct TurnCtx {
    pub lib: Arc<Library>,
    pub config: Arc<Config>,
    pub learner: LearnerId,
    pub state: LearnerState,
    pub page: Option<Component>,
    /// The page's skills (empty off a page).
    pub skills: Vec<SkillId>,
    pub retriever: Arc<Retriever>,
    pub flags: Arc<dyn FlagStore>,
    pub store: Arc<dyn AgentStore>,
    pub prompts: Arc<Prompts>,
    pub llm: Option<Arc<LlmClient>>,
    /// Answers guarded for this page.
    pub keys: Vec<String>,
    /// Flags raised by `flag_struggle` this turn.
    pub raised: Mutex<Vec<(Flag, bool)>>,
}

impl TurnCtx {
    fn skill_list(&self) -> String {
        if self.skills.is_empty() {
            "(no page; any skill id of the course)".into()
        } else {
            self.skills.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        }
    }
}

/// The conversation as the engines see it, fitted to the budget.
pub struct Conversation {
    pub system: String,
    pub system_tokens: usize,
    pub message_tokens: usize,
    pub summary: Option<String>,
    pub history: Vec<Turn>,
    pub message: String,
    pub budget: usize,
    /// Tokens of all the above.
    pub tokens: usize,
}

/// Streams deltas (through the answer-key guard) and tool traces, and keeps the answer.
pub struct Emitter {
    tx: Option<mpsc::Sender<TurnEvent>>,
    redactor: guard::Redactor,
    keys: Vec<String>,
    answer: String,
    trace: Vec<ToolTrace>,
}

impl Emitter {
    fn new(tx: Option<mpsc::Sender<TurnEvent>>, keys: Vec<String>) -> Self {
        Self { tx, redactor: guard::Redactor::new(keys.clone()), keys, answer: String::new(), trace: Vec::new() }
    }

    async fn send(&self, e: TurnEvent) {
        if let Some(tx) = &self.tx {
            // a client that went away does not stop the turn: it is still stored
            let _ = tx.send(e).await;
        }
    }

    /// Answer text.
    pub async fn delta(&mut self, text: &str) {
        let ready = self.redactor.push(text);
        if !ready.is_empty() {
            self.answer.push_str(&ready);
            self.send(TurnEvent::Delta { text: ready }).await;
        }
    }

    async fn flush(&mut self) {
        let rest = self.redactor.finish();
        if !rest.is_empty() {
            self.answer.push_str(&rest);
            self.send(TurnEvent::Delta { text: rest }).await;
        }
    }

    /// From here on the text is the course's own (the offline engine): it goes out as the
    /// authors wrote it, even where an explanation works the same numbers as a sibling
    /// exercise; only the answers of the exercise the learner is on stay guarded. Text a model
    /// wrote is guarded against every exercise on the page's skills.
    async fn course_text_from_here(&mut self, keys: Vec<String>) {
        self.flush().await;
        self.redactor = guard::Redactor::new(keys);
    }

    /// A tool call and its result.
    pub async fn tool(&mut self, o: &tools::ToolOutcome, raw_args: &str) {
        let short = |s: &str| -> String {
            let s = guard::redact(s, &self.keys);
            if s.chars().count() > 160 { format!("{}…", s.chars().take(160).collect::<String>()) } else { s }
        };
        let t = ToolTrace {
            // a model may name a tool anything: only the real names go out as they are
            name: if tools::TOOL_NAMES.contains(&o.name.as_str()) { o.name.clone() } else { "unknown_tool".into() },
            ok: o.ok,
            arguments: short(raw_args),
            result: if tools::TOOL_NAMES.contains(&o.name.as_str()) {
                short(&o.summary)
            } else {
                "error: unknown tool".into()
            },
            raw_arguments: guard::redact(raw_args, &self.keys),
        };
        self.trace.push(t.clone());
        self.send(TurnEvent::Tool(t)).await;
    }
}

/// The agent, shared by all turns.
pub struct Agent {
    pub config: Arc<Config>,
    pub retriever: Arc<Retriever>,
    pub passports: Arc<dyn Store>,
    pub flags: Arc<dyn FlagStore>,
    pub store: Arc<dyn AgentStore>,
    pub prompts: Arc<Prompts>,
    pub llm: Option<Arc<LlmClient>>,
}

/// Turns of a session read for a new turn: more than any budget keeps, so the running summary
/// still has the recent questions that did not fit.
pub const HISTORY_TURNS: usize = 80;

/// The longest message taken, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Component ids written `[like-this]` in a text that exist in the library.
pub fn cited_ids(lib: &Library, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in text.split('[').skip(1) {
        if let Some((id, _)) = part.split_once(']')
            && let Ok(cid) = ComponentId::parse(id.trim())
            && lib.components.contains_key(&cid)
            && !out.contains(&cid.to_string())
        {
            out.push(cid.to_string());
        }
    }
    out
}

impl Agent {
    /// Runs one turn; events go to `tx` as they happen (the last is `Done`).
    #[tracing::instrument(skip_all, fields(learner = %req.learner, component = ?req.component))]
    pub async fn turn(
        &self,
        lib: Arc<Library>,
        req: TurnRequest,
        tx: Option<mpsc::Sender<TurnEvent>>,
    ) -> Result<TurnResult, AgentError> {
        let page = match &req.component {
            Some(id) => {
                Some(lib.components.get(id).cloned().ok_or_else(|| AgentError::UnknownComponent(id.to_string()))?)
            }
            None => None,
        };
        let session = self
            .store
            .open_session(req.learner.as_str(), req.session_id.as_deref(), req.component.as_ref().map(|c| c.as_str()))
            .await?
            .ok_or_else(|| AgentError::UnknownSession(req.session_id.clone().unwrap_or_default()))?;
        let history = if session.created { Vec::new() } else { self.store.turns(&session.id, HISTORY_TURNS).await? };
        let state = self.passports.learner(&req.learner).await?;
        let skills = page.as_ref().map(|p| p.skills.clone()).unwrap_or_default();
        let keys = guard::guarded_keys(&lib, &skills);
        let cfg = &self.config.agent;

        // the context, within budget: fixed parts first, then as much history as fits
        let tutor = self.prompts.get("tutor");
        let about = format!(
            "\n\n{}\n\n{}",
            context::page_block(page.as_ref()),
            context::passport_block(&lib, &self.config.passport, &state, &skills)
        );
        let system = format!("{}{about}", tutor.text);
        // the fixed prompt is counted once at start; a token may merge across the join
        let system_tokens = tutor.tokens + count_tokens(&about) + 1;
        let message_tokens = count_tokens(&req.message);
        let fixed = system_tokens + message_tokens + 2 * context::MESSAGE_OVERHEAD;
        // room kept for tool definitions and this turn's tool results
        let tools_room = (cfg.context_tokens / 3).min(1500);
        let history_room = cfg.context_tokens.saturating_sub(fixed + tools_room);
        let fitted = context::fit_history(&history, history_room, "");
        let convo_tokens = fixed
            + fitted.turns.iter().map(|t| t.tokens + context::MESSAGE_OVERHEAD).sum::<usize>()
            + fitted.summary.as_deref().map_or(0, |s| count_tokens(s) + context::MESSAGE_OVERHEAD);
        let convo = Conversation {
            system,
            system_tokens,
            message_tokens,
            summary: fitted.summary.clone(),
            history: fitted.turns.clone(),
            message: req.message.clone(),
            budget: cfg.context_tokens,
            tokens: convo_tokens,
        };

        let mut ctx = TurnCtx {
            lib: lib.clone(),
            config: self.config.clone(),
            learner: req.learner.clone(),
            state,
            page,
            skills: skills.clone(),
            retriever: self.retriever.clone(),
            flags: self.flags.clone(),
            store: self.store.clone(),
            prompts: self.prompts.clone(),
            llm: self.llm.clone(),
            keys: keys.clone(),
            raised: Mutex::new(Vec::new()),
        };
        let mut emit = Emitter::new(tx, keys);

        let mut engine = "offline";
        let mut fallback_reason = None;
        let mut tokens =
            Tokens { prompt: convo.tokens, completion: 0, budget: cfg.context_tokens, peak_prompt: convo.tokens };
        let mut model_calls = 0;
        let mut citations: Vec<String> = Vec::new();
        let llm_result = match &self.llm {
            Some(llm) => {
                let limit = std::time::Duration::from_secs(cfg.turn_timeout_secs);
                Some(match tokio::time::timeout(limit, llm::run(&ctx, llm, &convo, &mut emit)).await {
                    Ok(r) => r.map_err(|e| {
                        tracing::warn!(error = %e, "LLM engine failed");
                        e.public()
                    }),
                    Err(_) => Err(format!("the turn took longer than {} s", cfg.turn_timeout_secs)),
                })
            }
            None => None,
        };
        match llm_result {
            Some(Ok(t)) => {
                engine = "llm";
                tokens.prompt = t.prompt_tokens;
                tokens.completion = t.completion_tokens;
                tokens.peak_prompt = t.peak_prompt_tokens;
                model_calls = t.steps;
                citations.extend(t.citations.iter().map(|c| c.to_string()));
            }
            Some(Err(reason)) => {
                tracing::warn!(%reason, "LLM engine failed; falling back to the offline engine");
                engine = "offline_fallback";
                let lead = if emit.answer.is_empty() { "" } else { "\n\n" };
                emit.delta(&format!("{lead}(The AI tutor could not answer just now: {reason}. Here is what the offline tutor found in the course.)\n\n")).await;
                fallback_reason = Some(reason);
                // the offline engine does not ask the model that just failed (no generated renders)
                ctx.llm = None;
                emit.course_text_from_here(guard::page_exercise_keys(&lib, ctx.page.as_ref())).await;
                let o = offline::answer(&ctx, &req.message, &mut emit).await;
                citations.extend(o.citations.iter().map(|c| c.to_string()));
            }
            None => {
                emit.course_text_from_here(guard::page_exercise_keys(&lib, ctx.page.as_ref())).await;
                let o = offline::answer(&ctx, &req.message, &mut emit).await;
                citations.extend(o.citations.iter().map(|c| c.to_string()));
            }
        }
        emit.flush().await;
        let answer = emit.answer.clone();
        // the components the answer cites, then those the engine drew on
        let mut cites = cited_ids(&lib, &answer);
        for c in citations {
            if !cites.contains(&c) && (engine != "llm" || cites.is_empty()) {
                cites.push(c);
            }
        }
        let answer_tokens = count_tokens(&answer);
        tokens.completion = if engine == "llm" && tokens.completion > 0 { tokens.completion } else { answer_tokens };

        // struggle: the same rules whatever the engine, plus what the model flagged
        let earlier: Vec<String> = history.iter().filter(|t| t.role == "learner").map(|t| t.content.clone()).collect();
        let observed_skills = if skills.is_empty() {
            cites
                .iter()
                .filter_map(|c| ComponentId::parse(c).ok())
                .filter_map(|c| lib.components.get(&c))
                .flat_map(|c| c.skills.first().cloned())
                .take(1)
                .collect()
        } else {
            skills.clone()
        };
        let raises = detect(
            &lib,
            &self.config.flags,
            &Observation {
                learner: req.learner.as_str(),
                state: &ctx.state,
                skills: &observed_skills,
                component: req.component.as_ref(),
                message: Some(&req.message),
                earlier: &earlier,
                new_answers: false,
            },
        );
        let mut flags: Vec<FlagRef> = Vec::new();
        let mut add = |f: &Flag, opened: bool| match flags.iter_mut().find(|x| x.id == f.id) {
            Some(x) => {
                x.opened |= opened;
                x.severity = f.severity;
            }
            None => flags.push(FlagRef {
                id: f.id.clone(),
                skill: f.skill.clone(),
                reason: f.reason.clone(),
                severity: f.severity,
                opened,
            }),
        };
        for (f, opened) in ctx.raised.lock().expect("raised lock").iter() {
            add(f, *opened);
        }
        for r in &raises {
            match self.flags.raise(r).await {
                Ok((f, opened)) => add(&f, opened),
                Err(e) => tracing::error!(error = %e, "could not store a struggle flag"),
            }
        }

        let result = TurnResult {
            answer: answer.clone(),
            citations: cites,
            flags,
            tokens,
            engine,
            fallback_reason,
            session_id: session.id.clone(),
            model_calls,
            tool_calls: emit.trace.len(),
            prompt_version: self.prompts.get("tutor").version.clone(),
        };
        let now = crate::passport::now_ms();
        let meta = serde_json::json!({
            "engine": result.engine, "citations": result.citations, "tools": emit.trace, "tokens": result.tokens,
            "flags": result.flags, "fallback_reason": result.fallback_reason, "prompt_version": result.prompt_version,
            "component": req.component,
        });
        // kept for whoever reads the session; every turn recomputes it from the full transcript
        let summary = fitted.summary.clone().unwrap_or_default();
        let turns = [
            Turn {
                seq: 0,
                role: "learner".into(),
                content: req.message.clone(),
                tokens: message_tokens,
                meta: serde_json::Value::Null,
                at: now,
            },
            Turn { seq: 0, role: "tutor".into(), content: answer, tokens: answer_tokens, meta, at: now },
        ];
        if let Err(e) = self.store.append_turns(&session.id, req.learner.as_str(), &turns, &summary).await {
            tracing::error!(error = %e, "could not store the transcript");
        }
        emit.send(TurnEvent::Done(result.clone())).await;
        Ok(result)
    }
}
