//! How well the learner model predicts: answer logs (our events, or the CSV layout public
//! knowledge-tracing data sets use), fitting every skill of a log, and next-answer prediction
//! on learners held out of the fit, scored by AUC, RMSE, log-loss and calibration.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::fit::{self, FitOptions, Params, Rng, Sequences, SkillFit};

/// Answers of many learners on many skills, each learner's in the order given.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub learners: Vec<String>,
    pub skills: Vec<String>,
    /// Grouped by learner, each learner's answers in order.
    pub answers: Vec<Answer>,
}

/// One answer: every skill it is evidence of.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub learner: u32,
    pub skills: Vec<u32>,
    pub correct: bool,
    pub hints: u32,
}

/// Builds a [`Log`] from answers in any order: `(learner, skills, correct, hints, order)`;
/// each learner's answers are sorted by `order` (stable: equal orders keep their position).
#[derive(Default)]
pub struct LogBuilder {
    learners: HashMap<String, u32>,
    skills: HashMap<String, u32>,
    rows: Vec<(u32, i64, usize, Answer)>,
}

impl LogBuilder {
    pub fn push(&mut self, learner: &str, skills: &[&str], correct: bool, hints: u32, order: i64) {
        let n = self.learners.len() as u32;
        let l = *self.learners.entry(learner.to_owned()).or_insert(n);
        let skills = skills
            .iter()
            .map(|s| {
                let n = self.skills.len() as u32;
                *self.skills.entry((*s).to_owned()).or_insert(n)
            })
            .collect();
        let pos = self.rows.len();
        self.rows.push((l, order, pos, Answer { learner: l, skills, correct, hints }));
    }

    pub fn build(mut self) -> Log {
        self.rows.sort_by_key(|r| (r.0, r.1, r.2));
        let mut learners = vec![String::new(); self.learners.len()];
        for (name, i) in self.learners {
            learners[i as usize] = name;
        }
        let mut skills = vec![String::new(); self.skills.len()];
        for (name, i) in self.skills {
            skills[i as usize] = name;
        }
        Log { learners, skills, answers: self.rows.into_iter().map(|r| r.3).collect() }
    }
}

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}:{line}: {message}")]
    Line { path: String, line: usize, message: String },
    #[error("{0}")]
    Other(String),
}

/// The column names accepted for each field of a CSV log (case does not matter).
const LEARNER_COLUMNS: &[&str] = &["user_id", "learner", "learner_id", "student_id", "student", "actor"];
const SKILL_COLUMNS: &[&str] = &["skill", "skill_name", "skill_id", "kc", "knowledge_component"];
const CORRECT_COLUMNS: &[&str] = &["correct", "success", "outcome"];
const ORDER_COLUMNS: &[&str] = &["order_id", "timestamp", "ts", "start_time", "order"];
const HINT_COLUMNS: &[&str] = &["hint_count", "hints", "hints_used"];

/// Reads a CSV log: a header naming `user_id`, `skill` and `correct` (or the alternatives
/// above), optionally an order column and a hint count; rows without a skill are skipped.
pub fn read_csv(path: &str, text: &str) -> Result<Log, LogError> {
    let mut lines = csv_records(text);
    let (_, header) = lines.next().ok_or_else(|| LogError::Other(format!("{path}: the file is empty")))?;
    let header: Vec<String> = header.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let find = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
    let need = |names: &[&str]| {
        find(names).ok_or_else(|| LogError::Line {
            path: path.to_owned(),
            line: 1,
            message: format!("no column {} (or {})", names[0], names[1..].join(", ")),
        })
    };
    let (learner, skill, correct) = (need(LEARNER_COLUMNS)?, need(SKILL_COLUMNS)?, need(CORRECT_COLUMNS)?);
    let (order, hints) = (find(ORDER_COLUMNS), find(HINT_COLUMNS));
    let mut b = LogBuilder::default();
    for (line, rec) in lines {
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let bad = |message: String| LogError::Line { path: path.to_owned(), line, message };
        let get = |i: usize| rec.get(i).map(|s| s.trim()).unwrap_or("");
        let s = get(skill);
        if s.is_empty() {
            continue;
        }
        let c = match get(correct) {
            "1" | "true" | "TRUE" | "True" => true,
            "0" | "false" | "FALSE" | "False" => false,
            v => match v.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => x >= 0.5,
                _ => return Err(bad(format!("correct is '{v}', expected 0 or 1"))),
            },
        };
        let o = match order.map(get) {
            None | Some("") => 0,
            Some(v) => parse_order(v).ok_or_else(|| bad(format!("order '{v}' is neither a number nor a time")))?,
        };
        let h = hints.map(get).and_then(|v| v.parse::<f64>().ok()).map_or(0, |x| x.max(0.0) as u32);
        b.push(get(learner), &[s], c, h, o);
    }
    Ok(b.build())
}

