//! The eval report: a terminal table, JSON and Markdown, the offline-vs-LLM comparison, and
//! the gate against `evals/thresholds.toml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::run::CaseResult;
use super::score::{DIMENSIONS, MRBENCH};

/// One engine's totals.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub engine: String,
    pub cases: usize,
    pub passed: usize,
    pub pass_rate: f64,
    /// Per dimension: the share of cases where it applies that pass it.
    pub dimensions: BTreeMap<String, Option<f64>>,
    /// `case: check: detail` of each failed check.
    pub failures: Vec<String>,
    /// The LLM judge's dimension scores, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<BTreeMap<String, Option<f64>>>,
}

/// Totals of a run.
pub fn summarize(engine: &str, results: &[CaseResult]) -> Summary {
    let passed = results.iter().filter(|r| r.passed).count();
    let dimensions = DIMENSIONS
        .iter()
        .map(|d| {
            let judged: Vec<bool> = results.iter().filter_map(|r| r.dimensions.get(d).copied().flatten()).collect();
            let score =
                (!judged.is_empty()).then(|| judged.iter().filter(|p| **p).count() as f64 / judged.len() as f64);
            (d.to_string(), score)
        })
        .collect();
    let failures = results
        .iter()
        .flat_map(|r| r.checks.iter().filter(|c| !c.passed).map(move |c| format!("{}: {}: {}", r.id, c.name, c.detail)))
        .collect();
    let judged: Vec<&BTreeMap<String, Option<bool>>> = results.iter().filter_map(|r| r.judge.as_ref()).collect();
    let judge = (!judged.is_empty()).then(|| {
        MRBENCH
            .iter()
            .map(|d| {
                let v: Vec<bool> = judged.iter().filter_map(|j| j.get(*d).copied().flatten()).collect();
                (d.to_string(), (!v.is_empty()).then(|| v.iter().filter(|p| **p).count() as f64 / v.len() as f64))
            })
            .collect()
    });
    Summary {
        judge,
        engine: engine.into(),
        cases: results.len(),
        passed,
        pass_rate: if results.is_empty() { 0.0 } else { passed as f64 / results.len() as f64 },
        dimensions,
        failures,
    }
}

/// The minimum scores of one engine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    #[serde(default)]
    pub pass_rate: Option<f64>,
    #[serde(default)]
    pub dimensions: BTreeMap<String, f64>,
}

/// `evals/thresholds.toml`: engine → thresholds.
pub type Thresholds = BTreeMap<String, Threshold>;

/// What falls short of the thresholds.
pub fn gate(s: &Summary, thresholds: &Thresholds) -> Vec<String> {
    let Some(t) = thresholds.get(&s.engine) else { return vec![] };
    let mut out = Vec::new();
    if let Some(min) = t.pass_rate
        && s.pass_rate < min
    {
        out.push(format!("{}: pass rate {:.3} is below {min}", s.engine, s.pass_rate));
    }
    for (d, min) in &t.dimensions {
        match s.dimensions.get(d) {
            Some(Some(score)) if score < min => out.push(format!("{}: {d} {score:.3} is below {min}", s.engine)),
            None => out.push(format!("{}: unknown dimension {d} in the thresholds", s.engine)),
            _ => {}
        }
    }
    out
}

fn mark(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "ok",
        Some(false) => "FAIL",
        None => "-",
    }
}

fn short(d: &str) -> String {
    d.split('_').map(|w| w.chars().next().unwrap_or(' ').to_ascii_uppercase()).collect()
}

/// The per-case table (one block per engine), then the totals side by side.
pub fn table(runs: &[(Summary, Vec<CaseResult>)]) -> String {
    let mut out = String::new();
    let width = runs.iter().flat_map(|(_, r)| r.iter().map(|c| c.id.len())).max().unwrap_or(4).max(4);
    for (s, results) in runs {
        let heads: Vec<String> = DIMENSIONS.iter().map(|d| format!("{:<4}", short(d))).collect();
        out.push_str(&format!("engine {}\n{:<width$}  pass  {}\n", s.engine, "case", heads.join(" ")));
        for r in results {
            let dims: Vec<String> =
                DIMENSIONS.iter().map(|d| format!("{:<4}", mark(r.dimensions.get(d).copied().flatten()))).collect();
            out.push_str(&format!(
                "{:<width$}  {:<4}  {}\n",
                r.id,
                if r.passed { "ok" } else { "FAIL" },
                dims.join(" ")
            ));
        }
        out.push('\n');
    }
    out.push_str(&format!("{:<24}", "score"));
    for (s, _) in runs {
        out.push_str(&format!("{:>12}", s.engine));
    }
    out.push('\n');
    out.push_str(&format!("{:<24}", "cases passed"));
    for (s, _) in runs {
        out.push_str(&format!("{:>12}", format!("{}/{}", s.passed, s.cases)));
    }
    out.push('\n');
    for d in DIMENSIONS {
        out.push_str(&format!("{d:<24}"));
        for (s, _) in runs {
            out.push_str(&format!(
                "{:>12}",
                s.dimensions.get(d).copied().flatten().map_or("n/a".into(), |v| format!("{v:.3}"))
            ));
        }
        out.push('\n');
    }
    for (s, _) in runs {
        if let Some(j) = &s.judge {
            let line: Vec<String> = MRBENCH
                .iter()
                .map(|d| {
                    format!("{}={}", short(d), j.get(*d).copied().flatten().map_or("n/a".into(), |v| format!("{v:.2}")))
                })
                .collect();
            out.push_str(&format!("LLM judge ({}): {}\n", s.engine, line.join(" ")));
        }
    }
    out.push_str(&format!("\n{}: {}\n", DIMENSIONS.map(short).join(" "), DIMENSIONS.join(", ")));
    out
}

/// The Markdown report.
pub fn markdown(runs: &[(Summary, Vec<CaseResult>)]) -> String {
    let mut out = String::from("# Eval report\n\n| score |");
    for (s, _) in runs {
        out.push_str(&format!(" {} |", s.engine));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(runs.len()));
    out.push_str("\n| cases passed |");
    for (s, _) in runs {
        out.push_str(&format!(" {}/{} |", s.passed, s.cases));
    }
    for d in DIMENSIONS {
        out.push_str(&format!("\n| {d} |"));
        for (s, _) in runs {
            out.push_str(&format!(
                " {} |",
                s.dimensions.get(d).copied().flatten().map_or("n/a".into(), |v| format!("{v:.3}"))
            ));
        }
    }
    out.push('\n');
    for (s, results) in runs {
        out.push_str(&format!(
            "\n## {}\n\n| case | pass | {} |\n|---|---|{}\n",
            s.engine,
            DIMENSIONS.join(" | "),
            "---|".repeat(DIMENSIONS.len())
        ));
        for r in results {
            let dims: Vec<&str> = DIMENSIONS.iter().map(|d| mark(r.dimensions.get(d).copied().flatten())).collect();
            out.push_str(&format!("| {} | {} | {} |\n", r.id, if r.passed { "ok" } else { "FAIL" }, dims.join(" | ")));
        }
        if !s.failures.is_empty() {
            out.push_str("\nFailed checks:\n\n");
            for f in &s.failures {
                out.push_str(&format!("- {f}\n"));
            }
        }
    }
    out
}
