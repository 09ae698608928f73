//! Fitting and evaluating the learner model at the size of a real organisation's log:
//! 1 million answers over 200 skills (20,000 learners, each on 5 skills, 10 answers a skill;
//! each skill's parameters and each learner's ability drawn at random), on every core.
//! `cargo bench --bench fit` prints: the fit's time (all 200 skills, 5 EM starts each), how
//! close the fitted parameters came to the generating ones, and `evaluate`'s time and
//! prediction throughput on an 80/20 split by learner.

use std::time::Instant;

use tutor::passport::evaluate::{self, LogBuilder, Predictor};
use tutor::passport::fit::{FitOptions, Params, Rng};

const SKILLS: usize = 200;
const LEARNERS: usize = 20_000;
const SKILLS_PER_LEARNER: usize = 5;
const ANSWERS_PER_SKILL: usize = 10;

fn main() {
    let mut rng = Rng::new(2026);
    let truth: Vec<Params> = (0..SKILLS)
        .map(|_| Params {
            prior: rng.range(0.1, 0.7),
            learn: rng.range(0.03, 0.3),
            guess: rng.range(0.1, 0.35),
            slip: rng.range(0.05, 0.2),
            forget: 0.0,
        })
        .collect();
    let names: Vec<String> = (0..SKILLS).map(|s| format!("s{s:03}")).collect();
    let mut log = LogBuilder::default();
    let mut order = 0;
    for l in 0..LEARNERS {
        let learner = format!("l{l:05}");
        for _ in 0..SKILLS_PER_LEARNER {
            let s = (rng.next_u64() % SKILLS as u64) as usize;
            let p = truth[s];
            let mut known = rng.unit() < p.prior;
            for _ in 0..ANSWERS_PER_SKILL {
                let right = if known { rng.unit() >= p.slip } else { rng.unit() < p.guess };
                order += 1;
                log.push(&learner, &[&names[s]], right, 0, order);
                known = known || rng.unit() < p.learn;
            }
        }
    }
    let log = log.build();
    println!(
        "{} answers, {} learners, {} skills, {} cores",
        log.answers.len(),
        log.learners.len(),
        log.skills.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let everyone = vec![true; log.learners.len()];
    let start: Params = tutor::content::BktParams::default().into();
    let mut times = Vec::new();
    let mut fits = Vec::new();
    for run in 0..3 {
        let t = Instant::now();
        fits = evaluate::fit_all(&log, &everyone, &|_| true, &|_| start, &FitOptions::default(), &|| {});
        times.push(t.elapsed().as_secs_f64());
        println!("fit run {run}: {:.2} s", times[run]);
    }
    times.sort_by(f64::total_cmp);
    let fitted = fits.iter().filter(|f| f.is_some()).count();
    let index = |name: &str| names.iter().position(|n| n == name).unwrap();
    let mut errors: Vec<f64> = Vec::new();
    for (s, f) in fits.iter().enumerate() {
        if let Some(f) = f {
            let t = truth[index(&log.skills[s])];
            errors.extend(
                [f.params.prior - t.prior, f.params.learn - t.learn, f.params.guess - t.guess, f.params.slip - t.slip]
                    .map(f64::abs),
            );
        }
    }
    errors.sort_by(f64::total_cmp);
    let iterations: Vec<usize> = fits.iter().flatten().map(|f| f.iterations).collect();
    println!(
        "fit: median {:.2} s for {} answers ({:.0} answers/s), {fitted} of {} skills fitted, median {} EM iterations of the best start",
        times[1],
        log.answers.len(),
        log.answers.len() as f64 / times[1],
        log.skills.len(),
        iterations.get(iterations.len() / 2).copied().unwrap_or(0)
    );
    println!(
        "parameter error against the generating ones: median {:.3}, 90th percentile {:.3}",
        errors[errors.len() / 2],
        errors[errors.len() * 9 / 10]
    );

    let params: Vec<Params> = fits.iter().map(|f| f.map_or(start, |f| f.params)).collect();
    let t = Instant::now();
    let preds = evaluate::predict(&log, &everyone, &params, &Predictor::standard());
    let predict_s = t.elapsed().as_secs_f64();
    println!(
        "predict: {} predictions in {:.3} s ({:.1} M predictions/s)",
        preds.len(),
        predict_s,
        preds.len() as f64 / predict_s / 1e6
    );
    let t = Instant::now();
    let ev = evaluate::evaluate(&log, &|_| start, 0.2, None, 7, &|| {});
    let ev_s = t.elapsed().as_secs_f64();
    println!(
        "evaluate (split 80/20, fits with and without forgetting, weights chosen on the training learners): {ev_s:.1} s"
    );
    for r in &ev.results {
        println!(
            "  {:<14} AUC {:.4}  RMSE {:.4}  log-loss {:.4}",
            r.name, r.scores.auc, r.scores.rmse, r.scores.log_loss
        );
    }
}
