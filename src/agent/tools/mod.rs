//! The agent's tools, declared by type: each [`Tool`] has a [`ToolName`], a description in
//! `prompts/tools/<name>.md`, typed arguments whose JSON schema is generated (`schemars`; the
//! doc comments become the descriptions) and a typed output. The [`ToolSet`] owns the schemas
//! and the dispatch: the LLM loop calls a tool by the name a model gave with JSON arguments,
//! the offline engine calls it by type and reads the typed output. Arguments are validated; a
//! bad call becomes an error result the model can read and correct. No result ever holds an
//! answer key: they come from component bodies and the index, where keys never are.

mod flag;
mod lookup;
mod render;
mod retrieve;

use std::any::Any;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use flag::{FlagArgs, FlagOutput, FlagStruggle};
pub use lookup::{LookupMastery, LookupMasteryArgs, MasteryOutput, MasteryRow, page_skills_with_prerequisites};
pub use render::{Material, RenderArgs, RenderFormat, RenderOutput, authored};
pub use retrieve::{Retrieve, RetrieveArgs, RetrieveOutput, Retrieved};

use super::prompts::Prompts;
use super::{Emitter, TurnCtx};
use crate::content::{ComponentId, Format, Level, SkillId, text_enum};

text_enum!(
    /// The tools, in the order they are offered to a model, by the names a model calls them.
    ToolName, "tool" {
        LookupMastery => "lookup_mastery",
        RetrieveComponents => "retrieve_components",
        RenderFormat => "render_format",
        FlagStruggle => "flag_struggle",
    }
);

/// What a tool call produced, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Done<O> {
    pub output: O,
    /// One line for the trace.
    pub summary: String,
    /// Components the result drew on.
    pub citations: Vec<ComponentId>,
}

/// A tool: typed arguments in, typed output out; an `Err` is a message the model can act on.
pub trait Tool: Send + Sync + 'static {
    const NAME: ToolName;
    type Args: DeserializeOwned + Serialize + JsonSchema + Send + Sync;
    type Output: Serialize + Send;

    fn call(
        &self,
        ctx: &TurnCtx,
        args: Self::Args,
    ) -> impl std::future::Future<Output = Result<Done<Self::Output>, String>> + Send;
}

/// What a tool call produced, as the model reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The name the call gave (which may be no tool at all).
    pub name: String,
    /// The tool, when the name is one.
    pub tool: Option<ToolName>,
    pub ok: bool,
    /// The result as the model reads it (JSON).
    pub content: Value,
    /// One line for the trace.
    pub summary: String,
    /// Components the result drew on.
    pub citations: Vec<ComponentId>,
}

impl ToolOutcome {
    fn error(name: &str, tool: Option<ToolName>, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            name: name.into(),
            tool,
            ok: false,
            summary: format!("error: {message}"),
            content: json!({"error": message}),
            citations: vec![],
        }
    }

    fn done<O: Serialize>(tool: ToolName, d: Done<O>) -> Self {
        Self {
            name: tool.as_str().into(),
            tool: Some(tool),
            ok: true,
            content: serde_json::to_value(&d.output).expect("tool output serializes"),
            summary: d.summary,
            citations: d.citations,
        }
    }
}

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: &'static str,
    pub description: String,
    pub parameters: Value,
}

fn schema<T: JsonSchema>() -> Value {
    let mut v = serde_json::to_value(schemars::schema_for!(T)).expect("schema serializes");
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    v
}

fn parse_args<T: DeserializeOwned>(raw: &str) -> Result<T, String> {
    // a model may send no arguments, or `null`, for a tool whose arguments are all optional
    let raw = if raw.trim().is_empty() || raw.trim() == "null" { "{}" } else { raw };
    serde_json::from_str(raw).map_err(|e| format!("invalid arguments: {e}; check the tool's schema and call it again"))
}

/// A tool with its types erased, as the tool set keeps it.
#[async_trait::async_trait]
trait DynTool: Send + Sync {
    fn parameters(&self) -> Value;
    async fn call_json(&self, ctx: &TurnCtx, raw: &str) -> ToolOutcome;
    fn as_any(&self) -> &dyn Any;
}

#[async_trait::async_trait]
impl<T: Tool> DynTool for T {
    fn parameters(&self) -> Value {
        schema::<T::Args>()
    }

