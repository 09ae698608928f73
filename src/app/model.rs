//! Where a skill's BKT parameters come from: the authored ones (or the defaults), until
//! `tutor passport fit` learns them from the stored answers. The newest fit is attached to
//! every library the application serves ([`crate::content::Library::bkt`] reads it); a running
//! server picks up a fit made by another process within seconds, and passports computed with
//! older parameters are replayed in the background, learner by learner, while reads go on.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::App;
use crate::content::{BktParams, LearnedParams, Library, SkillId};
use crate::db::StoreError;
use crate::ids::now_ms;
use crate::passport::evaluate::{self, Predictor, choose, fit_all, predict, score};
use crate::passport::fit::{FitOptions, Params};
use crate::passport::{AnswerFilter, FittedModel, FittedSkill};

/// What to fit.
#[derive(Debug, Clone, Default)]
pub struct FitRequest {
    /// Only the skills of these courses (all when empty).
    pub courses: Vec<String>,
    /// Only these skills (all when empty).
    pub skills: Vec<SkillId>,
    /// Only answers given at or after this (ms).
    pub since: Option<i64>,
    pub seed: u64,
}

/// Where a skill's parameters come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Fitted,
    Authored,
    Default,
}

/// One skill of a fit's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkillReport {
    pub skill: SkillId,
    pub learners: usize,
    pub answers: usize,
    pub before: BktParams,
    pub after: BktParams,
    pub source: Source,
    /// Log-likelihood gain of the fitted parameters over `before` (fitted skills only).
    pub log_likelihood_gain: Option<f64>,
    /// Why a skill kept its parameters.
    pub note: Option<String>,
}

/// What a fit did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitReport {
    pub version: i64,
    pub answers: u64,
    pub learners: u64,
    pub skills: Vec<SkillReport>,
    /// The individualised prior's weight chosen on the data (0: it did not help).
    pub prior_weight: f64,
    pub mean_accuracy: f64,
}

impl App {
    /// The fitted parameters served now.
    pub fn learned(&self) -> LearnedParams {
        self.learned.read().expect("learned lock").clone()
    }

    /// Serves `learned` from now on, with the content served now.
    fn serve_learned(&self, learned: LearnedParams) {
        *self.learned.write().expect("learned lock") = learned;
        if let Some(lib) = self.library() {
            self.set_library((*lib).clone());
        }
    }

    /// Reads the newest fit and serves it when it is not the one served; whether it changed.
    pub async fn refresh_model(&self) -> Result<bool, StoreError> {
        if self.stores.models.model_version().await? == self.learned().version {
            return Ok(false);
        }
        let learned = self.stores.models.current_model().await?.map(|m| m.learned()).unwrap_or_default();
        tracing::info!(version = learned.version, skills = learned.skills.len(), "serving fitted BKT parameters");
        self.serve_learned(learned);
        Ok(true)
    }

    /// Fits the requested skills' parameters from the stored answers, stores the result as the
    /// newest version (the skills not requested keep what they had) and serves it. Passports
    /// are not recomputed here: see [`App::recompute_passports`].
    pub async fn fit_model(
        &self,
        lib: &Library,
        req: &FitRequest,
        progress: &indicatif::ProgressBar,
    ) -> Result<FitReport, StoreError> {
        let (log, newest) = self.stores.models.answer_log(lib, &AnswerFilter { since: req.since }).await?;
        let wanted: BTreeSet<SkillId> = lib
            .skills
            .values()
            .filter(|s| req.courses.is_empty() || req.courses.contains(&s.course))
            .filter(|s| req.skills.is_empty() || req.skills.contains(&s.id))
            .map(|s| s.id.clone())
            .collect();
        let opts = FitOptions { seed: req.seed, ..FitOptions::default() };
        let everyone = vec![true; log.learners.len()];
        // per skill of the log: where its fit starts (the authored parameters, so that the same
        // answers and seed give the same fit whatever was fitted before), and whether it was
        // asked for
        let current: HashMap<String, Params> = log
            .skills
            .iter()
            .map(|n| {
                (n.clone(), SkillId::parse(n).map_or_else(|_| BktParams::default(), |s| lib.authored_bkt(&s)).into())
            })
            .collect();
        let asked: HashSet<String> =
            log.skills.iter().filter(|n| SkillId::parse(n).is_ok_and(|s| wanted.contains(&s))).cloned().collect();
        progress.set_length(asked.len() as u64);
        let (pb, all) = (progress.clone(), everyone.clone());
        let (log, fits, seqs) = blocking(move || {
            let fits = fit_all(
                &log,
                &all,
                &|n| asked.contains(n),
                &|n| current.get(n).copied().unwrap_or_else(|| BktParams::default().into()),
                &opts,
                &|| pb.inc(1),
            );
            let seqs = evaluate::sequences(&log, &all);
            (log, fits, seqs)
        })
        .await?;

        // the skills not asked for keep their fit; those asked for are fitted or go back to
        // their authored parameters
        let previous = self.stores.models.current_model().await?;
        let mut skills = previous.map(|m| m.skills).unwrap_or_default();
        skills.retain(|s, _| !wanted.contains(s));
        let mut report = Vec::new();
        for s in &wanted {
            let i = log.skills.iter().position(|n| n == s.as_str());
            let (learners, answers) = i.map_or((0, 0), |i| (seqs[i].learners(), seqs[i].answers()));
            let before = lib.bkt(s);
            let authored =
                if lib.skills.get(s).and_then(|k| k.bkt).is_some() { Source::Authored } else { Source::Default };
            match i.and_then(|i| fits[i]) {
                Some(f) => {
                    skills.insert(
                        s.clone(),
                        FittedSkill {
                            params: f.params.bkt(),
                            learners: f.learners as u64,
                            answers: f.answers as u64,
                            log_likelihood_gain: f.log_likelihood - f.log_likelihood_before,
                        },
                    );
                    report.push(SkillReport {
                        skill: s.clone(),
                        learners,
                        answers,
                        before,
                        after: f.params.bkt(),
                        source: Source::Fitted,
                        log_likelihood_gain: Some(f.log_likelihood - f.log_likelihood_before),
                        note: None,
                    });
                }
                None => report.push(SkillReport {
                    skill: s.clone(),
                    learners,
                    answers,
                    before,
                    after: lib.authored_bkt(s),
                    source: authored,
                    log_likelihood_gain: None,
                    note: Some(format!(
                        "too little data ({learners} learner(s), {answers} answer(s); a fit needs {} and {}): keeps its {} parameters",
                        opts.min_learners,
                        opts.min_answers,
                        if authored == Source::Authored { "authored" } else { "default" }
                    )),
                }),
            }
        }

        // the individualised prior: its weight chosen on the data, with every skill's new
        // parameters (0 when moving the prior does not predict the answers better)
        let params: Vec<Params> = log
            .skills
            .iter()
            .map(|n| {
                SkillId::parse(n)
                    .ok()
                    .map(|s| skills.get(&s).map_or_else(|| lib.authored_bkt(&s), |f| f.params))
                    .unwrap_or_default()
                    .into()
            })
            .collect();
        let mean = log.answers.iter().filter(|a| a.correct).count() as f64 / log.answers.len().max(1) as f64;
        let standard = Predictor { mean_accuracy: mean, ..Predictor::standard() };
        let (log, prior_weight) = blocking(move || {
            let w = if log.answers.is_empty() {
                0.0
            } else {
                choose(evaluate::PRIOR_WEIGHTS, |w| {
                    score(&predict(&log, &everyone, &params, &Predictor { prior_weight: w, ..standard })).log_loss
                })
            };
            (log, w)
        })
        .await?;
        let model = self
            .publish(FittedModel {
                version: 0,
                fitted_at: now_ms(),
                reset: false,
                answers: log.answers.len() as u64,
                learners: log.learners.len() as u64,
                newest_answer: newest,
                since: req.since,
                prior_weight,
                mean_accuracy: mean,
                seed: req.seed,
                skills,
            })
            .await?;
        Ok(FitReport {
            version: model.version,
            answers: model.answers,
            learners: model.learners,
            skills: report,
            prior_weight,
            mean_accuracy: mean,
        })
    }

