//! The tutor agent: one turn of a learner's conversation. It loads the session and the
//! learner's passport, builds the context within a token budget, answers with the LLM engine
//! (when one is configured) or the offline engine (the default, and the fallback when the LLM
//! fails), runs the struggle rules, stores the transcript, and streams what happens as
//! [`TurnEvent`]s.
//!
//! The service owns the teaching guarantees, not the model: before any engine answers, it
//! grounds the turn itself ([`ground`]: mastery, retrieval, the [`policy`] checks that set the
//! mode, the diagnosis of a stated answer); after the model, [`checks`] hold the answer to the
//! course (grounded, no exercise answer, the learner's level, no tool markup) with one repair
//! request and then the offline engine's answer.
//!
//! Rooms: [`turn`] (a turn, in parts), [`ground`], [`policy`], [`context`] (what the model
//! sees, within budget), [`engine`] (the engine trait), [`llm`] and [`offline`] (the two
//! engines), [`checks`], [`markup`] (tool calls written as text), [`tools`] (the typed tools and
//! their set), [`guard`] (answer keys never leave), [`emit`] (what a turn streams), [`prompts`],
//! [`transcript`] (sessions and transcripts).

pub mod checks;
pub mod context;
pub mod emit;
pub mod engine;
pub mod ground;
pub mod guard;
pub mod llm;
pub mod markup;
pub mod offline;
pub mod policy;
pub mod prompts;
pub mod tools;
pub mod transcript;
mod turn;

use std::sync::{Arc, Mutex};

use serde::Serialize;

pub use checks::{CheckName, CheckReport};
pub use emit::Emitter;
pub use engine::{Engine, EngineFailure, EngineKind, Outcome, Usage};
pub use ground::Grounding;
pub use llm::{LlmClient, LlmEngine, LlmError};
pub use offline::OfflineEngine;
pub use policy::{Diagnosis, Mode};
pub use prompts::Prompts;
pub use tools::ToolSet;
pub use transcript::{AgentStore, Role, Session, SqlAgentStore, Turn};

use crate::config::Config;
use crate::content::{Component, ComponentId, Library, SkillId};
use crate::db::StoreError;
use crate::flags::{Flag, FlagStore};
use crate::passport::{LearnerId, LearnerState, PassportStore};
use crate::retrieval::Retriever;

/// What the learner sent.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub learner: LearnerId,
    pub session_id: Option<String>,
    pub component: Option<ComponentId>,
    pub message: String,
    /// The courses whose learner data the turn may show (a service token's); `None`: all.
    pub courses: Option<Vec<String>>,
}

/// A tool call, as the client sees it: short summaries, never an answer key.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ToolTrace {
    pub name: String,
    /// Who called it: `service` (the service grounding the turn, or the offline engine) or
    /// `model`.
    pub by: &'static str,
    pub ok: bool,
    pub arguments: String,
    pub result: String,
    /// The arguments as the engine sent them (for the eval suite; never streamed).
    #[serde(skip)]
    pub raw_arguments: String,
}

/// Tokens of a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct FlagRef {
    pub id: String,
    pub skill: String,
    pub reason: String,
    pub severity: crate::flags::Severity,
    pub opened: bool,
}

