//! Sessions, transcripts and the cache of generated renders: the [`AgentStore`] trait and its
//! tables in the learner database.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::content::text_enum;
use crate::db::{Database, Erased, LearnerData, StoreError, Tx, delete_rows};
use crate::ids::{new_id, now_ms};
use crate::passport::LearnerId;

text_enum!(
    /// Who wrote a message of a transcript.
    Role, "transcript role" { Learner => "learner", Tutor => "tutor" }
);

/// A tutoring session of one learner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    pub id: String,
    pub learner: LearnerId,
    pub component: Option<String>,
    /// What earlier, dropped turns were about (kept for long sessions).
    pub summary: String,
    /// Whether it was created by this call.
    pub created: bool,
}

/// One message of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub seq: i64,
    pub role: Role,
    pub content: String,
    /// `o200k_base` tokens of `content`, counted once when stored.
    pub tokens: usize,
    /// For tutor turns: engine, citations, tools called, tokens, flags.
    pub meta: serde_json::Value,
    pub at: i64,
}

/// Where the agent keeps sessions, transcripts and generated renders.
#[async_trait]
pub trait AgentStore: LearnerData {
    /// The learner's session `id`, or a new one when `id` is `None`. `Ok(None)` when `id` is
    /// not a session of this learner (which is all another learner may learn about it).
    async fn open_session(
        &self,
        learner: &LearnerId,
        id: Option<&str>,
        component: Option<&str>,
    ) -> Result<Option<Session>, StoreError>;
    /// The session's newest `limit` turns, oldest first.
    async fn turns(&self, session: &str, limit: usize) -> Result<Vec<Turn>, StoreError>;
    /// The learner's turns written between `from` and `to` (ms), in any session, with their
    /// session id: the newest `limit`, oldest first.
    async fn turns_between(
        &self,
        learner: &LearnerId,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<(String, Turn)>, StoreError>;
    /// Appends turns (their `seq` is assigned here) and updates the session's summary; stores
    /// nothing when the session is gone (its learner was erased while the turn ran).
    async fn append_turns(
        &self,
        session: &str,
        learner: &LearnerId,
        turns: &[Turn],
        summary: &str,
    ) -> Result<(), StoreError>;
    /// A cached render.
    async fn render(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Caches a render.
    async fn put_render(&self, key: &str, content: &str) -> Result<(), StoreError>;
    /// Empties the render cache (the eval suite does, so that each case's model requests do not
    /// depend on the cases run before it).
    async fn forget_renders(&self) -> Result<(), StoreError>;
    /// Deletes the turns written before `before` (ms) and the sessions not used since, returning
    /// (sessions, turns) deleted.
    async fn forget_transcripts_before(&self, before: i64) -> Result<(u64, u64), StoreError>;
    /// LLM tokens `learner` spent on `day` (`YYYY-MM-DD`, UTC).
    async fn llm_tokens(&self, learner: &LearnerId, day: &str) -> Result<u64, StoreError>;
    /// Adds `tokens` to what `learner` spent on `day`.
    async fn add_llm_tokens(&self, learner: &LearnerId, day: &str, tokens: u64) -> Result<(), StoreError>;
}

/// A transcript message from a `turns` row (`seq, role, content, tokens, created_at`), without
/// its meta; `learner` names whose it is in an error.
fn turn_from_row(r: &sqlx::any::AnyRow, learner: &str) -> Result<Turn, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(Turn {
        seq: r.try_get("seq")?,
        role: role.parse::<Role>().map_err(|e| StoreError::Corrupt { learner: learner.to_owned(), message: e.0 })?,
        content: r.try_get("content")?,
        tokens: r.try_get::<i64, _>("tokens")?.max(0) as usize,
        meta: serde_json::Value::Null,
        at: r.try_get("created_at")?,
    })
}

/// The `sessions`, `turns` and `renders` tables in the learner database, written through its
/// relaxed-durability pool.
pub struct SqlAgentStore {
    db: Arc<Database>,
}

impl SqlAgentStore {
    /// The store over `db`.
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }
}

#[async_trait]
impl AgentStore for SqlAgentStore {
    async fn open_session(
        &self,
        learner: &LearnerId,
        id: Option<&str>,
        component: Option<&str>,
    ) -> Result<Option<Session>, StoreError> {
        if let Some(id) = id {
            let row = sqlx::query("SELECT id, learner, component, summary FROM sessions WHERE id = $1")
                .bind(id.to_owned())
                .fetch_optional(self.db.relaxed_pool())
                .await?;
            return Ok(match row {
                Some(r) if r.try_get::<String, _>("learner")? == learner.as_str() => Some(Session {
                    id: r.try_get("id")?,
                    learner: learner.clone(),
                    component: r.try_get("component")?,
                    summary: r.try_get("summary")?,
                    created: false,
                }),
                _ => None,
            });
        }
        let id = new_id("s");
        let now = now_ms();
        let _writer = self.db.write_guard().await;
        sqlx::query("INSERT INTO sessions (id, learner, component, summary, created_at, updated_at) VALUES ($1, $2, $3, '', $4, $5)")
            .bind(id.clone())
            .bind(learner.as_str().to_owned())
            .bind(component.map(str::to_owned))
            .bind(now)
            .bind(now)
            .execute(self.db.relaxed_pool())
            .await?;
        Ok(Some(Session {
            id,
            learner: learner.clone(),
            component: component.map(str::to_owned),
            summary: String::new(),
            created: true,
        }))
    }