fn parse_order(v: &str) -> Option<i64> {
    if let Ok(n) = v.parse::<i64>() {
        return Some(n);
    }
    if let Ok(x) = v.parse::<f64>() {
        return Some(x as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f").ok().map(|t| t.and_utc().timestamp_millis())
}

/// CSV records (RFC 4180: quoted fields may hold commas, quotes and newlines) with the line
/// each starts on.
fn csv_records(text: &str) -> impl Iterator<Item = (usize, Vec<String>)> + '_ {
    let mut chars = text.chars().peekable();
    let mut line = 1;
    std::iter::from_fn(move || {
        chars.peek()?;
        let start = line;
        let (mut rec, mut field, mut quoted) = (Vec::new(), String::new(), false);
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                ('"', true) => quoted = false,
                ('"', false) if field.is_empty() => quoted = true,
                (',', false) => rec.push(std::mem::take(&mut field)),
                ('\n', false) => {
                    line += 1;
                    break;
                }
                ('\r', false) => {}
                (c, _) => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
            }
        }
        rec.push(field);
        Some((start, rec))
    })
}

impl Log {
    /// The answers of each learner marked in `learners` (indexes into `self.learners`), a
    /// learner at a time, in order.
    fn of(&self, learners: &[bool]) -> impl Iterator<Item = &[Answer]> + '_ {
        let wanted = learners.to_vec();
        self.answers
            .chunk_by(|a, b| a.learner == b.learner)
            .filter(move |run| wanted.get(run[0].learner as usize).copied().unwrap_or(false))
    }
}

/// The per-skill answer sequences of `learners` (indexes into `log.learners`).
pub fn sequences(log: &Log, learners: &[bool]) -> Vec<Sequences> {
    let mut per: Vec<Sequences> = vec![Sequences::new(); log.skills.len()];
    for run in log.of(learners) {
        let mut by_skill: BTreeMap<u32, Vec<bool>> = BTreeMap::new();
        for a in run {
            for s in &a.skills {
                by_skill.entry(*s).or_default().push(a.correct);
            }
        }
        for (s, answers) in by_skill {
            per[s as usize].push(answers);
        }
    }
    per
}

/// Fits the skills of `log` that are `wanted` over `learners`, on every core; `current(skill)`
/// gives the parameters a skill has now (the first start, and what stays when data is too
/// thin: `None`). `done` is called after each skill.
pub fn fit_all(
    log: &Log,
    learners: &[bool],
    wanted: &(dyn Fn(&str) -> bool + Sync),
    current: &(dyn Fn(&str) -> Params + Sync),
    opts: &FitOptions,
    done: &(dyn Fn() + Sync),
) -> Vec<Option<SkillFit>> {
    let seqs = sequences(log, learners);
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<SkillFit>> = vec![None; seqs.len()];
    let results = std::sync::Mutex::new(&mut out);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(seqs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let s = next.fetch_add(1, Ordering::Relaxed);
                    if s >= seqs.len() {
                        break;
                    }
                    let name = &log.skills[s];
                    if !wanted(name) {
                        continue;
                    }
                    let fit = fit::fit_skill(&seqs[s], current(name), fit::skill_seed(opts.seed, name), opts);
                    results.lock().expect("fit results")[s] = fit;
                    done();
                }
            });
        }
    });
    out
}

/// How predictions are made from the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Predictor {
    /// How far a learner's smoothed accuracy so far (on the logit scale, relative to the mean)
    /// moves a new skill's prior; 0 is standard BKT.
    pub prior_weight: f64,
    /// The mean accuracy the learner's accuracy is compared with, and the smoothing towards it.
    pub mean_accuracy: f64,
    /// Weight of a right answer given after hints (1 counts it fully).
    pub hint_weight: f64,
}

