//! Fitted BKT parameters in the learner database: versions with their provenance
//! ([`ModelStore`]), and the stored answers they are fitted from, as an answer [`Log`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::Row;

use super::evaluate::{Log, LogBuilder};
use crate::content::{BktParams, ComponentId, LearnedParams, Library, SkillId};
use crate::db::{Database, StoreError};

/// One skill of a fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FittedSkill {
    pub params: BktParams,
    pub learners: u64,
    pub answers: u64,
    /// Log-likelihood of the answers under these parameters minus under the ones before.
    pub log_likelihood_gain: f64,
}

/// A stored fit: every fitted skill, with when and from what data it was made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FittedModel {
    pub version: i64,
    /// Milliseconds since the Unix epoch.
    pub fitted_at: i64,
    /// A return to the authored parameters (`tutor passport fit --reset`): no skills.
    pub reset: bool,
    /// The data fitted from: how many answers of how many learners, the newest one's arrival
    /// (ms), and the start of the window (`--since`, ms) if any.
    pub answers: u64,
    pub learners: u64,
    pub newest_answer: i64,
    pub since: Option<i64>,
    pub prior_weight: f64,
    pub mean_accuracy: f64,
    pub seed: u64,
    pub skills: BTreeMap<SkillId, FittedSkill>,
}

impl FittedModel {
    /// The parameters the passport uses from this fit.
    pub fn learned(&self) -> LearnedParams {
        LearnedParams {
            version: self.version,
            skills: self.skills.iter().map(|(s, f)| (s.clone(), f.params)).collect(),
            prior_weight: self.prior_weight,
            mean_accuracy: self.mean_accuracy,
        }
    }
}

/// Which answers a fit reads.
#[derive(Debug, Clone, Default)]
pub struct AnswerFilter {
    /// Only answers given at or after this (ms).
    pub since: Option<i64>,
}

/// Where fitted parameters are kept, and the answers they are fitted from.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// Every stored answer on a component of `lib` as a [`Log`] (an answer is evidence of
    /// each skill its component is tagged with), each learner's answers in passport order;
    /// with the newest answer's arrival (ms).
    async fn answer_log(&self, lib: &Library, filter: &AnswerFilter) -> Result<(Log, i64), StoreError>;
    /// The newest fit, if any was made.
    async fn current_model(&self) -> Result<Option<FittedModel>, StoreError>;
    /// The newest fit's version (0 when none was made): cheap, for polling.
    async fn model_version(&self) -> Result<i64, StoreError>;
    /// Stores `model` as the newest version (its `version` is assigned here) and returns it.
    async fn save_model(&self, model: FittedModel) -> Result<FittedModel, StoreError>;
}

/// The `bkt_fits` and `bkt_params` tables.
pub struct SqlModelStore {
    db: Arc<Database>,
}

impl SqlModelStore {
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }
}

#[async_trait]
impl ModelStore for SqlModelStore {
    async fn answer_log(&self, lib: &Library, filter: &AnswerFilter) -> Result<(Log, i64), StoreError> {
        let mut rows = sqlx::query(
            "SELECT learner, component, success, hints_used, received_at FROM events \
             WHERE verb = 'answered' AND ts >= $1 ORDER BY learner, ts, id",
        )
        .bind(filter.since.unwrap_or(i64::MIN))
        .fetch(self.db.pool());
        let mut log = LogBuilder::default();
        let (mut newest, mut order) = (0i64, 0i64);
        let mut components: BTreeMap<String, Option<Vec<&str>>> = BTreeMap::new();
        while let Some(r) = rows.try_next().await? {
            let component: String = r.try_get("component")?;
            let skills = components.entry(component).or_insert_with_key(|c| {
                let id = ComponentId::parse(c).ok()?;
                lib.components.get(&id).map(|c| c.skills.iter().map(SkillId::as_str).collect())
            });
            let Some(skills) = skills else { continue };
            let learner: String = r.try_get("learner")?;
            let correct = r.try_get::<Option<i64>, _>("success")?.unwrap_or(0) != 0;
            let hints = r.try_get::<Option<i64>, _>("hints_used")?.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
            newest = newest.max(r.try_get("received_at")?);
            order += 1;
            log.push(&learner, skills, correct, hints, order);
        }
        Ok((log.build(), newest))
    }