    async fn turns(&self, session: &str, limit: usize) -> Result<Vec<Turn>, StoreError> {
        let mut turns = sqlx::query(
            "SELECT seq, role, content, tokens, created_at FROM turns WHERE session_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(session.to_owned())
        .bind(limit as i64)
        .fetch_all(self.db.relaxed_pool())
        .await?
        .iter()
        .map(|r| turn_from_row(r, ""))
        .collect::<Result<Vec<_>, StoreError>>()?;
        turns.reverse();
        Ok(turns)
    }

    async fn turns_between(
        &self,
        learner: &LearnerId,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<(String, Turn)>, StoreError> {
        let mut turns = sqlx::query(
            "SELECT session_id, seq, role, content, tokens, created_at FROM turns \
             WHERE learner = $1 AND created_at >= $2 AND created_at <= $3 ORDER BY created_at DESC, seq DESC LIMIT $4",
        )
        .bind(learner.as_str().to_owned())
        .bind(from)
        .bind(to)
        .bind(limit as i64)
        .fetch_all(self.db.relaxed_pool())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("session_id")?, turn_from_row(r, learner.as_str())?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
        turns.reverse();
        Ok(turns)
    }

    async fn append_turns(
        &self,
        session: &str,
        learner: &LearnerId,
        turns: &[Turn],
        summary: &str,
    ) -> Result<(), StoreError> {
        let _writer = self.db.write_guard().await;
        let mut tx = self.db.relaxed_pool().begin().await?;
        self.db.lock_learner(&mut tx, learner.as_str()).await?;
        // the learner may have been erased while the turn ran: then nothing is stored
        let alive = sqlx::query("SELECT 1 AS one FROM sessions WHERE id = $1 AND learner = $2")
            .bind(session.to_owned())
            .bind(learner.as_str().to_owned())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !alive {
            tx.rollback().await?;
            tracing::info!("session erased during the turn; its transcript is not stored");
            return Ok(());
        }
        let next: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS m FROM turns WHERE session_id = $1")
            .bind(session.to_owned())
            .fetch_one(&mut *tx)
            .await?
            .try_get("m")?;
        let now = now_ms();
        for (i, t) in turns.iter().enumerate() {
            sqlx::query("INSERT INTO turns (session_id, seq, learner, role, content, meta, tokens, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(session.to_owned())
                .bind(next + 1 + i as i64)
                .bind(learner.as_str().to_owned())
                .bind(t.role.as_str())
                .bind(t.content.clone())
                .bind(t.meta.to_string())
                .bind(t.tokens as i64)
                .bind(if t.at > 0 { t.at } else { now })
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE sessions SET summary = $1, updated_at = $2 WHERE id = $3")
            .bind(summary.to_owned())
            .bind(now)
            .bind(session.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn render(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query("SELECT content FROM renders WHERE key = $1")
            .bind(key.to_owned())
            .fetch_optional(self.db.relaxed_pool())
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?)
    }

    async fn put_render(&self, key: &str, content: &str) -> Result<(), StoreError> {
        let _writer = self.db.write_guard().await;
        sqlx::query("INSERT INTO renders (key, content, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING")
            .bind(key.to_owned())
            .bind(content.to_owned())
            .bind(now_ms())
            .execute(self.db.relaxed_pool())
            .await?;
        Ok(())
    }

    async fn forget_renders(&self) -> Result<(), StoreError> {
        let _writer = self.db.write_guard().await;
        sqlx::query("DELETE FROM renders").execute(self.db.relaxed_pool()).await?;
        Ok(())
    }

    async fn forget_transcripts_before(&self, before: i64) -> Result<(u64, u64), StoreError> {
        let _writer = self.db.write_guard().await;
        let mut tx = self.db.relaxed_pool().begin().await?;
        let turns = sqlx::query("DELETE FROM turns WHERE created_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE updated_at < $1 AND NOT EXISTS (SELECT 1 FROM turns WHERE turns.session_id = sessions.id)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((sessions, turns))
    }

    async fn llm_tokens(&self, learner: &LearnerId, day: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT tokens FROM llm_usage WHERE learner = $1 AND day = $2")
            .bind(learner.as_str().to_owned())
            .bind(day.to_owned())
            .fetch_optional(self.db.relaxed_pool())
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?.unwrap_or(0).max(0) as u64)
    }

    async fn add_llm_tokens(&self, learner: &LearnerId, day: &str, tokens: u64) -> Result<(), StoreError> {
        let _writer = self.db.write_guard().await;
        sqlx::query(
            "INSERT INTO llm_usage (learner, day, tokens) VALUES ($1, $2, $3) \
             ON CONFLICT (learner, day) DO UPDATE SET tokens = llm_usage.tokens + excluded.tokens",
        )
        .bind(learner.as_str().to_owned())
        .bind(day.to_owned())
        .bind(tokens.min(i64::MAX as u64) as i64)
        .execute(self.db.relaxed_pool())
        .await?;
        Ok(())
    }
}

#[async_trait]
impl LearnerData for SqlAgentStore {
    async fn erase_in(&self, tx: &mut Tx, learner: &LearnerId, erased: &mut Erased) -> Result<(), StoreError> {
        erased.sessions += delete_rows(tx, "sessions", learner).await?;
        erased.turns += delete_rows(tx, "turns", learner).await?;
        erased.llm_usage_days += delete_rows(tx, "llm_usage", learner).await?;
        Ok(())
    }
}