impl Predictor {
    /// Standard BKT.
    pub fn standard() -> Self {
        Self { prior_weight: 0.0, mean_accuracy: 0.5, hint_weight: 1.0 }
    }

    /// A skill's starting estimate for a learner who got `correct` of `answers` right so far
    /// on other skills.
    pub fn start(&self, prior: f64, correct: u32, answers: u32) -> f64 {
        super::bkt::start_prior(prior, self.prior_weight, self.mean_accuracy, correct, answers)
    }
}

/// Next-answer predictions for `learners`: `(predicted chance of a right answer, right)`,
/// one per (answer, skill) as the passport would have made it before the answer.
pub fn predict(log: &Log, learners: &[bool], params: &[Params], how: &Predictor) -> Vec<(f64, bool)> {
    let mut out = Vec::new();
    for run in log.of(learners) {
        let mut mastery: HashMap<u32, f64> = HashMap::new();
        let (mut right, mut seen) = (0u32, 0u32);
        for a in run {
            for s in &a.skills {
                let p = &params[*s as usize];
                let m = *mastery.entry(*s).or_insert_with(|| how.start(p.prior, right, seen));
                out.push((p.p_correct(m), a.correct));
                let weight = if a.correct && a.hints > 0 { how.hint_weight } else { 1.0 };
                mastery.insert(*s, p.update(m, a.correct, weight));
            }
            seen += 1;
            right += u32::from(a.correct);
        }
    }
    out
}

/// Scores of a set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    pub predictions: usize,
    pub auc: f64,
    pub rmse: f64,
    pub log_loss: f64,
    /// Ten bins of predicted chance: how many, the mean prediction, the share right.
    pub calibration: Vec<Bin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub from: f64,
    pub to: f64,
    pub predictions: usize,
    pub predicted: f64,
    pub observed: f64,
}

/// AUC (the Mann–Whitney statistic, ties counted half), RMSE, log-loss and calibration.
pub fn score(preds: &[(f64, bool)]) -> Scores {
    let n = preds.len();
    let mut sorted: Vec<(f64, bool)> = preds.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // average ranks over ties
    let (mut rank_sum, mut pos) = (0.0, 0usize);
    let mut i = 0;
    while i < n {
        let j = i + sorted[i..].iter().take_while(|p| p.0 == sorted[i].0).count();
        let avg = (i + 1 + j) as f64 / 2.0;
        let positives = sorted[i..j].iter().filter(|p| p.1).count();
        rank_sum += avg * positives as f64;
        pos += positives;
        i = j;
    }
    let neg = n - pos;
    let auc = if pos == 0 || neg == 0 {
        f64::NAN
    } else {
        (rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos as f64 * neg as f64)
    };
    let y = |b: bool| f64::from(u8::from(b));
    let rmse = (preds.iter().map(|(p, o)| (p - y(*o)).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
    let log_loss = -preds
        .iter()
        .map(|(p, o)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if *o { p.ln() } else { (1.0 - p).ln() }
        })
        .sum::<f64>()
        / n.max(1) as f64;
    let calibration = (0..10)
        .map(|b| {
            let (from, to) = (b as f64 / 10.0, (b + 1) as f64 / 10.0);
            let inside: Vec<&(f64, bool)> =
                preds.iter().filter(|(p, _)| *p >= from && (*p < to || (b == 9 && *p <= 1.0))).collect();
            let k = inside.len().max(1) as f64;
            Bin {
                from,
                to,
                predictions: inside.len(),
                predicted: inside.iter().map(|p| p.0).sum::<f64>() / k,
                observed: inside.iter().map(|p| y(p.1)).sum::<f64>() / k,
            }
        })
        .collect();
    Scores { predictions: n, auc, rmse, log_loss, calibration }
}

/// A held-out split by learner: `share` of the learners (at least one when there are two or
/// more) are test learners, drawn with `seed`. Returns (train, test) masks.
pub fn split(learners: usize, share: f64, seed: u64) -> (Vec<bool>, Vec<bool>) {
    let mut order: Vec<usize> = (0..learners).collect();
    let mut rng = Rng::new(seed);
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let k = ((learners as f64 * share).round() as usize).clamp(usize::from(learners >= 2), learners.saturating_sub(1));
    let mut test = vec![false; learners];
    for &l in &order[..k] {
        test[l] = true;
    }
    (test.iter().map(|t| !t).collect(), test)
}

/// One parameter set's result in an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluated {
    pub name: String,
    pub description: String,
    #[serde(flatten)]
    pub scores: Scores,
    pub predictor: Predictor,
}

