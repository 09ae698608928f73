//! One turn, in parts: open the session and read the learner; build the conversation within
//! budget; answer with an engine (the LLM, falling back to the offline engine); gather the
//! citations; review the struggle rules; record the transcript.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::checks::{self, CheckName, CheckReport};
use super::engine::{Engine, EngineKind, Outcome};
use super::llm::LlmEngine;
use super::offline::{self, OfflineEngine};
use super::policy::Mode;
use super::transcript::{Role, Session, Turn};
use super::{
    Agent, AgentError, Conversation, Emitter, FlagRef, HISTORY_TURNS, Tokens, TurnCtx, TurnEvent, TurnRequest,
    TurnResult, cited_ids, context, ground, guard,
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
    checks: Vec<CheckReport>,
    actions: Vec<String>,
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
        let mut ctx = self.turn_ctx(&lib, &req, &opened, skills, keys.clone());
        let mut emit = Emitter::new(tx, keys);
        let grounding = ground::ground(&ctx, &mut emit, &req.message).await;
        let budget = self.config.agent.context_tokens;
        let (budget, tools_tokens) = match &self.llm {
            Some(l) => (l.effective_budget(budget), super::llm::tool_tokens(&self.tools, &self.prompts)),
            None => (budget, 0),
        };
        let (convo, summary) = context::conversation(
            &self.prompts,
            &self.config,
            &lib,
            opened.page.as_ref(),
            &opened.state,
            &opened.history,
            &req.message,
            grounding,
            budget,
            tools_tokens,
        );
        let answered = self.answer(&mut ctx, &convo, &mut emit).await;
        emit.flush().await;
        let (side, side_prompt, side_completion) = ctx.side_calls.totals();
        emit.model_calls += side;
        emit.usage.prompt += side_prompt;
        emit.usage.completion += side_completion;
        let answer = emit.answer.clone();
        let citations = citations(&lib, &answer, &answered);
        let answer_tokens = count_tokens(&answer);
        let tokens = self.tokens(&emit, &convo, answered.engine, answer_tokens);
        let flags = self.review_struggle(&ctx, &req, &opened.history, &citations).await;
        let result = TurnResult {
            answer,
            citations,
            flags,
            tokens,
            engine: answered.engine,
            fallback_reason: answered.fallback_reason,
            mode: convo.grounding.mode,
            checks: answered.checks,
            actions: answered.actions,
            diagnosis: convo.grounding.diagnosis.clone(),
            session_id: opened.session.id.clone(),
            model_calls: emit.model_calls,
            tool_calls: emit.trace.len(),
            prompt_version: self.prompts.get("tutor").version.clone(),
        };
        self.record(&opened.session, &req, &result, &emit, convo.message_tokens, answer_tokens, summary).await;
        count(&result);
        emit.send(TurnEvent::Done(Box::new(result.clone()))).await;
        Ok(result)
    }

    /// What the turn's tools and engines work with.
    fn turn_ctx(
        &self,
        lib: &Arc<Library>,
        req: &TurnRequest,
        opened: &Opened,
        skills: Vec<crate::content::SkillId>,
        keys: guard::Guarded,
    ) -> TurnCtx {
        TurnCtx {
            lib: lib.clone(),
            config: self.config.clone(),
            learner: req.learner.clone(),
            state: opened.state.clone(),
            page: opened.page.clone(),
            skills,
            retriever: self.retriever.clone(),
            tools: self.tools.clone(),
            flags: self.flags.clone(),
            sessions: self.sessions.clone(),
            prompts: self.prompts.clone(),
            llm: self.llm.clone(),
            keys,
            raised: Mutex::new(Vec::new()),
            seen: Mutex::new(Default::default()),
            side_calls: Default::default(),
            courses: req.courses.clone(),
        }
    }

    /// The turn's tokens: the endpoint's counts of every model call when there was one, else
    /// the conversation as counted here.
    fn tokens(&self, emit: &Emitter, convo: &Conversation, engine: EngineKind, answer_tokens: usize) -> Tokens {
        let called = emit.model_calls > 0;
        Tokens {
            prompt: if called { emit.usage.prompt } else { convo.tokens },
            completion: if engine == EngineKind::Llm && emit.usage.completion > 0 {
                emit.usage.completion
            } else {
                answer_tokens
            },
            budget: self.config.agent.context_tokens,
            peak_prompt: if called { emit.usage.peak_prompt } else { convo.tokens },
        }
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

    /// Answers the turn: a question the course does not cover is declined without a model
    /// call; with an LLM, its answer within the turn's time, held to the checks (one repair
    /// request, then the offline engine's answer); without one, the offline engine's.
    async fn answer(&self, ctx: &mut TurnCtx, convo: &Conversation, emit: &mut Emitter) -> Answered {
        let offline_now = |outcome| Answered {
            engine: EngineKind::Offline,
            fallback_reason: None,
            outcome,
            checks: Vec::new(),
            actions: Vec::new(),
        };
        let Some(llm) = self.llm.clone() else {
            return offline_now(offline(ctx, convo, emit).await);
        };
        if convo.grounding.mode == Mode::Decline {
            return offline_now(offline(ctx, convo, emit).await);
        }
        let limit = std::time::Duration::from_secs(self.config.agent.turn_timeout_secs);
        let deadline = tokio::time::Instant::now() + limit;
        let engine = LlmEngine { client: llm };
        let outcome = match tokio::time::timeout_at(deadline, engine.answer(ctx, convo, emit)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                tracing::warn!(error = %e.detail, "LLM engine failed");
                return self.fall_back(ctx, convo, emit, e.reason, Vec::new(), Vec::new()).await;
            }
            Err(_) => {
                let reason = format!("the turn took longer than {} s", self.config.agent.turn_timeout_secs);
                return self.fall_back(ctx, convo, emit, reason, Vec::new(), Vec::new()).await;
            }
        };
        emit.flush().await;
        let mut actions = Vec::new();
        let mut reports = self.check(ctx, convo, emit, outcome.unparsed_markup);
        if let Some(r) = checks::beyond_repair(&reports) {
            let reason = failed_reason(std::slice::from_ref(r));
            return self.fall_back(ctx, convo, emit, reason, reports, actions).await;
        }
        self.add_sources_if_uncited(ctx, convo, emit, &mut reports, &mut actions, outcome.unparsed_markup).await;
        let fixable: Vec<CheckReport> = checks::repairable(&reports).into_iter().cloned().collect();
        if !fixable.is_empty() {
            let previous = emit.answer.clone();
            emit.replace("repair", "The answer is being revised to pass the course's checks.", ctx.keys.clone()).await;
            let problems = problems(&fixable, convo.grounding.band);
            let components = components_list(ctx);
            let repaired = engine.repair(ctx, convo, &previous, &problems, &components, emit);
            match tokio::time::timeout_at(deadline, repaired).await {
                Ok(Ok(o)) => {
                    emit.flush().await;
                    actions.push("repaired".to_owned());
                    reports = self.check(ctx, convo, emit, o.unparsed_markup);
                    if let Some(r) = checks::beyond_repair(&reports) {
                        let reason = failed_reason(std::slice::from_ref(r));
                        return self.fall_back(ctx, convo, emit, reason, reports, actions).await;
                    }
                    self.add_sources_if_uncited(ctx, convo, emit, &mut reports, &mut actions, o.unparsed_markup).await;
                    let still: Vec<CheckReport> = checks::repairable(&reports).into_iter().cloned().collect();
                    if !still.is_empty() {
                        let reason = failed_reason(&still);
                        return self.fall_back(ctx, convo, emit, reason, reports, actions).await;
                    }
                }
                Ok(Err(e)) => return self.fall_back(ctx, convo, emit, e.reason, reports, actions).await,
                Err(_) => {
                    let reason = format!("the turn took longer than {} s", self.config.agent.turn_timeout_secs);
                    return self.fall_back(ctx, convo, emit, reason, reports, actions).await;
                }
            }
        }
        self.add_what_the_model_left_out(ctx, convo, emit, &reports, &mut actions).await;
        Answered { engine: EngineKind::Llm, fallback_reason: None, outcome, checks: reports, actions }
    }

    /// The checks of the answer shown so far.
    fn check(&self, ctx: &TurnCtx, convo: &Conversation, emit: &Emitter, unparsed_markup: usize) -> Vec<CheckReport> {
        let allowed = self.allowed(ctx, convo);
        let expect = checks::Expect {
            allowed: &allowed,
            band: convo.grounding.band,
            mode: convo.grounding.mode,
            withheld: emit.withheld(),
            unparsed_markup,
            diagnosis: convo.grounding.diagnosis.as_ref(),
            earlier_mistake: convo.grounding.earlier_mistake.as_deref(),
            prompt: &self.prompts.get("tutor").text,
        };
        checks::check(&emit.answer, &expect)
    }

    /// An answer that cites nothing but is written from the course's material gets its sources
    /// from the service (no model call): the retrieved components it shares most of its words
    /// with. Then the checks run again.
    async fn add_sources_if_uncited(
        &self,
        ctx: &TurnCtx,
        convo: &Conversation,
        emit: &mut Emitter,
        reports: &mut Vec<CheckReport>,
        actions: &mut Vec<String>,
        unparsed_markup: usize,
    ) {
        let uncited = reports.iter().any(|r| r.check == CheckName::Grounded && !r.passed)
            && checks::bracketed_ids(&emit.answer).is_empty();
        if !uncited {
            return;
        }
        let allowed = self.allowed(ctx, convo);
        let candidates = allowed.iter().filter_map(|id| ctx.lib.components.get(id));
        let sources = checks::supporting(&emit.answer, candidates);
        let Some((first, rest)) = sources.split_first() else { return };
        let title =
            |id: &crate::content::ComponentId| ctx.lib.components.get(id).map_or("", |c| c.title.as_str()).to_owned();
        let mut line = offline::t(ctx, "sources", &[("id", first.as_str()), ("title", &title(first))]);
        for id in rest {
            line.push(' ');
            line.push_str(&offline::t(ctx, "see_also", &[("id", id.as_str()), ("title", &title(id))]));
        }
        emit.delta(&format!("\n\n{line}")).await;
        emit.flush().await;
        actions.push("sources_added".into());
        *reports = self.check(ctx, convo, emit, unparsed_markup);
    }

    /// What a grounded answer may cite: what the tools returned this turn, and the page.
    fn allowed(&self, ctx: &TurnCtx, convo: &Conversation) -> std::collections::BTreeSet<crate::content::ComponentId> {
        let mut allowed = ctx.seen.lock().expect("seen lock").clone();
        allowed.extend(convo.grounding.components());
        allowed.extend(ctx.page.as_ref().map(|p| p.id.clone()));
        allowed
    }

    /// What the service says itself when the model did not: that it will not give the answer,
    /// and what the learner's stated answer shows. The answer is sent again with it in front.
    async fn add_what_the_model_left_out(
        &self,
        ctx: &TurnCtx,
        convo: &Conversation,
        emit: &mut Emitter,
        reports: &[CheckReport],
        actions: &mut Vec<String>,
    ) {
        let failed = |c| reports.iter().any(|r| r.check == c && !r.passed);
        let mut front = Vec::new();
        if failed(CheckName::Refuses) {
            front.push(offline::t(ctx, "refuse", &[]));
            actions.push("refusal_added".into());
        }
        if failed(CheckName::NamesMistake) {
            if let Some(d) = &convo.grounding.diagnosis {
                front.push(offline::about_stated_answer(ctx, d));
            } else if let Some(m) = &convo.grounding.earlier_mistake {
                front.push(offline::t(ctx, "misconception", &[("diagnosis", m)]));
            }
            actions.push("mistake_named".into());
        }
        if front.is_empty() {
            return;
        }
        let answer = emit.answer.clone();
        emit.replace("note", "The tutor adds to the answer.", ctx.keys.clone()).await;
        emit.delta(&format!("{}\n\n{answer}", front.join("\n\n"))).await;
        emit.flush().await;
    }

    /// The offline engine's answer instead of the model's, said so.
    async fn fall_back(
        &self,
        ctx: &mut TurnCtx,
        convo: &Conversation,
        emit: &mut Emitter,
        reason: String,
        checks: Vec<CheckReport>,
        mut actions: Vec<String>,
    ) -> Answered {
        tracing::warn!(%reason, "falling back to the offline engine");
        let lead = offline::t(ctx, "fallback", &[("reason", &reason)]);
        // what the guard still holds may be the start of an answer: it is dropped, not sent
        emit.discard_held(ctx.keys.clone());
        if emit.has_answer() {
            emit.replace("fallback", "The offline tutor answers instead.", ctx.keys.clone()).await;
        }
        emit.delta(&format!("{lead}\n\n")).await;
        // the offline engine does not ask the model that just failed (no generated renders)
        ctx.llm = None;
        let outcome = offline(ctx, convo, emit).await;
        actions.push("offline".into());
        Answered { engine: EngineKind::OfflineFallback, fallback_reason: Some(reason), outcome, checks, actions }
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

/// What a repair request asks to fix.
fn problems(failed: &[CheckReport], band: crate::passport::Band) -> String {
    failed
        .iter()
        .map(|r| match r.check {
            CheckName::Grounded => "- It does not cite the course as it must: cite at least one of the components below by its id in square brackets, and nothing else.".to_owned(),
            CheckName::NoAnswer => "- It gives away the answer to an exercise item. Do not state the final result of any exercise item; give a hint or show the method on other numbers.".to_owned(),
            CheckName::Level => format!(
                "- It is written for a more advanced reader than this learner ({} band). Use short sentences and everyday words.",
                band.as_str()
            ),
            _ => format!("- {}", r.detail),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The components a repaired answer may cite, with their titles.
fn components_list(ctx: &TurnCtx) -> String {
    let mut ids = ctx.seen.lock().expect("seen lock").clone();
    ids.extend(ctx.page.as_ref().map(|p| p.id.clone()));
    ids.iter()
        .filter_map(|id| ctx.lib.components.get(id))
        .filter(|c| c.format != crate::content::Format::Exercise || ctx.page.as_ref().is_some_and(|p| p.id == c.id))
        .take(8)
        .map(|c| format!("[{}] {}", c.id, c.title))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why the answer could not stand, for the learner.
fn failed_reason(failed: &[CheckReport]) -> String {
    let what: Vec<&str> = failed
        .iter()
        .map(|r| match r.check {
            CheckName::Grounded => "it did not cite the course",
            CheckName::NoAnswer => "it gave away an exercise answer",
            CheckName::Level => "it was not written at your level",
            CheckName::NoPrompt => "it repeated the tutor's instructions",
            _ => "it failed a check",
        })
        .collect();
    format!("the model's answer failed the course's checks ({})", what.join(", "))
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

/// The turn in the process metrics.
fn count(r: &TurnResult) {
    use crate::metrics;
    metrics::inc("tutor_turns_total", &[("engine", r.engine.as_str()), ("mode", r.mode.as_str())]);
    if r.engine == EngineKind::OfflineFallback {
        metrics::inc("tutor_fallbacks_total", &[]);
    }
    if !r.flags.is_empty() {
        metrics::add("tutor_flags_raised_total", &[], r.flags.len() as u64);
    }
}