    async fn call_json(&self, ctx: &TurnCtx, raw: &str) -> ToolOutcome {
        let result = match parse_args::<T::Args>(raw) {
            Ok(a) => self.call(ctx, a).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(d) => ToolOutcome::done(T::NAME, d),
            Err(e) => ToolOutcome::error(T::NAME.as_str(), Some(T::NAME), e),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The tools of the agent, in the order they are offered.
pub struct ToolSet {
    tools: BTreeMap<ToolName, Box<dyn DynTool>>,
}

impl Default for ToolSet {
    fn default() -> Self {
        let mut tools: BTreeMap<ToolName, Box<dyn DynTool>> = BTreeMap::new();
        tools.insert(ToolName::LookupMastery, Box::new(LookupMastery));
        tools.insert(ToolName::RetrieveComponents, Box::new(Retrieve));
        tools.insert(ToolName::RenderFormat, Box::new(RenderFormat));
        tools.insert(ToolName::FlagStruggle, Box::new(FlagStruggle));
        Self { tools }
    }
}

impl ToolSet {
    /// The tools with their schemas and descriptions (from `prompts/tools/`).
    pub fn definitions(&self, prompts: &Prompts) -> Vec<ToolDef> {
        self.tools
            .iter()
            .map(|(name, t)| ToolDef {
                name: name.as_str(),
                description: prompts.get(&format!("tools/{name}")).text.clone(),
                parameters: t.parameters(),
            })
            .collect()
    }

    /// Runs a call a model made: `name` as it gave it, `raw_args` as JSON text. An unknown
    /// tool or bad arguments come back as an error outcome. (A `tracing` span per call.)
    #[tracing::instrument(skip(self, ctx, raw_args), fields(ok))]
    pub async fn call_json(&self, ctx: &TurnCtx, name: &str, raw_args: &str) -> ToolOutcome {
        let outcome = match name.parse::<ToolName>().ok().and_then(|t| self.tools.get(&t)) {
            Some(t) => t.call_json(ctx, raw_args).await,
            None => {
                let names: Vec<&str> = self.tools.keys().map(|t| t.as_str()).collect();
                ToolOutcome::error(name, None, format!("unknown tool '{name}'; the tools are {}", names.join(", ")))
            }
        };
        tracing::Span::current().record("ok", outcome.ok);
        tracing::debug!(summary = %outcome.summary, "tool call");
        let tool = outcome.tool.map_or("unknown", |t| t.as_str());
        let ok = if outcome.ok { "ok" } else { "error" };
        crate::metrics::inc("tutor_tool_calls_total", &[("tool", tool), ("by", "model"), ("outcome", ok)]);
        ctx.seen.lock().expect("seen lock").extend(outcome.citations.iter().cloned());
        outcome
    }

    /// Runs `T` with typed arguments, shows the call in the trace, and returns the typed output
    /// (`None` when the tool failed; its error is in the trace).
    #[tracing::instrument(skip_all, fields(name = %T::NAME, ok))]
    pub async fn call<T: Tool>(&self, ctx: &TurnCtx, emit: &mut Emitter, args: T::Args) -> Option<Done<T::Output>> {
        let raw = serde_json::to_string(&args).expect("tool arguments serialize");
        let tool = self.tools.get(&T::NAME).and_then(|t| t.as_any().downcast_ref::<T>())?;
        let result = tool.call(ctx, args).await;
        tracing::Span::current().record("ok", result.is_ok());
        let ok = if result.is_ok() { "ok" } else { "error" };
        crate::metrics::inc(
            "tutor_tool_calls_total",
            &[("tool", T::NAME.as_str()), ("by", "service"), ("outcome", ok)],
        );
        let (trace, done) = match result {
            Ok(d) => {
                ctx.seen.lock().expect("seen lock").extend(d.citations.iter().cloned());
                let shown = ToolOutcome {
                    name: T::NAME.as_str().into(),
                    tool: Some(T::NAME),
                    ok: true,
                    content: Value::Null,
                    summary: d.summary.clone(),
                    citations: d.citations.clone(),
                };
                (shown, Some(d))
            }
            Err(e) => (ToolOutcome::error(T::NAME.as_str(), Some(T::NAME), e), None),
        };
        emit.tool(&trace, &raw, false).await;
        done
    }
}

/// A skill id the library has, or an error naming the page's skills.
fn skill_id(ctx: &TurnCtx, raw: &str) -> Result<SkillId, String> {
    SkillId::parse(raw)
        .ok()
        .filter(|s| ctx.lib.skills.contains_key(s))
        .ok_or_else(|| format!("unknown skill '{raw}'; the page's skills are: {}", ctx.skill_list()))
}

fn parse_level(raw: &str) -> Result<Level, String> {
    raw.parse::<Level>().map_err(|e| e.to_string())
}

fn parse_format(raw: &str) -> Result<Format, String> {
    raw.parse::<Format>().map_err(|e| e.to_string())
}
