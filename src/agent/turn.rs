//! One turn, in parts: open the session and read the learner; build the conversation within
//! budget; answer with an engine (the LLM, falling back to the offline engine); gather the
//! citations; review the struggle rules; record the transcript.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::engine::{Engine, EngineKind, Outcome};
use super::llm::LlmEngine;
use super::offline::OfflineEngine;
use super::transcript::{Role, Session, Turn};
use super::{
    Agent, AgentError, Conversation, Emitter, FlagRef, HISTORY_TURNS, Tokens, TurnCtx, TurnEvent, TurnRequest,
    TurnResult, cited_ids, context, guard,
};
use crate::content::{Component, ComponentId, Library, count_tokens};
use crate::flags::{Flag, Observation, detect};
use crate::passport::LearnerState;

/// What the turn found before answering.
struct Opened {
    page: Option<Component>,
    session: Session,
    history: Vec<Turn>,
    state: LearnerState,
}

/// How the turn was answered.
struct Answered {
    engine: EngineKind,
    fallback_reason: Option<String>,
    outcome: Outcome,
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
        let opened = self.open(&lib, &req).await?;
        let skills = opened.page.as_ref().map(|p| p.skills.clone()).unwrap_or_default();
        let keys = guard::guarded_keys(&lib, &skills);
        let (convo, summary) = context::conversation(
            &self.prompts,
            &self.config,
            &lib,
            opened.page.as_ref(),
            &opened.state,
            &opened.history,
            &req.message,
        );
        let mut ctx = TurnCtx {
            lib: lib.clone(),
            config: self.config.clone(),
            learner: req.learner.clone(),
            state: opened.state,
            page: opened.page,
            skills,
            retriever: self.retriever.clone(),
            tools: self.tools.clone(),
            flags: self.flags.clone(),
            sessions: self.sessions.clone(),
            prompts: self.prompts.clone(),
            llm: self.llm.clone(),
            keys: keys.clone(),
            raised: Mutex::new(Vec::new()),
        };
        let mut emit = Emitter::new(tx, keys);
        let answered = self.answer(&mut ctx, &convo, &mut emit).await;
        emit.flush().await;
        let answer = emit.answer.clone();
        let citations = citations(&lib, &answer, &answered);
        let answer_tokens = count_tokens(&answer);
        let usage = answered.outcome.usage.unwrap_or_default();
        let tokens = Tokens {
            prompt: if answered.outcome.usage.is_some() { usage.prompt } else { convo.tokens },
            completion: if answered.engine == EngineKind::Llm && usage.completion > 0 {
                usage.completion
            } else {
                answer_tokens
            },
            budget: self.config.agent.context_tokens,
            peak_prompt: if answered.outcome.usage.is_some() { usage.peak_prompt } else { convo.tokens },
        };
        let flags = self.review_struggle(&ctx, &req, &opened.history, &citations).await;
        let result = TurnResult {
            answer,
            citations,
            flags,
            tokens,
            engine: answered.engine,
            fallback_reason: answered.fallback_reason,
            session_id: opened.session.id.clone(),
            model_calls: answered.outcome.model_calls,
            tool_calls: emit.trace.len(),
            prompt_version: self.prompts.get("tutor").version.clone(),
        };
        self.record(&opened.session, &req, &result, &emit, convo.message_tokens, answer_tokens, summary).await;
        emit.send(TurnEvent::Done(result.clone())).await;
        Ok(result)
    }

    /// The page, the session (opened or created), its recent turns and the learner's state.
    async fn open(&self, lib: &Library, req: &TurnRequest) -> Result<Opened, AgentError> {
        let page = match &req.component {
            Some(id) => {
                Some(lib.components.get(id).cloned().ok_or_else(|| AgentError::UnknownComponent(id.to_string()))?)
            }
            None => None,
        };
        let session = self
            .sessions
            .open_session(&req.learner, req.session_id.as_deref(), req.component.as_ref().map(|c| c.as_str()))
            .await?
            .ok_or_else(|| AgentError::UnknownSession(req.session_id.clone().unwrap_or_default()))?;
        let history =
            if session.created { Vec::new() } else { self.sessions.turns(&session.id, HISTORY_TURNS).await? };
        let state = self.passports.learner(&req.learner).await?;
        Ok(Opened { page, session, history, state })
    }

    /// Answers with the LLM engine within the turn's time, or the offline engine; when the LLM
    /// fails, the offline engine answers, said so, without asking the failed model again.
    async fn answer(&self, ctx: &mut TurnCtx, convo: &Conversation, emit: &mut Emitter) -> Answered {
        let Some(llm) = self.llm.clone() else {
            let outcome = offline(ctx, convo, emit).await;
            return Answered { engine: EngineKind::Offline, fallback_reason: None, outcome };
        };
        let limit = std::time::Duration::from_secs(self.config.agent.turn_timeout_secs);
        let engine = LlmEngine { client: llm };
        let reason = match tokio::time::timeout(limit, engine.answer(ctx, convo, emit)).await {
            Ok(Ok(outcome)) => return Answered { engine: EngineKind::Llm, fallback_reason: None, outcome },
            Ok(Err(e)) => {
                tracing::warn!(error = %e.detail, "LLM engine failed");
                e.reason
            }
            Err(_) => format!("the turn took longer than {} s", self.config.agent.turn_timeout_secs),
        };
        tracing::warn!(%reason, "LLM engine failed; falling back to the offline engine");
        let lead = if emit.has_answer() { "\n\n" } else { "" };
        emit.delta(&format!("{lead}(The AI tutor could not answer just now: {reason}. Here is what the offline tutor found in the course.)\n\n")).await;
        // the offline engine does not ask the model that just failed (no generated renders)
        ctx.llm = None;
        let outcome = offline(ctx, convo, emit).await;
        Answered { engine: EngineKind::OfflineFallback, fallback_reason: Some(reason), outcome }
    }

    /// The struggle rules on this turn (the same whatever the engine), plus what the model
    /// flagged; returns the flags raised or extended.
    async fn review_struggle(
        &self,
        ctx: &TurnCtx,
        req: &TurnRequest,
        history: &[Turn],
        citations: &[ComponentId],
    ) -> Vec<FlagRef> {
        let earlier: Vec<String> =
            history.iter().filter(|t| t.role == Role::Learner).map(|t| t.content.clone()).collect();
        // off a page, the skill of what the answer cited
        let observed_skills = if ctx.skills.is_empty() {
            citations
                .iter()
                .filter_map(|c| ctx.lib.components.get(c))
                .flat_map(|c| c.skills.first().cloned())
                .take(1)
                .collect()
        } else {
            ctx.skills.clone()
        };
        let obs = Observation {
            learner: &req.learner,
            state: &ctx.state,
            skills: &observed_skills,
            component: req.component.as_ref(),
            message: Some(&req.message),
            earlier: &earlier,
            new_answers: false,
        };
        let raises = detect(&ctx.lib, &self.config.flags, &obs);
        let mut flags: Vec<FlagRef> = Vec::new();
        for (f, opened) in ctx.raised.lock().expect("raised lock").iter() {
            add_flag(&mut flags, f, *opened);
        }
        for r in &raises {
            match self.flags.raise(r).await {
                Ok((f, opened)) => add_flag(&mut flags, &f, opened),
                Err(e) => tracing::error!(error = %e, "could not store a struggle flag"),
            }
        }
        flags
    }

    /// Stores the learner's message and the answer, with what the turn did.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        session: &Session,
        req: &TurnRequest,
        result: &TurnResult,
        emit: &Emitter,
        message_tokens: usize,
        answer_tokens: usize,
        summary: Option<String>,
    ) {
        let now = crate::ids::now_ms();
        let meta = serde_json::json!({
            "engine": result.engine, "citations": result.citations, "tools": emit.trace, "tokens": result.tokens,
            "flags": result.flags, "fallback_reason": result.fallback_reason, "prompt_version": result.prompt_version,
            "component": req.component,
        });
        let turns = [
            Turn {
                seq: 0,
                role: Role::Learner,
                content: req.message.clone(),
                tokens: message_tokens,
                meta: serde_json::Value::Null,
                at: now,
            },
            Turn { seq: 0, role: Role::Tutor, content: result.answer.clone(), tokens: answer_tokens, meta, at: now },
        ];
        // kept for whoever reads the session; every turn recomputes it from the full transcript
        let summary = summary.unwrap_or_default();
        if let Err(e) = self.sessions.append_turns(&session.id, &req.learner, &turns, &summary).await {
            tracing::error!(error = %e, "could not store the transcript");
        }
    }
}

/// The offline engine's answer; its text is the course's own, guarded only against the answers
/// of the exercise the learner is on.
async fn offline(ctx: &TurnCtx, convo: &Conversation, emit: &mut Emitter) -> Outcome {
    emit.course_text_from_here(guard::page_exercise_keys(&ctx.lib, ctx.page.as_ref())).await;
    OfflineEngine.answer(ctx, convo, emit).await.unwrap_or_default()
}

/// The components the answer cites, then those the engine drew on (for the LLM engine only
/// when its answer cites none).
fn citations(lib: &Library, answer: &str, answered: &Answered) -> Vec<ComponentId> {
    let mut cites = cited_ids(lib, answer);
    for c in &answered.outcome.citations {
        if !cites.contains(c) && (answered.engine != EngineKind::Llm || cites.is_empty()) {
            cites.push(c.clone());
        }
    }
    cites
}

fn add_flag(flags: &mut Vec<FlagRef>, f: &Flag, opened: bool) {
    match flags.iter_mut().find(|x| x.id == f.id) {
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
    }
}
