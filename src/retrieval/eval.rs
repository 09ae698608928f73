//! Retrieval quality on learner-worded questions (`tutor search --eval`): for each question
//! labelled with the skill it is about, where the first component *focused* on that skill
//! ranks, searched from inside the skill's course — recall@1, recall@5 and MRR@5 for BM25,
//! dense and hybrid side by side.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Hit, RetrievalError, Retriever, SearchFilter, SearchMode, SearchRequest};
use crate::content::{Library, SkillId};

/// A component tagged with more skills than this is an overview (a course summary, a review)
/// rather than a component about any one of them: it does not count as a hit.
pub const FOCUSED_MAX_SKILLS: usize = 3;

/// Results considered: recall@5, MRR@5.
pub const EVAL_K: usize = 5;

/// One labelled question.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub question: String,
    /// The skill the question is about; its course is the one searched.
    pub skill: SkillId,
    /// The component a teacher would point to, when there is one (informative only).
    #[serde(default)]
    pub component: Option<String>,
}

/// A file of questions.
#[derive(Debug, Clone)]
pub struct QuestionSet {
    pub path: PathBuf,
    pub questions: Vec<Question>,
}

impl QuestionSet {
    /// Reads a YAML list of questions; every skill must exist in `lib`.
    pub fn read(path: &Path, lib: &Library) -> Result<Self, RetrievalError> {
        let text = std::fs::read_to_string(path).map_err(|e| RetrievalError::io(path, e))?;
        let questions: Vec<Question> = serde_yaml::from_str(&text).map_err(|e| {
            let at = e.location().map(|l| format!(":{}", l.line())).unwrap_or_default();
            RetrievalError::Content(format!("{}{at}: {e}", path.display()))
        })?;
        for q in &questions {
            if !lib.skills.contains_key(&q.skill) {
                let wanted = format!("skill: {}", q.skill);
                let line =
                    text.lines().position(|l| l.trim() == wanted).map_or(String::new(), |i| format!(":{}", i + 1));
                return Err(RetrievalError::Content(format!(
                    "{}{line}: unknown skill {} (not in the loaded content)",
                    path.display(),
                    q.skill
                )));
            }
        }
        Ok(Self { path: path.to_path_buf(), questions })
    }
}

/// Whether `hit` is a component focused on `skill`.
pub fn is_hit(hit: &Hit, skill: &SkillId) -> bool {
    hit.skills.len() <= FOCUSED_MAX_SKILLS && hit.skills.contains(skill)
}

/// Recall and MRR over a set of questions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Scores {
    pub questions: usize,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub mrr_at_5: f64,
}

impl Scores {
    /// From the 1-based rank of the first hit of each question (`None`: not in the top 5).
    pub fn of(ranks: &[Option<usize>]) -> Self {
        let n = ranks.len().max(1) as f64;
        let within = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
        Self {
            questions: ranks.len(),
            recall_at_1: within(1),
            recall_at_5: within(EVAL_K),
            mrr_at_5: ranks.iter().map(|r| r.filter(|&r| r <= EVAL_K).map_or(0.0, |r| 1.0 / r as f64)).sum::<f64>() / n,
        }
    }
}

/// A question whose first hit was not at rank 1, with what came first instead.
#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub file: String,
    pub question: String,
    pub skill: SkillId,
    pub rank: Option<usize>,
    pub got: Vec<String>,
}

/// The scores of one mode, per file and over all files.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    pub mode: SearchMode,
    pub all: Scores,
    pub files: BTreeMap<String, Scores>,
    pub misses: Vec<Miss>,
}

/// Every mode's scores; modes the index cannot serve (dense without vectors) are left out
/// and named in `skipped`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub modes: Vec<ModeReport>,
    pub skipped: Vec<String>,
}

/// Runs every question of `sets` in each of `modes`.
pub async fn evaluate(
    r: &Retriever,
    sets: &[QuestionSet],
    lib: &Library,
    modes: &[SearchMode],
) -> Result<EvalReport, RetrievalError> {
    let mut report = EvalReport { modes: Vec::new(), skipped: Vec::new() };
    for &mode in modes {
        if mode == SearchMode::Dense && !r.dense() {
            report.skipped.push(format!("{mode}: the index has no dense vectors of a loaded model"));
            continue;
        }
        let mut all = Vec::new();
        let mut files = BTreeMap::new();
        let mut misses = Vec::new();
        for set in sets {
            let file = set.path.display().to_string();
            let mut ranks = Vec::new();
            for q in &set.questions {
                let course = lib.skills.get(&q.skill).map(|s| s.course.clone());
                let filter = SearchFilter { course, ..Default::default() };
                let req = SearchRequest { text: q.question.clone(), filter, k: EVAL_K };
                let hits = r.search_with(&req, mode).await?;
                let rank = hits.iter().position(|h| is_hit(h, &q.skill)).map(|i| i + 1);
                if rank != Some(1) {
                    misses.push(Miss {
                        file: file.clone(),
                        question: q.question.clone(),
                        skill: q.skill.clone(),
                        rank,
                        got: hits.iter().map(|h| h.component_id.to_string()).collect(),
                    });
                }
                ranks.push(rank);
            }
            files.insert(file, Scores::of(&ranks));
            all.extend(ranks);
        }
        report.modes.push(ModeReport { mode, all: Scores::of(&all), files, misses });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_from_ranks() {
        let s = Scores::of(&[Some(1), Some(2), None, Some(5)]);
        assert_eq!(s.questions, 4);
        assert!((s.recall_at_1 - 0.25).abs() < 1e-12);
        assert!((s.recall_at_5 - 0.75).abs() < 1e-12);
        assert!((s.mrr_at_5 - (1.0 + 0.5 + 0.2) / 4.0).abs() < 1e-12);
    }
}
