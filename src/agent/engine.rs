//! The engines that write a turn's answer, behind one trait: the LLM engine (any
//! OpenAI-compatible endpoint) and the offline engine (template-based, the default and the
//! fallback). Both call the same tools and return the same [`Outcome`].

use super::{Conversation, Emitter, TurnCtx};
use crate::content::{ComponentId, text_enum};

text_enum!(
    /// Which engine answered a turn (`offline_fallback`: the LLM failed and the offline engine
    /// answered instead).
    EngineKind, "engine" { Offline => "offline", Llm => "llm", OfflineFallback => "offline_fallback" }
);

/// Token counts of a model's turn, as the endpoint reported them (or as counted here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: usize,
    pub completion: usize,
    /// The largest prompt of one call.
    pub peak_prompt: usize,
}

/// What an engine produced (its text went out through the emitter, which also counts the model
/// calls and their tokens).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Components the engine drew on.
    pub citations: Vec<ComponentId>,
    /// Tool-call markup the model wrote as text that could not be run (it was removed).
    pub unparsed_markup: usize,
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
