//! Where flags are kept: the [`FlagStore`] trait and its table in the learner database.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row;

use super::{Flag, FlagStatus, Raise, Severity};
use crate::db::{Database, Erased, LearnerData, StoreError, Tx, delete_rows};
use crate::ids::{new_id, now_ms};
use crate::passport::LearnerId;

/// Evidence kept per flag (the oldest are dropped beyond this).
pub const MAX_EVIDENCE: usize = 50;

/// Where flags live. Implementations keep at most one open flag per (learner, skill), also
/// under concurrent raises.
#[async_trait]
pub trait FlagStore: LearnerData {
    /// Opens a flag for (learner, skill), or appends the evidence to the open one (raising its
    /// severity if this is worse). Returns the flag and whether it was opened now.
    async fn raise(&self, raise: &Raise) -> Result<(Flag, bool), StoreError>;
    /// A learner's flags, newest first.
    async fn flags_of(&self, learner: &LearnerId) -> Result<Vec<Flag>, StoreError>;
}

fn flag_from_row(r: &sqlx::any::AnyRow) -> Result<Flag, StoreError> {
    let learner: String = r.try_get("learner")?;
    let corrupt = |message: String| StoreError::Corrupt { learner: learner.clone(), message };
    let evidence: String = r.try_get("evidence")?;
    Ok(Flag {
        id: r.try_get("id")?,
        skill: r.try_get("skill")?,
        course: r.try_get("course")?,
        component: r.try_get("component")?,
        reason: r.try_get("reason")?,
        severity: r.try_get::<String, _>("severity")?.parse::<Severity>().map_err(|e| corrupt(e.0))?,
        status: r.try_get::<String, _>("status")?.parse::<FlagStatus>().map_err(|e| corrupt(e.0))?,
        evidence: serde_json::from_str(&evidence).map_err(|e| corrupt(format!("flag evidence: {e}")))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        learner: LearnerId::parse(&learner).map_err(|e| corrupt(e.0))?,
    })
}

/// The `flags` table in the learner database.
pub struct SqlFlagStore {
    db: Arc<Database>,
}

impl SqlFlagStore {
    /// The store over `db`.
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }
}

const FLAG_COLUMNS: &str =
    "id, learner, skill, course, component, reason, severity, status, evidence, created_at, updated_at";

#[async_trait]
impl FlagStore for SqlFlagStore {
    async fn raise(&self, raise: &Raise) -> Result<(Flag, bool), StoreError> {
        let _writer = self.db.write_guard().await;
        let mut tx = self.db.pool().begin().await?;
        self.db.lock_learner(&mut tx, raise.learner.as_str()).await?;
        let open = sqlx::query(&format!(
            "SELECT {FLAG_COLUMNS} FROM flags WHERE learner = $1 AND skill = $2 AND status = 'open'"
        ))
        .bind(raise.learner.as_str().to_owned())
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
                    id: new_id("flag"),
                    learner: raise.learner.clone(),
                    skill: raise.skill.to_string(),
                    course: raise.course.clone(),
                    component: raise.component.as_ref().map(|c| c.to_string()),
                    reason: raise.evidence.rule.clone(),
                    severity: raise.severity,
                    status: FlagStatus::Open,
                    evidence: vec![raise.evidence.clone()],
                    created_at: now,
                    updated_at: now,
                };
                sqlx::query(&format!(
                    "INSERT INTO flags ({FLAG_COLUMNS}, notes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '[]')"
                ))
                .bind(flag.id.clone())
                .bind(flag.learner.as_str().to_owned())
                .bind(flag.skill.clone())
                .bind(flag.course.clone())
                .bind(flag.component.clone())
                .bind(flag.reason.clone())
                .bind(flag.severity.as_str())
                .bind(flag.status.as_str())
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

    async fn flags_of(&self, learner: &LearnerId) -> Result<Vec<Flag>, StoreError> {
        sqlx::query(&format!("SELECT {FLAG_COLUMNS} FROM flags WHERE learner = $1 ORDER BY updated_at DESC, id"))
            .bind(learner.as_str().to_owned())
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(flag_from_row)
            .collect()
    }
}

#[async_trait]
impl LearnerData for SqlFlagStore {
    async fn erase_in(&self, tx: &mut Tx, learner: &LearnerId, erased: &mut Erased) -> Result<(), StoreError> {
        erased.flags += delete_rows(tx, "flags", learner).await?;
        Ok(())
    }
}