/// What `evaluate` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub learners: usize,
    pub train_learners: usize,
    pub test_learners: usize,
    pub skills: usize,
    pub answers: usize,
    /// Skills fitted on the training learners (the others kept their parameters).
    pub skills_fitted: usize,
    pub results: Vec<Evaluated>,
    /// Variants not measured, with why.
    pub skipped: Vec<String>,
}

/// The weights tried for the individualised prior and for hinted answers.
pub const PRIOR_WEIGHTS: &[f64] = &[0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0];
const HINT_WEIGHTS: &[f64] = &[1.0, 0.75, 0.5, 0.25, 0.0];

/// The weight among `grid` whose predictions on `learners` have the lowest log-loss.
pub fn choose(grid: &[f64], mut log_loss: impl FnMut(f64) -> f64) -> f64 {
    grid.iter().copied().map(|w| (w, log_loss(w))).min_by(|a, b| a.1.total_cmp(&b.1)).map_or(0.0, |b| b.0)
}

/// Evaluates next-answer prediction on a split by learner: the current parameters (authored
/// or defaults, by `current`), parameters fitted on the training learners, and the
/// extensions on top of the fitted ones (individualised prior, forgetting, weaker hinted
/// answers), each with its weight chosen on the training learners.
/// `test_learners`, when given, are the held-out learners (another tool's split, to compare on
/// the same one); otherwise `share` of them are drawn with `seed`.
pub fn evaluate(
    log: &Log,
    current: &(dyn Fn(&str) -> Params + Sync),
    share: f64,
    test_learners: Option<&std::collections::HashSet<String>>,
    seed: u64,
    done: &(dyn Fn() + Sync),
) -> Evaluation {
    let (train, test) = match test_learners {
        Some(names) => {
            let test: Vec<bool> = log.learners.iter().map(|l| names.contains(l)).collect();
            (test.iter().map(|t| !t).collect(), test)
        }
        None => split(log.learners.len(), share, seed),
    };
    let opts = FitOptions { seed, ..FitOptions::default() };
    let authored: Vec<Params> = log.skills.iter().map(|s| current(s)).collect();
    let fits = fit_all(log, &train, &|_| true, current, &opts, done);
    let fitted: Vec<Params> = fits.iter().zip(&authored).map(|(f, a)| f.map_or(*a, |f| f.params)).collect();
    let forget_fits = fit_all(log, &train, &|_| true, current, &FitOptions { forget: true, ..opts }, &|| {});
    let forgetting: Vec<Params> = forget_fits.iter().zip(&authored).map(|(f, a)| f.map_or(*a, |f| f.params)).collect();

    let train_answers: Vec<&Answer> = log.answers.iter().filter(|a| train[a.learner as usize]).collect();
    let mean = train_answers.iter().filter(|a| a.correct).count() as f64 / train_answers.len().max(1) as f64;
    let standard = Predictor { mean_accuracy: mean, ..Predictor::standard() };
    let on_train = |params: &[Params], how: Predictor| score(&predict(log, &train, params, &how)).log_loss;
    let prior_weight = choose(PRIOR_WEIGHTS, |w| on_train(&fitted, Predictor { prior_weight: w, ..standard }));
    let hinted = log.answers.iter().any(|a| a.hints > 0 && a.correct);
    let hint_weight = if hinted {
        choose(HINT_WEIGHTS, |w| on_train(&fitted, Predictor { hint_weight: w, ..standard }))
    } else {
        1.0
    };

    let run = |name: &str, description: String, params: &[Params], how: Predictor| Evaluated {
        name: name.to_owned(),
        description,
        scores: score(&predict(log, &test, params, &how)),
        predictor: how,
    };
    let mut results = vec![
        run("authored", "the authored parameters, or the defaults".into(), &authored, standard),
        run("fitted", "per-skill parameters fitted by EM on the training learners".into(), &fitted, standard),
        run(
            "fitted+prior",
            format!("fitted, with the learner's accuracy so far moving a new skill's prior (weight {prior_weight})"),
            &fitted,
            Predictor { prior_weight, ..standard },
        ),
        run("fitted+forget", "fitted with a forget rate per skill".into(), &forgetting, standard),
    ];
    let mut skipped = Vec::new();
    if hinted {
        results.push(run(
            "fitted+hints",
            format!("fitted, a right answer after hints counting {hint_weight} of an unaided one"),
            &fitted,
            Predictor { hint_weight, ..standard },
        ));
    } else {
        skipped.push("fitted+hints: the log has no right answers given after hints".to_owned());
    }
    Evaluation {
        learners: log.learners.len(),
        train_learners: train.iter().filter(|t| **t).count(),
        test_learners: test.iter().filter(|t| **t).count(),
        skills: log.skills.len(),
        answers: log.answers.len(),
        skills_fitted: fits.iter().filter(|f| f.is_some()).count(),
        results,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_a_hand_computed_value_with_ties() {
        // positives at 0.9, 0.6, 0.4; negatives at 0.6, 0.2: pairs (p > n) = 0.9>0.6, 0.9>0.2,
        // 0.6=0.6 (half), 0.6>0.2, 0.4>0.2, 0.4<0.6 → 4.5 of 6
        let preds = [(0.9, true), (0.6, true), (0.4, true), (0.6, false), (0.2, false)];
        let s = score(&preds);
        assert!((s.auc - 0.75).abs() < 1e-12, "{}", s.auc);
        let rmse = ((0.01 + 0.16 + 0.36 + 0.36 + 0.04) / 5.0f64).sqrt();
        assert!((s.rmse - rmse).abs() < 1e-12);
        assert_eq!(s.calibration.iter().map(|b| b.predictions).sum::<usize>(), 5);
    }

    #[test]
    fn csv_logs_are_read_with_quotes_order_and_hints_and_bad_rows_named() {
        let text = "order_id,user_id,skill_name,correct,hint_count\n\
                    3,u1,\"Addition, whole numbers\",1,0\n\
                    1,u1,\"Addition, whole numbers\",0,2\n\
                    2,u2,Fractions,1,1\n\
                    4,u2,,1,0\n";
        let log = read_csv("a.csv", text).unwrap();
        assert_eq!(log.learners, ["u1", "u2"]);
        assert_eq!(log.skills, ["Addition, whole numbers", "Fractions"]);
        // u1's answers sorted by order_id: the wrong one (order 1) first
        assert_eq!(log.answers[0], Answer { learner: 0, skills: vec![0], correct: false, hints: 2 });
        assert_eq!(log.answers.len(), 3, "the row without a skill is skipped");
        let err = read_csv("b.csv", "user_id,skill,correct\nu1,s,maybe\n").unwrap_err();
        assert_eq!(err.to_string(), "b.csv:2: correct is 'maybe', expected 0 or 1");
        let err = read_csv("c.csv", "learner,correct\n").unwrap_err();
        assert!(err.to_string().starts_with("c.csv:1: no column skill"), "{err}");
    }

    #[test]
    fn the_split_is_by_learner_and_repeatable() {
        let (train, test) = split(100, 0.2, 3);
        assert_eq!(test.iter().filter(|t| **t).count(), 20);
        assert!(train.iter().zip(&test).all(|(a, b)| a != b));
        assert_eq!(split(100, 0.2, 3), (train, test));
        assert_ne!(split(100, 0.2, 4).1, split(100, 0.2, 3).1);
    }

    #[test]
    fn the_individualised_prior_moves_with_the_learner_and_not_without_evidence() {
        let how = Predictor { prior_weight: 1.0, mean_accuracy: 0.6, hint_weight: 1.0 };
        assert_eq!(how.start(0.3, 0, 0), 0.3);
        assert!(how.start(0.3, 18, 20) > 0.3);
        assert!(how.start(0.3, 2, 20) < 0.3);
        assert_eq!(Predictor::standard().start(0.3, 18, 20), 0.3);
    }
}
