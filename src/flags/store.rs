//! Where flags are kept: the [`FlagStore`] trait and its table in the learner database.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row;

use super::{Change, ChangeRequest, Flag, FlagPage, FlagQuery, FlagStatus, Raise, Severity, Transition};
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
    /// [`FlagStore::raise`] for several, in one transaction (one durable commit for the flags
    /// a batch of answers raises).
    async fn raise_all(&self, raises: &[Raise]) -> Result<Vec<(Flag, bool)>, StoreError>;
    /// A learner's flags, newest first.
    async fn flags_of(&self, learner: &LearnerId) -> Result<Vec<Flag>, StoreError>;
    /// A page of the flags that match, most severe first, then oldest first; with the counts
    /// by status of the flags that match all but the status filter.
    async fn list(&self, query: &FlagQuery) -> Result<FlagPage, StoreError>;
    /// One flag.
    async fn get(&self, id: &str) -> Result<Option<Flag>, StoreError>;
    /// A flag's review history, oldest first.
    async fn history(&self, id: &str) -> Result<Vec<Change>, StoreError>;
    /// Moves a flag to `to`, if it is in a status it may come from; a flag already there is
    /// left as it is (`changed` is false), and so is one another reviewer moved first.
    async fn change(&self, id: &str, to: FlagStatus, request: &ChangeRequest) -> Result<Transition, StoreError>;
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
        Ok(self.raise_all(std::slice::from_ref(raise)).await?.remove(0))
    }

    async fn raise_all(&self, raises: &[Raise]) -> Result<Vec<(Flag, bool)>, StoreError> {
        if raises.is_empty() {
            return Ok(Vec::new());
        }
        let _writer = self.db.write_guard().await;
        let mut tx = self.db.pool().begin().await?;
        // learners locked in id order, so two calls cannot deadlock
        let mut order: Vec<usize> = (0..raises.len()).collect();
        order.sort_by(|a, b| raises[*a].learner.cmp(&raises[*b].learner));
        let mut out: Vec<Option<(Flag, bool)>> = vec![None; raises.len()];
        for i in order {
            self.db.lock_learner(&mut tx, raises[i].learner.as_str()).await?;
            out[i] = Some(raise_in(&mut tx, &raises[i]).await?);
        }
        tx.commit().await?;
        Ok(out.into_iter().flatten().collect())
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

    async fn list(&self, q: &FlagQuery) -> Result<FlagPage, StoreError> {
        let (mut clause, values) = Self::filter(q, true);
        let mut n = values.len();
        let since = q.since;
        if since.is_some() {
            n += 1;
            clause.push_str(&format!(" AND created_at >= ${n}"));
        }
        let after = q.after.as_deref().and_then(parse_cursor);
        if after.is_some() {
            clause.push_str(&format!(
                " AND ({SEVERITY_RANK} > ${a} OR ({SEVERITY_RANK} = ${a} AND (created_at > ${b} OR (created_at = ${b} AND id > ${c}))))",
                a = n + 1,
                b = n + 2,
                c = n + 3
            ));
        }
        let limit = q.limit.clamp(1, 200);
        let sql = format!(
            "SELECT {FLAG_COLUMNS} FROM flags WHERE {clause} ORDER BY {SEVERITY_RANK}, created_at, id LIMIT {}",
            limit + 1
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for v in &values {
            query = query.bind(v.clone());
        }
        if let Some(s) = since {
            query = query.bind(s);
        }
        if let Some((r, c, id)) = after {
            query = query.bind(r).bind(c).bind(id);
        }
        let mut flags: Vec<Flag> =
            query.fetch_all(self.db.pool()).await?.iter().map(flag_from_row).collect::<Result<_, _>>()?;
        let next = (flags.len() > limit).then(|| {
            flags.truncate(limit);
            flags.last().map(cursor_of)
        });
        // counts by status, over the same filters but the status (and the cursor)
        let (count_clause, count_values) = Self::filter(q, false);
        let mut count_clause = count_clause;
        if q.since.is_some() {
            count_clause.push_str(&format!(" AND created_at >= ${}", count_values.len() + 1));
        }
        let sql = format!("SELECT status, COUNT(*) AS n FROM flags WHERE {count_clause} GROUP BY status");
        let mut query = sqlx::query(&sql).persistent(false);
        for v in &count_values {
            query = query.bind(v.clone());
        }
        if let Some(s) = q.since {
            query = query.bind(s);
        }
        let mut counts = std::collections::BTreeMap::new();
        for st in FlagStatus::ALL {
            counts.insert(*st, 0u64);
        }
        for row in query.fetch_all(self.db.pool()).await? {
            let status: String = row.try_get("status")?;
            if let Ok(st) = status.parse::<FlagStatus>() {
                counts.insert(st, row.try_get::<i64, _>("n")?.max(0) as u64);
            }
        }
        Ok(FlagPage { flags, next_cursor: next.flatten(), counts })
    }

    async fn get(&self, id: &str) -> Result<Option<Flag>, StoreError> {
        sqlx::query(&format!("SELECT {FLAG_COLUMNS} FROM flags WHERE id = $1"))
            .bind(id.to_owned())
            .fetch_optional(self.db.pool())
            .await?
            .as_ref()
            .map(flag_from_row)
            .transpose()
    }

    async fn history(&self, id: &str) -> Result<Vec<Change>, StoreError> {
        sqlx::query(
            "SELECT at, actor, action, status, outcome, note FROM flag_history WHERE flag_id = $1 ORDER BY at, action",
        )
        .bind(id.to_owned())
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(|r| {
            let corrupt = |message: String| StoreError::Corrupt { learner: String::new(), message };
            Ok(Change {
                at: r.try_get("at")?,
                by: r.try_get("actor")?,
                action: r.try_get("action")?,
                status: r.try_get::<String, _>("status")?.parse::<FlagStatus>().map_err(|e| corrupt(e.0))?,
                outcome: r.try_get("outcome")?,
                note: r.try_get("note")?,
            })
        })
        .collect()
    }

    async fn change(&self, id: &str, to: FlagStatus, req: &ChangeRequest) -> Result<Transition, StoreError> {
        let Some(current) = self.get(id).await? else {
            return Ok(Transition::NotFound);
        };
        let _writer = self.db.write_guard().await;
        let mut tx = self.db.pool().begin().await?;
        self.db.lock_learner(&mut tx, current.learner.as_str()).await?;
        // read again under the learner's lock: another reviewer may have moved it
        let row = sqlx::query(&format!("SELECT {FLAG_COLUMNS} FROM flags WHERE id = $1"))
            .bind(id.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(mut flag) = row.as_ref().map(flag_from_row).transpose()? else {
            return Ok(Transition::NotFound);
        };
        if flag.status == to {
            return Ok(Transition::Done { flag, changed: false });
        }
        let allowed = match to {
            FlagStatus::Acknowledged => flag.status == FlagStatus::Open,
            FlagStatus::Resolved => true,
            FlagStatus::Open => true,
        };
        if !allowed {
            return Ok(Transition::Refused { flag });
        }
        if matches!(to, FlagStatus::Open | FlagStatus::Acknowledged) {
            // one active flag per (learner, skill)
            let other = sqlx::query(
                "SELECT id FROM flags WHERE learner = $1 AND skill = $2 AND status IN ('open', 'acknowledged') AND id <> $3",
            )
            .bind(flag.learner.as_str().to_owned())
            .bind(flag.skill.clone())
            .bind(flag.id.clone())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(other) = other {
                return Ok(Transition::Active { flag, other: other.try_get(0)? });
            }
        }
        let now = now_ms();
        sqlx::query("UPDATE flags SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(to.as_str())
            .bind(now)
            .bind(flag.id.clone())
            .execute(&mut *tx)
            .await?;
        flag.status = to;
        flag.updated_at = now;
        let action = match to {
            FlagStatus::Open => "reopened",
            FlagStatus::Acknowledged => "acknowledged",
            FlagStatus::Resolved => "resolved",
        };
        add_history(&mut tx, &flag, &req.by, action, req.outcome.map(|o| o.as_str()), req.note.as_deref(), now).await?;
        tx.commit().await?;
        Ok(Transition::Done { flag, changed: true })
    }
}

#[async_trait]
impl LearnerData for SqlFlagStore {
    async fn erase_in(&self, tx: &mut Tx, learner: &LearnerId, erased: &mut Erased) -> Result<(), StoreError> {
        erased.flags += delete_rows(tx, "flags", learner).await?;
        delete_rows(tx, "flag_history", learner).await?;
        Ok(())
    }
}

/// Severity as a sort key: the most severe first.
const SEVERITY_RANK: &str = "CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END";

fn rank(s: Severity) -> i64 {
    match s {
        Severity::High => 0,
        Severity::Medium => 1,
        Severity::Low => 2,
    }
}

/// The list's order key of a flag, as a cursor: `rank.created_at.id`.
fn cursor_of(f: &Flag) -> String {
    format!("{}.{}.{}", rank(f.severity), f.created_at, f.id)
}

fn parse_cursor(c: &str) -> Option<(i64, i64, String)> {
    let mut parts = c.splitn(3, '.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.to_owned()))
}

async fn add_history(
    tx: &mut Tx,
    flag: &Flag,
    actor: &str,
    action: &str,
    outcome: Option<&str>,
    note: Option<&str>,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO flag_history (flag_id, learner, at, actor, action, status, outcome, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .persistent(false)
    .bind(flag.id.clone())
    .bind(flag.learner.as_str().to_owned())
    .bind(at)
    .bind(actor.to_owned())
    .bind(action.to_owned())
    .bind(flag.status.as_str())
    .bind(outcome.map(str::to_owned))
    .bind(note.map(str::to_owned))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqlFlagStore {
    /// The WHERE clause and its values for a query, without the status filter when `status`
    /// is false (for the counts).
    fn filter(q: &FlagQuery, status: bool) -> (String, Vec<String>) {
        let mut clauses = Vec::new();
        let mut values: Vec<String> = Vec::new();
        // the courses the caller may see: none gives nothing
        if q.courses.is_empty() {
            clauses.push("1 = 0".into());
        } else {
            let mut ins = Vec::new();
            for c in &q.courses {
                values.push(c.clone());
                ins.push(format!("${}", values.len()));
            }
            clauses.push(format!("course IN ({})", ins.join(", ")));
        }
        let mut push = |clause: &str, value: String, clauses: &mut Vec<String>| {
            values.push(value);
            clauses.push(clause.replace('?', &format!("${}", values.len())));
        };
        if let Some(skill) = &q.skill {
            push("skill = ?", skill.clone(), &mut clauses);
        }
        if let Some(component) = &q.component {
            push("component = ?", component.clone(), &mut clauses);
        }
        if let Some(sev) = q.severity {
            push("severity = ?", sev.as_str().to_owned(), &mut clauses);
        }
        if status && let Some(st) = q.status {
            push("status = ?", st.as_str().to_owned(), &mut clauses);
        }
        (clauses.join(" AND "), values)
    }
}

/// Raises one flag inside `tx` (the learner locked): a new open flag, or the evidence added to
/// the open or acknowledged one of the same learner and skill.
async fn raise_in(tx: &mut Tx, raise: &Raise) -> Result<(Flag, bool), StoreError> {
    let open = sqlx::query(&format!(
        "SELECT {FLAG_COLUMNS} FROM flags WHERE learner = $1 AND skill = $2 AND status IN ('open', 'acknowledged')"
    ))
    .bind(raise.learner.as_str().to_owned())
    .bind(raise.skill.as_str().to_owned())
    .fetch_optional(&mut **tx)
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
                .execute(&mut **tx)
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
            .execute(&mut **tx)
            .await?;
            add_history(tx, &flag, "tutor", "opened", None, Some(&raise.evidence.detail), now).await?;
            (flag, true)
        }
    };
    Ok((flag, created))
}