    async fn current_model(&self) -> Result<Option<FittedModel>, StoreError> {
        let Some(r) = sqlx::query(
            "SELECT version, fitted_at, reset, answers, learners, newest_answer, since, prior_weight, mean_accuracy, seed \
             FROM bkt_fits ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(self.db.pool())
        .await?
        else {
            return Ok(None);
        };
        let version: i64 = r.try_get("version")?;
        let mut skills = BTreeMap::new();
        for p in sqlx::query(
            "SELECT skill, prior, learn, guess, slip, learners, answers, log_likelihood_gain FROM bkt_params WHERE version = $1",
        )
        .bind(version)
        .fetch_all(self.db.pool())
        .await?
        {
            let Ok(skill) = SkillId::parse(&p.try_get::<String, _>("skill")?) else { continue };
            skills.insert(
                skill,
                FittedSkill {
                    params: BktParams {
                        prior: p.try_get("prior")?,
                        learn: p.try_get("learn")?,
                        guess: p.try_get("guess")?,
                        slip: p.try_get("slip")?,
                    },
                    learners: p.try_get::<i64, _>("learners")?.max(0) as u64,
                    answers: p.try_get::<i64, _>("answers")?.max(0) as u64,
                    log_likelihood_gain: p.try_get("log_likelihood_gain")?,
                },
            );
        }
        Ok(Some(FittedModel {
            version,
            fitted_at: r.try_get("fitted_at")?,
            reset: r.try_get::<i64, _>("reset")? != 0,
            answers: r.try_get::<i64, _>("answers")?.max(0) as u64,
            learners: r.try_get::<i64, _>("learners")?.max(0) as u64,
            newest_answer: r.try_get("newest_answer")?,
            since: r.try_get("since")?,
            prior_weight: r.try_get("prior_weight")?,
            mean_accuracy: r.try_get("mean_accuracy")?,
            seed: r.try_get::<i64, _>("seed")? as u64,
            skills,
        }))
    }

    async fn model_version(&self) -> Result<i64, StoreError> {
        let r = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM bkt_fits").fetch_one(self.db.pool()).await?;
        Ok(r.try_get::<i64, _>(0)?)
    }

    async fn save_model(&self, mut model: FittedModel) -> Result<FittedModel, StoreError> {
        let _writer = self.db.write_guard().await;
        let mut tx = self.db.pool().begin().await?;
        let r = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM bkt_fits").fetch_one(&mut *tx).await?;
        model.version = r.try_get::<i64, _>(0)? + 1;
        sqlx::query(
            "INSERT INTO bkt_fits (version, fitted_at, reset, answers, learners, newest_answer, since, prior_weight, \
             mean_accuracy, seed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(model.version)
        .bind(model.fitted_at)
        .bind(i64::from(model.reset))
        .bind(model.answers as i64)
        .bind(model.learners as i64)
        .bind(model.newest_answer)
        .bind(model.since)
        .bind(model.prior_weight)
        .bind(model.mean_accuracy)
        .bind(model.seed as i64)
        .execute(&mut *tx)
        .await?;
        for (skill, f) in &model.skills {
            sqlx::query(
                "INSERT INTO bkt_params (version, skill, prior, learn, guess, slip, learners, answers, log_likelihood_gain) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(model.version)
            .bind(skill.as_str().to_owned())
            .bind(f.params.prior)
            .bind(f.params.learn)
            .bind(f.params.guess)
            .bind(f.params.slip)
            .bind(f.learners as i64)
            .bind(f.answers as i64)
            .bind(f.log_likelihood_gain)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(model)
    }
}
