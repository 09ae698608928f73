//! Struggle flags: the rules that notice a learner struggling (the same for every engine, and
//! independent of any model), and where flags are kept. At most one open flag per (learner,
//! skill); new evidence is appended to it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::content::{ComponentId, Library, SkillId};
use crate::passport::{LearnerState, SqlStore, StoreError, name_in_sentence, normalize_answer, now_ms};

/// How serious a flag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "high" => Severity::High,
            "medium" => Severity::Medium,
            _ => Severity::Low,
        }
    }
}

/// One piece of evidence behind a flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// `wrong_streak`, `falling_mastery`, `heavy_hints`, `confusion`, `repeated_question`,
    /// `model` (the tutor called `flag_struggle`).
    pub rule: String,
    /// A sentence an educator can read.
    pub detail: String,
    /// Mastery of the skill when this was seen.
    pub mastery: Option<f64>,
    /// The learner's words, when the evidence is a message.
    pub excerpt: Option<String>,
    pub at: i64,
}

/// A request to open a flag or add to the open one.
#[derive(Debug, Clone, PartialEq)]
pub struct Raise {
    pub learner: String,
    pub skill: SkillId,
    pub course: String,
    pub component: Option<ComponentId>,
    pub severity: Severity,
    pub evidence: Evidence,
}

/// A stored flag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    pub id: String,
    pub learner: String,
    pub skill: String,
    pub course: String,
    pub component: Option<String>,
    /// The rule of the first evidence.
    pub reason: String,
    pub severity: Severity,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub evidence: Vec<Evidence>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Evidence kept per flag (the oldest are dropped beyond this).
pub const MAX_EVIDENCE: usize = 50;

/// Where flags live.
#[async_trait]
pub trait FlagStore: Send + Sync {
    /// Opens a flag for (learner, skill), or appends the evidence to the open one (raising its
    /// severity if this is worse). Returns the flag and whether it was opened now.
    async fn raise(&self, raise: &Raise) -> Result<(Flag, bool), StoreError>;
    /// A learner's flags, newest first.
    async fn flags_of(&self, learner: &str) -> Result<Vec<Flag>, StoreError>;
}

fn flag_from_row(r: &sqlx::any::AnyRow) -> Result<Flag, StoreError> {
    let evidence: String = r.try_get("evidence")?;
    let learner: String = r.try_get("learner")?;
    Ok(Flag {
        id: r.try_get("id")?,
        skill: r.try_get("skill")?,
        course: r.try_get("course")?,
        component: r.try_get("component")?,
        reason: r.try_get("reason")?,
        severity: Severity::parse(&r.try_get::<String, _>("severity")?),
        status: r.try_get("status")?,
        evidence: serde_json::from_str(&evidence)
            .map_err(|e| StoreError::Corrupt { learner: learner.clone(), message: format!("flag evidence: {e}") })?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        learner,
    })
}

const FLAG_COLUMNS: &str =
    "id, learner, skill, course, component, reason, severity, status, evidence, created_at, updated_at";

#[async_trait]
impl FlagStore for SqlStore {
    async fn raise(&self, raise: &Raise) -> Result<(Flag, bool), StoreError> {
        let _writer = self.write_guard().await;
        let mut tx = self.pool().begin().await?;
        self.lock_learner(&mut tx, &raise.learner).await?;
        let open = sqlx::query(&format!(
            "SELECT {FLAG_COLUMNS} FROM flags WHERE learner = $1 AND skill = $2 AND status = 'open'"
        ))
        .bind(raise.learner.clone())
        .bind(raise.skill.as_str().to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        let now = now_ms();
        let (flag, created) = match open {
            Some(row) => {
                let mut flag = flag_from_row(&row)?;
                flag.evidence.push(raise.evidence.clone());
                if flag.evidence.len() > MAX_EVIDENCE {
                    flag.evidence.remove(0);
                }
                flag.severity = flag.severity.max(raise.severity);
                flag.updated_at = now;
                sqlx::query("UPDATE flags SET evidence = $1, severity = $2, updated_at = $3 WHERE id = $4")
                    .bind(serde_json::to_string(&flag.evidence).expect("evidence serializes"))
                    .bind(flag.severity.as_str())
                    .bind(now)
                    .bind(flag.id.clone())
                    .execute(&mut *tx)
                    .await?;
                (flag, false)
            }
            None => {
                let flag = Flag {
                    id: flag_id(&raise.learner, raise.skill.as_str(), now),
                    learner: raise.learner.clone(),
                    skill: raise.skill.to_string(),
                    course: raise.course.clone(),
                    component: raise.component.as_ref().map(|c| c.to_string()),
                    reason: raise.evidence.rule.clone(),
                    severity: raise.severity,
                    status: "open".into(),
                    evidence: vec![raise.evidence.clone()],
                    created_at: now,
                    updated_at: now,
                };
                sqlx::query(&format!(
                    "INSERT INTO flags ({FLAG_COLUMNS}, notes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '[]')"
                ))
                .bind(flag.id.clone())
                .bind(flag.learner.clone())
                .bind(flag.skill.clone())
                .bind(flag.course.clone())
                .bind(flag.component.clone())
                .bind(flag.reason.clone())
                .bind(flag.severity.as_str())
                .bind(flag.status.clone())
                .bind(serde_json::to_string(&flag.evidence).expect("evidence serializes"))
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                (flag, true)
            }
        };
        tx.commit().await?;
        Ok((flag, created))
    }

    async fn flags_of(&self, learner: &str) -> Result<Vec<Flag>, StoreError> {
        sqlx::query(&format!("SELECT {FLAG_COLUMNS} FROM flags WHERE learner = $1 ORDER BY updated_at DESC, id"))
            .bind(learner.to_owned())
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(flag_from_row)
            .collect()
    }
}

fn flag_id(learner: &str, skill: &str, now: i64) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{learner}\n{skill}\n{now}\n{:?}", std::time::Instant::now()));
    format!("flag-{}", h.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>())
}

