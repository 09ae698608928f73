//! Learning a skill's BKT parameters from answers: expectation–maximisation (Baum–Welch) over
//! each learner's answer sequence on the skill, with restarts from a fixed seed and bounds
//! that keep the model identifiable.
//!
//! The model is the passport's: a hidden state per opportunity (not known / known), the first
//! state known with probability `prior`; an answer is right with probability `1 − slip` when
//! known and `guess` when not; after each answer an unknown skill becomes known with
//! probability `learn` (and, when fitted with forgetting, a known one is lost with `forget`).

use serde::Serialize;

use crate::content::BktParams;

/// Guess and slip stay below this: above 0.5 "known" would predict fewer right answers than
/// "not known", and the two states would swap meaning.
pub const MAX_GUESS_SLIP: f64 = 0.45;
/// The prior and the learn rate stay inside `[MIN_P, 1 − MIN_P]`.
pub const MIN_P: f64 = 1e-4;
/// Forgetting, when fitted, stays at or below this.
pub const MAX_FORGET: f64 = 0.5;
/// Fewest learners with answers on a skill before its parameters are fitted.
pub const MIN_LEARNERS: usize = 30;
/// Fewest answers on a skill before its parameters are fitted.
pub const MIN_ANSWERS: usize = 200;

/// How to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Starts of EM: the first from the current parameters, the others drawn from `seed`.
    pub restarts: usize,
    pub seed: u64,
    /// Iterations per start at most.
    pub max_iterations: usize,
    /// A start stops when an iteration improves the log-likelihood by less than this share.
    pub tolerance: f64,
    /// Also fit a forget rate (otherwise it is 0, as in standard BKT).
    pub forget: bool,
    pub min_learners: usize,
    pub min_answers: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            restarts: 5,
            seed: 7,
            max_iterations: 200,
            tolerance: 1e-7,
            forget: false,
            min_learners: MIN_LEARNERS,
            min_answers: MIN_ANSWERS,
        }
    }
}

/// BKT parameters with the optional forget rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Params {
    pub prior: f64,
    pub learn: f64,
    pub guess: f64,
    pub slip: f64,
    pub forget: f64,
}

impl From<BktParams> for Params {
    fn from(b: BktParams) -> Self {
        Self { prior: b.prior, learn: b.learn, guess: b.guess, slip: b.slip, forget: 0.0 }
    }
}

impl Params {
    /// The passport's parameters (without forgetting).
    pub fn bkt(&self) -> BktParams {
        BktParams { prior: self.prior, learn: self.learn, slip: self.slip, guess: self.guess }
    }

    fn clamped(self) -> Self {
        Self {
            prior: self.prior.clamp(MIN_P, 1.0 - MIN_P),
            learn: self.learn.clamp(MIN_P, 1.0 - MIN_P),
            guess: self.guess.clamp(MIN_P, MAX_GUESS_SLIP),
            slip: self.slip.clamp(MIN_P, MAX_GUESS_SLIP),
            forget: self.forget.clamp(0.0, MAX_FORGET),
        }
    }

    /// The chance of a right answer at mastery `p`.
    pub fn p_correct(&self, p: f64) -> f64 {
        p * (1.0 - self.slip) + (1.0 - p) * self.guess
    }

    /// The mastery after an answer; `weight` below 1 makes the answer weaker evidence (a mix
    /// of the update it asks for and no observation at all).
    pub fn update(&self, p: f64, correct: bool, weight: f64) -> f64 {
        let (known, unknown) = if correct {
            (p * (1.0 - self.slip), (1.0 - p) * self.guess)
        } else {
            (p * self.slip, (1.0 - p) * (1.0 - self.guess))
        };
        let observed = if known + unknown > 0.0 { known / (known + unknown) } else { p };
        let posterior = weight * observed + (1.0 - weight) * p;
        (posterior * (1.0 - self.forget) + (1.0 - posterior) * self.learn).clamp(0.0, 1.0)
    }
}

/// What fitting one skill gave.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SkillFit {
    pub params: Params,
    /// Log-likelihood of the answers under the fitted parameters, and under the ones fitting
    /// started from.
    pub log_likelihood: f64,
    pub log_likelihood_before: f64,
    pub learners: usize,
    pub answers: usize,
    /// EM iterations of the best start.
    pub iterations: usize,
}

