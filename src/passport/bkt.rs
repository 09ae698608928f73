//! Bayesian Knowledge Tracing (Corbett & Anderson, 1995): the probability that a learner knows
//! a skill, updated by each observed answer.

use crate::content::BktParams;

/// The mastery after observing one answer: the Bayesian posterior given the answer, then the
/// chance of learning from the opportunity.
///
/// P(L | correct) = P(L)(1−S) / (P(L)(1−S) + (1−P(L))G)
/// P(L | wrong)   = P(L)S / (P(L)S + (1−P(L))(1−G))
/// P(L_next)      = P(L | obs) + (1 − P(L | obs)) T
pub fn update(p: f64, correct: bool, b: &BktParams) -> f64 {
    let (known, unknown) =
        if correct { (p * (1.0 - b.slip), (1.0 - p) * b.guess) } else { (p * b.slip, (1.0 - p) * (1.0 - b.guess)) };
    // an answer that cannot happen under the parameters (a slip of 0 and a wrong answer from a
    // learner at 1.0) carries no information: keep the estimate rather than divide by zero
    let posterior = if known + unknown > 0.0 { known / (known + unknown) } else { p };
    (posterior + (1.0 - posterior) * b.learn).clamp(0.0, 1.0)
}

/// Answers that pull a learner's accuracy so far away from the mean count as this many.
pub const ACCURACY_SMOOTHING: f64 = 5.0;

/// A skill's starting estimate for a learner who got `right` of `answers` right so far on
/// other skills (the individualised prior): the prior moved on the logit scale by `weight`
/// times how far the learner's smoothed accuracy is from `mean`. With no answers yet, or a
/// weight of 0 (standard BKT), it is the prior.
pub fn start_prior(prior: f64, weight: f64, mean: f64, right: u32, answers: u32) -> f64 {
    if weight == 0.0 || answers == 0 {
        return prior;
    }
    let m = mean.clamp(0.01, 0.99);
    let acc = (f64::from(right) + ACCURACY_SMOOTHING * m) / (f64::from(answers) + ACCURACY_SMOOTHING);
    let logit = |p: f64| {
        let p = p.clamp(1e-4, 1.0 - 1e-4);
        (p / (1.0 - p)).ln()
    };
    let shifted = logit(prior) + weight * (logit(acc) - logit(m));
    1.0 / (1.0 + (-shifted).exp())
}

/// The probability that the next answer is correct at mastery `p`.
pub fn p_correct(p: f64, b: &BktParams) -> f64 {
    p * (1.0 - b.slip) + (1.0 - p) * b.guess
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_follows_the_standard_equations_on_a_known_sequence() {
        let b = BktParams { prior: 0.3, learn: 0.1, slip: 0.1, guess: 0.2 };
        // hand-computed with the textbook equations
        let mut p = b.prior;
        let mut expected = Vec::new();
        for &c in &[true, true, false, true] {
            let post = if c { p * 0.9 / (p * 0.9 + (1.0 - p) * 0.2) } else { p * 0.1 / (p * 0.1 + (1.0 - p) * 0.8) };
            p = post + (1.0 - post) * 0.1;
            expected.push(p);
        }
        // and written out as literals, so a change to both sides cannot go unnoticed
        let literal = [
            // 0.27 / (0.27 + 0.14) = 0.658536…, then + 0.1 × (1 − 0.658536…)
            0.692_682_926_829_268_4,
            0.919_230_769_230_769_3,
            0.628_501_228_501_228_7,
            0.895_507_947_477_539_9,
        ];
        let mut p = b.prior;
        for (n, (&c, (&want, &lit))) in
            [true, true, false, true].iter().zip(expected.iter().zip(literal.iter())).enumerate()
        {
            p = update(p, c, &b);
            assert!((p - want).abs() < 1e-9, "step {n}: {p} vs {want}");
            assert!((p - lit).abs() < 1e-9, "step {n}: {p} vs literal {lit}");
        }
    }

    #[test]
    fn right_answers_raise_mastery_and_wrong_ones_lower_it() {
        let b = BktParams::default();
        assert!(update(0.5, true, &b) > 0.5);
        assert!(update(0.5, false, &b) < 0.5);
        assert!((p_correct(1.0, &b) - (1.0 - b.slip)).abs() < 1e-12);
    }
}

#[cfg(test)]
mod edge_tests {
    use super::*;

    #[test]
    fn impossible_answers_leave_the_estimate_finite() {
        let b = BktParams { prior: 0.3, learn: 0.0, slip: 0.0, guess: 0.0 };
        let after_right = update(0.3, true, &b);
        let after_wrong = update(after_right, false, &b);
        assert_eq!(after_right, 1.0);
        assert!(after_wrong.is_finite() && (0.0..=1.0).contains(&after_wrong), "{after_wrong}");
    }
}