/// Thresholds of the struggle rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlagConfig {
    /// Wrong answers in a row on a skill.
    pub wrong_streak: u32,
    /// Mastery drop over the recent answers (with at least 3 answers).
    pub falling_by: f64,
    /// Hints per answer, with at least 3 answers.
    pub hints_per_answer: f64,
}

impl Default for FlagConfig {
    fn default() -> Self {
        Self { wrong_streak: 3, falling_by: 0.2, hints_per_answer: 2.0 }
    }
}

/// Phrases that say the learner is lost.
const CONFUSION: &[&str] = &[
    "i don't get",
    "i dont get",
    "i don't understand",
    "i dont understand",
    "i do not understand",
    "doesn't make sense",
    "does not make sense",
    "makes no sense",
    "i'm confused",
    "im confused",
    "i am confused",
    "so confused",
    "i'm lost",
    "i am lost",
    "no idea",
    "still don't",
    "still dont",
    "i give up",
];

/// What the rules look at for one turn or one batch of events.
pub struct Observation<'a> {
    pub learner: &'a str,
    pub state: &'a LearnerState,
    /// The skills in view (the page's, or those the events touched).
    pub skills: &'a [SkillId],
    pub component: Option<&'a ComponentId>,
    /// The learner's message this turn, and their earlier messages in the session.
    pub message: Option<&'a str>,
    pub earlier: &'a [String],
    /// Whether new answers arrived, so the rules on answers (wrong streak, falling mastery,
    /// hints) look again. A chat turn brings no answers: re-reading the same ones every turn
    /// would pile up the same evidence, and reopen a flag an educator just resolved.
    pub new_answers: bool,
}

/// Applies the rules; one [`Raise`] per rule that fires, per skill.
pub fn detect(lib: &Library, cfg: &FlagConfig, o: &Observation<'_>) -> Vec<Raise> {
    let now = now_ms();
    let mut out = Vec::new();
    let mut push = |skill: &SkillId,
                    severity: Severity,
                    rule: &str,
                    detail: String,
                    mastery: Option<f64>,
                    excerpt: Option<String>| {
        out.push(Raise {
            learner: o.learner.to_owned(),
            skill: skill.clone(),
            course: lib.skills.get(skill).map(|s| s.course.clone()).unwrap_or_default(),
            component: o.component.cloned(),
            severity,
            evidence: Evidence { rule: rule.into(), detail, mastery, excerpt, at: now },
        });
    };
    for skill in o.skills.iter().filter(|_| o.new_answers) {
        let Some(st) = o.state.skills.get(skill) else {
            continue;
        };
        let name = name_in_sentence(lib, skill);
        let streak = st.recent.iter().rev().take_while(|c| !**c).count() as u32;
        if streak >= cfg.wrong_streak {
            let sev = if streak >= cfg.wrong_streak + 2 { Severity::High } else { Severity::Medium };
            push(
                skill,
                sev,
                "wrong_streak",
                format!("{streak} wrong answers in a row on {name}"),
                Some(st.mastery),
                None,
            );
        }
        if st.evidence >= 3 && st.trend() <= -cfg.falling_by {
            push(
                skill,
                Severity::Medium,
                "falling_mastery",
                format!("mastery of {name} fell by {:.2} over the recent answers, to {:.2}", -st.trend(), st.mastery),
                Some(st.mastery),
                None,
            );
        }
        if st.evidence >= 3 && f64::from(st.hints_used) / f64::from(st.evidence) >= cfg.hints_per_answer {
            push(
                skill,
                Severity::Low,
                "heavy_hints",
                format!("{} hints over {} answers on {name}", st.hints_used, st.evidence),
                Some(st.mastery),
                None,
            );
        }
    }
    if let (Some(msg), Some(skill)) = (o.message, o.skills.first()) {
        let lower = msg.to_lowercase().replace('’', "'");
        let mastery = o.state.skills.get(skill).map(|s| s.mastery);
        let excerpt: String = msg.chars().take(280).collect();
        if CONFUSION.iter().any(|p| lower.contains(p)) {
            push(
                skill,
                Severity::Low,
                "confusion",
                "the learner says they are confused".into(),
                mastery,
                Some(excerpt.clone()),
            );
        }
        let asked = normalize_answer(msg);
        if o.earlier.iter().any(|e| normalize_answer(e) == asked) {
            push(
                skill,
                Severity::Low,
                "repeated_question",
                "the learner asked the same question again".into(),
                mastery,
                Some(excerpt),
            );
        }
    }
    out
}