/// Answer sequences of one skill: learner by learner, each in order.
#[derive(Debug, Clone, Default)]
pub struct Sequences {
    answers: Vec<bool>,
    /// Where each learner's sequence starts in `answers` (and one past the end).
    starts: Vec<usize>,
}

impl Sequences {
    /// No sequences yet.
    pub fn new() -> Self {
        Self { answers: Vec::new(), starts: vec![0] }
    }

    /// Adds one learner's answers, in order (an empty one is ignored).
    pub fn push(&mut self, answers: impl IntoIterator<Item = bool>) {
        self.answers.extend(answers);
        if self.answers.len() > *self.starts.last().unwrap_or(&0) {
            self.starts.push(self.answers.len());
        }
    }

    pub fn learners(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub fn answers(&self) -> usize {
        self.answers.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[bool]> {
        self.starts.windows(2).map(|w| &self.answers[w[0]..w[1]])
    }
}

/// Expected counts gathered by one E step.
#[derive(Default)]
struct Counts {
    first_known: f64,
    sequences: f64,
    learned: f64,
    unknown_before: f64,
    forgot: f64,
    known_before: f64,
    right_unknown: f64,
    unknown: f64,
    wrong_known: f64,
    known: f64,
    log_likelihood: f64,
}

/// Emission probability of an answer from a state (0 not known, 1 known).
fn emit(p: &Params, state: usize, correct: bool) -> f64 {
    match (state, correct) {
        (1, true) => 1.0 - p.slip,
        (1, false) => p.slip,
        (_, true) => p.guess,
        (_, false) => 1.0 - p.guess,
    }
}

/// Forward–backward over every sequence (scaled), accumulating expected counts.
fn e_step(seqs: &Sequences, p: &Params, alpha: &mut Vec<[f64; 2]>, scale: &mut Vec<f64>) -> Counts {
    let trans = [[1.0 - p.learn, p.learn], [p.forget, 1.0 - p.forget]];
    let mut c = Counts::default();
    for seq in seqs.iter() {
        let n = seq.len();
        alpha.clear();
        scale.clear();
        // forward
        let mut a = [(1.0 - p.prior) * emit(p, 0, seq[0]), p.prior * emit(p, 1, seq[0])];
        for (t, &o) in seq.iter().enumerate() {
            if t > 0 {
                let prev = alpha[t - 1];
                a = [
                    (prev[0] * trans[0][0] + prev[1] * trans[1][0]) * emit(p, 0, o),
                    (prev[0] * trans[0][1] + prev[1] * trans[1][1]) * emit(p, 1, o),
                ];
            }
            let s = (a[0] + a[1]).max(f64::MIN_POSITIVE);
            a = [a[0] / s, a[1] / s];
            alpha.push(a);
            scale.push(s);
            c.log_likelihood += s.ln();
        }
        // backward: `beta` holds β̂_{t+1} on entry and β̂_t after the step; counts as it goes
        let mut beta = [1.0, 1.0];
        for t in (0..n).rev() {
            let mut xi_total = None;
            if t + 1 < n {
                // ξ(s → s') = α̂_t(s) A(s, s') B(s', o_{t+1}) β̂_{t+1}(s') / c_{t+1}
                let w =
                    [emit(p, 0, seq[t + 1]) * beta[0] / scale[t + 1], emit(p, 1, seq[t + 1]) * beta[1] / scale[t + 1]];
                let xi = |s: usize, s2: usize| alpha[t][s] * trans[s][s2] * w[s2];
                let total = (xi(0, 0) + xi(0, 1) + xi(1, 0) + xi(1, 1)).max(f64::MIN_POSITIVE);
                xi_total = Some((xi(0, 1) / total, xi(1, 0) / total));
                beta = [trans[0][0] * w[0] + trans[0][1] * w[1], trans[1][0] * w[0] + trans[1][1] * w[1]];
            }
            let gamma = [alpha[t][0] * beta[0], alpha[t][1] * beta[1]];
            let g = (gamma[0] + gamma[1]).max(f64::MIN_POSITIVE);
            let gamma = [gamma[0] / g, gamma[1] / g];
            if seq[t] {
                c.right_unknown += gamma[0];
            } else {
                c.wrong_known += gamma[1];
            }
            c.unknown += gamma[0];
            c.known += gamma[1];
            if let Some((learned, forgot)) = xi_total {
                c.learned += learned;
                c.forgot += forgot;
                c.unknown_before += gamma[0];
                c.known_before += gamma[1];
            }
            if t == 0 {
                c.first_known += gamma[1];
                c.sequences += 1.0;
            }
        }
    }
    c
}

/// The log-likelihood of `seqs` under `p`.
pub fn log_likelihood(seqs: &Sequences, p: &Params) -> f64 {
    let mut ll = 0.0;
    for seq in seqs.iter() {
        let mut m = p.prior;
        for &o in seq {
            let right = p.p_correct(m).clamp(1e-12, 1.0 - 1e-12);
            ll += if o { right.ln() } else { (1.0 - right).ln() };
            m = p.update(m, o, 1.0);
        }
    }
    ll
}

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// A seed for one skill from the run's seed, so that a skill's fit does not depend on which
/// other skills were fitted or in what order.
pub fn skill_seed(seed: u64, skill: &str) -> u64 {
    // FNV-1a over the name, mixed with the seed
    skill.bytes().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// One EM run from `start`.
fn em(seqs: &Sequences, start: Params, opts: &FitOptions) -> (Params, f64, usize) {
    let (mut alpha, mut scale) = (Vec::new(), Vec::new());
    let mut p = start.clamped();
    if !opts.forget {
        p.forget = 0.0;
    }
    let mut last = f64::NEG_INFINITY;
    let mut iterations = 0;
    for i in 0..opts.max_iterations {
        let c = e_step(seqs, &p, &mut alpha, &mut scale);
        iterations = i + 1;
        let ll = c.log_likelihood;
        let next = Params {
            prior: c.first_known / c.sequences.max(f64::MIN_POSITIVE),
            learn: ratio(c.learned, c.unknown_before, p.learn),
            forget: if opts.forget { ratio(c.forgot, c.known_before, p.forget) } else { 0.0 },
            guess: ratio(c.right_unknown, c.unknown, p.guess),
            slip: ratio(c.wrong_known, c.known, p.slip),
        }
        .clamped();
        let next = if opts.forget { next } else { Params { forget: 0.0, ..next } };
        let converged = ll - last < opts.tolerance * ll.abs().max(1.0);
        last = ll;
        p = next;
        if converged {
            break;
        }
    }
    let ll = log_likelihood(seqs, &p);
    (p, ll, iterations)
}

fn ratio(num: f64, den: f64, otherwise: f64) -> f64 {
    if den > 1e-12 { num / den } else { otherwise }
}

/// Fits one skill's parameters from its sequences, starting once from `current` and
/// `opts.restarts − 1` more times from random points; `None` when there is too little data
/// (fewer than `opts.min_learners` learners or `opts.min_answers` answers).
pub fn fit_skill(seqs: &Sequences, current: Params, seed: u64, opts: &FitOptions) -> Option<SkillFit> {
    if seqs.learners() < opts.min_learners || seqs.answers() < opts.min_answers {
        return None;
    }
    let mut rng = Rng::new(seed);
    let before = log_likelihood(seqs, &current);
    let mut best: Option<(Params, f64, usize)> = None;
    for r in 0..opts.restarts.max(1) {
        let start = if r == 0 {
            current
        } else {
            Params {
                prior: rng.range(0.05, 0.95),
                learn: rng.range(0.01, 0.4),
                guess: rng.range(0.05, MAX_GUESS_SLIP),
                slip: rng.range(0.05, MAX_GUESS_SLIP),
                forget: if opts.forget { rng.range(0.0, 0.2) } else { 0.0 },
            }
        };
        let run = em(seqs, start, opts);
        if best.as_ref().is_none_or(|b| run.1 > b.1) {
            best = Some(run);
        }
    }
    let (params, log_likelihood, iterations) = best?;
    Some(SkillFit {
        params,
        log_likelihood,
        log_likelihood_before: before,
        learners: seqs.learners(),
        answers: seqs.answers(),
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answer sequences drawn from the model with `p`: `learners` learners, `n` answers each.
    pub(crate) fn simulate(p: &Params, learners: usize, n: usize, seed: u64) -> Sequences {
        let mut rng = Rng::new(seed);
        let mut seqs = Sequences::new();
        for _ in 0..learners {
            let mut known = rng.unit() < p.prior;
            let mut answers = Vec::with_capacity(n);
            for _ in 0..n {
                let right = if known { rng.unit() >= p.slip } else { rng.unit() < p.guess };
                answers.push(right);
                known = if known { rng.unit() >= p.forget } else { rng.unit() < p.learn };
            }
            seqs.push(answers);
        }
        seqs
    }

    #[test]
    fn em_recovers_the_parameters_that_generated_the_data() {
        let truth = Params { prior: 0.35, learn: 0.12, guess: 0.22, slip: 0.1, forget: 0.0 };
        let seqs = simulate(&truth, 5_000, 12, 42);
        let fit = fit_skill(&seqs, BktParams::default().into(), 1, &FitOptions::default()).expect("enough data");
        let p = fit.params;
        for (name, got, want) in [
            ("prior", p.prior, truth.prior),
            ("learn", p.learn, truth.learn),
            ("guess", p.guess, truth.guess),
            ("slip", p.slip, truth.slip),
        ] {
            assert!((got - want).abs() <= 0.05, "{name}: fitted {got:.3}, generated with {want:.3}");
        }
        assert!(fit.log_likelihood >= fit.log_likelihood_before, "{fit:?}");
    }

    #[test]
    fn the_e_step_likelihood_matches_the_forward_pass_of_the_passport_model() {
        let p = Params { prior: 0.3, learn: 0.2, guess: 0.25, slip: 0.1, forget: 0.05 };
        let seqs = simulate(&p, 50, 9, 3);
        let c = e_step(&seqs, &p, &mut Vec::new(), &mut Vec::new());
        let direct = log_likelihood(&seqs, &p);
        assert!((c.log_likelihood - direct).abs() < 1e-9 * direct.abs(), "{} vs {direct}", c.log_likelihood);
    }

    #[test]
    fn fitting_is_deterministic_for_a_seed_and_respects_the_bounds() {
        let truth = Params { prior: 0.6, learn: 0.05, guess: 0.3, slip: 0.2, forget: 0.0 };
        let seqs = simulate(&truth, 300, 8, 9);
        let opts = FitOptions::default();
        let a = fit_skill(&seqs, BktParams::default().into(), 5, &opts).unwrap();
        let b = fit_skill(&seqs, BktParams::default().into(), 5, &opts).unwrap();
        assert_eq!(a, b);
        assert!(a.params.guess < 0.5 && a.params.slip < 0.5, "{a:?}");
        assert!(a.params.guess <= MAX_GUESS_SLIP && a.params.slip <= MAX_GUESS_SLIP);
    }

    #[test]
    fn too_little_data_is_not_fitted() {
        let seqs = simulate(&BktParams::default().into(), 10, 5, 1);
        assert!(fit_skill(&seqs, BktParams::default().into(), 1, &FitOptions::default()).is_none());
    }

    #[test]
    fn forgetting_is_fitted_when_asked_and_zero_otherwise() {
        let truth = Params { prior: 0.3, learn: 0.2, guess: 0.2, slip: 0.1, forget: 0.1 };
        let seqs = simulate(&truth, 4_000, 15, 11);
        let with = fit_skill(&seqs, BktParams::default().into(), 2, &FitOptions { forget: true, ..Default::default() })
            .unwrap();
        let without = fit_skill(&seqs, BktParams::default().into(), 2, &FitOptions::default()).unwrap();
        assert_eq!(without.params.forget, 0.0);
        assert!((with.params.forget - 0.1).abs() < 0.05, "{with:?}");
        assert!(with.log_likelihood > without.log_likelihood);
    }

    #[test]
    fn a_hinted_answer_at_weight_zero_only_lets_the_learner_learn() {
        let p = Params { prior: 0.3, learn: 0.2, guess: 0.2, slip: 0.1, forget: 0.0 };
        assert!((p.update(0.3, true, 0.0) - (0.3 + 0.7 * 0.2)).abs() < 1e-12);
        let b = p.bkt();
        assert!((p.update(0.3, true, 1.0) - crate::passport::bkt::update(0.3, true, &b)).abs() < 1e-12);
    }
}