/// The end of a turn.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TurnResult {
    pub answer: String,
    pub citations: Vec<ComponentId>,
    pub flags: Vec<FlagRef>,
    pub tokens: Tokens,
    /// `offline`, `llm`, or `offline_fallback` (the LLM failed, or its answer failed the
    /// checks after a repair; `fallback_reason` says why).
    pub engine: EngineKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// How the service decided to answer: `normal`, `refuse_answer` or `decline`.
    pub mode: Mode,
    /// The checks on the model's answer and what came of them (empty when no model wrote it).
    pub checks: Vec<CheckReport>,
    /// What the service did about failed checks: `sources_added` (the components an uncited
    /// answer is written from), `repaired` (one repair request),
    /// `refusal_added`, `mistake_named`, `offline` (the offline engine's answer instead).
    pub actions: Vec<String>,
    /// What the learner's stated answer showed, when the message stated one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
    pub session_id: String,
    /// Model calls, including failed ones and repairs.
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
    Delta {
        text: String,
    },
    /// Discard the answer text shown so far: the text that follows is the answer. `reason` is
    /// `repair` (a check failed; a revised answer follows), `fallback` (the offline engine's
    /// answer follows) or `note` (the answer again, with what the service adds in front).
    Replace {
        reason: String,
        message: String,
    },
    Done(Box<TurnResult>),
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
    pub tools: Arc<ToolSet>,
    pub flags: Arc<dyn FlagStore>,
    pub sessions: Arc<dyn AgentStore>,
    pub prompts: Arc<Prompts>,
    /// The model, for tools that generate (`render_format`); `None` offline and in a fallback.
    pub llm: Option<Arc<LlmClient>>,
    /// Answers guarded for this page.
    pub keys: guard::Guarded,
    /// Flags raised by `flag_struggle` this turn.
    pub raised: Mutex<Vec<(Flag, bool)>>,
    /// Every component a tool returned this turn: what a grounded answer may cite.
    pub seen: Mutex<std::collections::BTreeSet<ComponentId>>,
    /// Model calls a tool made (a generated render).
    pub side_calls: llm::Calls,
    /// The courses whose learner data the turn may show; `None`: all.
    pub courses: Option<Vec<String>>,
}

impl TurnCtx {
    /// Whether the turn may show the learner's data on `skill`.
    pub fn may_show(&self, skill: &SkillId) -> bool {
        self.courses.as_ref().is_none_or(|cs| self.lib.skills.get(skill).is_some_and(|s| cs.contains(&s.course)))
    }

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
    /// The tutor's prompt: the same for every turn, so a server can cache it with the tools.
    pub system: String,
    pub system_tokens: usize,
    /// This turn's context: the page, the learner's passport, the mode, the course material
    /// the service retrieved, what the learner's stated answer shows.
    pub context: String,
    pub context_tokens: usize,
    pub grounding: Grounding,
    pub message_tokens: usize,
    pub summary: Option<String>,
    pub history: Vec<Turn>,
    pub message: String,
    pub budget: usize,
    /// Tokens of all the above.
    pub tokens: usize,
}

/// The agent, shared by all turns.
pub struct Agent {
    pub config: Arc<Config>,
    pub retriever: Arc<Retriever>,
    pub passports: Arc<dyn PassportStore>,
    pub flags: Arc<dyn FlagStore>,
    pub sessions: Arc<dyn AgentStore>,
    pub prompts: Arc<Prompts>,
    pub tools: Arc<ToolSet>,
    /// The configured model; `None` when the offline engine answers.
    pub llm: Option<Arc<LlmClient>>,
}

/// The stores a turn reads and writes.
pub struct AgentStores {
    pub passports: Arc<dyn PassportStore>,
    pub flags: Arc<dyn FlagStore>,
    pub sessions: Arc<dyn AgentStore>,
}

impl Agent {
    /// The agent over these stores and retriever, with `llm` when one is configured.
    pub fn new(
        config: Arc<Config>,
        retriever: Arc<Retriever>,
        stores: AgentStores,
        prompts: Arc<Prompts>,
        llm: Option<Arc<LlmClient>>,
    ) -> Self {
        let AgentStores { passports, flags, sessions } = stores;
        Self { config, retriever, passports, flags, sessions, prompts, tools: Arc::new(ToolSet::default()), llm }
    }
}

/// Turns of a session read for a new turn: more than any budget keeps, so the running summary
/// still has the recent questions that did not fit.
pub const HISTORY_TURNS: usize = 80;

/// The longest message taken, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Component ids written `[like-this]` in a text that exist in the library.
pub fn cited_ids(lib: &Library, text: &str) -> Vec<ComponentId> {
    let mut out: Vec<ComponentId> = Vec::new();
    for part in text.split('[').skip(1) {
        if let Some((id, _)) = part.split_once(']')
            && let Ok(cid) = ComponentId::parse(id.trim())
            && lib.components.contains_key(&cid)
            && !out.contains(&cid)
        {
            out.push(cid);
        }
    }
    out
}