    /// Stores a return to the authored parameters as the newest version, and serves it.
    pub async fn reset_model(&self) -> Result<FittedModel, StoreError> {
        self.publish(FittedModel {
            version: 0,
            fitted_at: now_ms(),
            reset: true,
            answers: 0,
            learners: 0,
            newest_answer: 0,
            since: None,
            prior_weight: 0.0,
            mean_accuracy: 0.0,
            seed: 0,
            skills: Default::default(),
        })
        .await
    }

    /// Stores `model` as the newest version and serves it.
    async fn publish(&self, model: FittedModel) -> Result<FittedModel, StoreError> {
        let model = self.stores.models.save_model(model).await?;
        self.serve_learned(model.learned());
        Ok(model)
    }

    /// Replays every passport computed with parameters other than the ones served, a learner
    /// at a time (reads go on meanwhile); `progress` counts them. Returns how many were
    /// replayed.
    pub async fn recompute_passports(&self, progress: &indicatif::ProgressBar) -> Result<usize, StoreError> {
        let mut done = 0;
        let mut skipped: BTreeSet<String> = BTreeSet::new();
        loop {
            let Some(lib) = self.library() else { return Ok(done) };
            let version = lib.learned.version;
            let stale = self.stores.passports.stale(version, 500).await?;
            let fresh: Vec<_> = stale.into_iter().filter(|l| !skipped.contains(l.as_str())).collect();
            if fresh.is_empty() {
                return Ok(done);
            }
            for learner in fresh {
                match self.stores.passports.recompute(&learner, &lib).await {
                    Ok(true) => done += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(learner = %learner, error = %e, "could not recompute a passport");
                        skipped.insert(learner.to_string());
                    }
                }
                progress.inc(1);
                if self.learned().version != version {
                    // a newer fit arrived: start over with it
                    break;
                }
            }
        }
    }

    /// Follows the newest fit (made by `tutor passport fit` in any process) and replays the
    /// passports it changes, until the runtime stops.
    pub fn follow_model(self: &std::sync::Arc<Self>) {
        let app = self.clone();
        tokio::spawn(async move {
            // passports left stale (by a fit whose replay was cut short) are replayed once the
            // content is served, and after every new fit
            let mut checked = false;
            loop {
                match app.refresh_model().await {
                    Ok(changed) if (changed || !checked) && app.library().is_some() => {
                        checked = true;
                        match app.recompute_passports(&indicatif::ProgressBar::hidden()).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(passports = n, "passports replayed with the fitted parameters"),
                            Err(e) => tracing::warn!(error = %e, "replaying passports failed; trying again later"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not read the fitted parameters"),
                }
                tokio::time::sleep(MODEL_POLL).await;
            }
        });
    }
}

/// Runs the fit's arithmetic off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Corrupt { learner: String::new(), message: format!("the fit failed: {e}") })
}

/// How often a running server looks for a fit made by another process.
const MODEL_POLL: std::time::Duration = std::time::Duration::from_secs(2);
