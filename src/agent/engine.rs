//! The engines that write a turn's answer, behind one trait: the LLM engine (any
//! OpenAI-compatible endpoint) and the offline engine (template-based, the default and the
//! fallback). Both call the same tools and return the same [`Outcome`].

use serde::Serialize;

use super::{Conversation, Emitter, TurnCtx};
use crate::content::ComponentId;

/// Which engine answered a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    Offline,
    Llm,
    /// The LLM failed and the offline engine answered instead.
    OfflineFallback,
}

impl EngineKind {
    /// The engine as reported.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Offline => "offline",
            EngineKind::Llm => "llm",
            EngineKind::OfflineFallback => "offline_fallback",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Token counts of a model's turn, as the endpoint reported them (or as counted here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: usize,
    pub completion: usize,
    /// The largest prompt of one call.
    pub peak_prompt: usize,
}

/// What an engine produced (its text went out through the emitter).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Components the engine drew on.
    pub citations: Vec<ComponentId>,
    /// Model usage; `None` for the offline engine.
    pub usage: Option<Usage>,
    pub model_calls: u32,
    /// The engine declined: the course does not cover the question.
    pub declined: bool,
}

/// Why an engine could not answer.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct EngineFailure {
    /// What the learner is told: the kind of failure, never an endpoint's own message.
    pub reason: String,
    /// The full cause, for the logs.
    pub detail: String,
}

/// An engine: answers the conversation in `ctx`, streaming through `emit`.
#[async_trait::async_trait]
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;
    async fn answer(&self, ctx: &TurnCtx, convo: &Conversation, emit: &mut Emitter) -> Result<Outcome, EngineFailure>;
}
