//! What a turn streams: answer text through the answer-key guard, and tool traces.

use tokio::sync::mpsc;

use super::engine::Usage;
use super::guard::Guarded;
use super::tools::ToolOutcome;
use super::{ToolTrace, TurnEvent, guard};

/// Streams deltas (through the answer-key guard) and tool traces, and keeps the answer.
pub struct Emitter {
    tx: Option<mpsc::Sender<TurnEvent>>,
    redactor: guard::Redactor,
    keys: Guarded,
    pub(crate) answer: String,
    pub(crate) trace: Vec<ToolTrace>,
    /// Model calls made this turn, whatever became of them.
    pub(crate) model_calls: u32,
    /// Their tokens (the endpoint's counts when it reports them).
    pub(crate) usage: Usage,
}

impl Emitter {
    pub(crate) fn new(tx: Option<mpsc::Sender<TurnEvent>>, keys: Guarded) -> Self {
        Self {
            tx,
            redactor: guard::Redactor::new(keys.clone()),
            keys,
            answer: String::new(),
            trace: Vec::new(),
            model_calls: 0,
            usage: Usage::default(),
        }
    }

    /// Answers the guard withheld from the text since the last [`Emitter::replace`].
    pub fn withheld(&self) -> usize {
        self.redactor.withheld()
    }

    /// Drops the text the guard holds back, unsent (it may be the start of an answer), and
    /// starts the guard afresh with `keys`.
    pub(crate) fn discard_held(&mut self, keys: Guarded) {
        self.redactor = guard::Redactor::new(keys);
    }

    /// Tells the client to discard the answer shown so far (`reason` says why); the text
    /// streamed after this is the answer. The guard starts afresh with `keys`.
    pub(crate) async fn replace(&mut self, reason: &str, message: &str, keys: Guarded) {
        self.discard_held(keys);
        self.answer.clear();
        self.send(TurnEvent::Replace { reason: reason.to_owned(), message: message.to_owned() }).await;
    }

    pub(crate) async fn send(&self, e: TurnEvent) {
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

    /// Sends what the guard still holds.
    pub(crate) async fn flush(&mut self) {
        let rest = self.redactor.finish();
        if !rest.is_empty() {
            self.answer.push_str(&rest);
            self.send(TurnEvent::Delta { text: rest }).await;
        }
    }

    /// Whether any answer text went out.
    pub fn has_answer(&self) -> bool {
        !self.answer.is_empty()
    }

    /// From here on the text is the course's own (the offline engine): it goes out as the
    /// authors wrote it, even where an explanation works the same numbers as a sibling
    /// exercise; only the answers of the exercise the learner is on stay guarded. Text a model
    /// wrote is guarded against every exercise on the page's skills.
    pub(crate) async fn course_text_from_here(&mut self, keys: Guarded) {
        self.flush().await;
        self.redactor = guard::Redactor::new(keys);
    }

    /// A tool call and its result; `by_model` when a model made the call.
    pub async fn tool(&mut self, o: &ToolOutcome, raw_args: &str, by_model: bool) {
        let short = |s: &str| -> String {
            let s = guard::redact(s, &self.keys);
            if s.chars().count() > 160 { format!("{}…", s.chars().take(160).collect::<String>()) } else { s }
        };
        let t = ToolTrace {
            // a model may name a tool anything: only the real names go out as they are
            name: o.tool.map_or_else(|| "unknown_tool".into(), |t| t.as_str().to_owned()),
            by: if by_model { "model" } else { "service" },
            ok: o.ok,
            arguments: short(raw_args),
            result: if o.tool.is_some() { short(&o.summary) } else { "error: unknown tool".into() },
            raw_arguments: guard::redact(raw_args, &self.keys),
        };
        self.trace.push(t.clone());
        self.send(TurnEvent::Tool(t)).await;
    }
}
