//! `flag_struggle`: the model tells an educator that the learner is struggling with a skill.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Done, Tool, ToolName, skill_id};
use crate::agent::TurnCtx;
use crate::flags::{Evidence, Raise, Severity};
use crate::ids::now_ms;
use crate::passport::name_in_sentence;

/// Arguments of `flag_struggle`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagArgs {
    /// The skill id the learner struggles with.
    pub skill: String,
    /// A short factual reason an educator can act on.
    pub reason: String,
}

/// The result of `flag_struggle`. (No flag id: the model has no use for it, and it would make
/// replays differ per run.)
#[derive(Debug, Clone, Serialize)]
pub struct FlagOutput {
    pub opened: bool,
    pub evidence_items: usize,
}

/// The `flag_struggle` tool.
pub struct FlagStruggle;

impl Tool for FlagStruggle {
    const NAME: ToolName = ToolName::FlagStruggle;
    type Args = FlagArgs;
    type Output = FlagOutput;

    async fn call(&self, ctx: &TurnCtx, a: FlagArgs) -> Result<Done<FlagOutput>, String> {
        let skill = skill_id(ctx, &a.skill)?;
        let reason = a.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err("reason must be 1 to 500 characters".into());
        }
        let raise = Raise {
            learner: ctx.learner.clone(),
            course: ctx.lib.skills.get(&skill).map(|k| k.course.clone()).unwrap_or_default(),
            component: ctx.page.as_ref().map(|p| p.id.clone()),
            severity: Severity::Medium,
            evidence: Evidence {
                rule: "model".into(),
                detail: reason.to_owned(),
                mastery: ctx.state.skills.get(&skill).map(|s| s.mastery),
                excerpt: None,
                at: now_ms(),
            },
            skill: skill.clone(),
        };
        let (f, opened) = ctx.flags.raise(&raise).await.map_err(|e| format!("the flag could not be stored ({e})"))?;
        let summary = format!(
            "{} flag {} on {}",
            if opened { "opened" } else { "added to" },
            f.id,
            name_in_sentence(&ctx.lib, &skill)
        );
        let output = FlagOutput { opened, evidence_items: f.evidence.len() };
        ctx.raised.lock().expect("raised lock").push((f, opened));
        Ok(Done { output, summary, citations: vec![] })
    }
}
