//! `tutor passport fit` and `tutor passport evaluate`: the learner model learned from, and
//! measured on, real answers.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{load_or_report, progress_bar};
use crate::app::App;
use crate::app::model::{FitReport, FitRequest, Source};
use crate::config::Config;
use crate::content::{SkillId, load_library};
use crate::ids::now_ms;
use crate::passport::evaluate::{self, Evaluation, Log, LogBuilder};
use crate::passport::fit::Params;
use crate::passport::{Verb, validate_statement};

/// `tutor passport fit`.
#[derive(Debug, clap::Args)]
pub struct FitArgs {
    /// Only the skills of this course (repeat for several)
    #[arg(long = "course")]
    courses: Vec<String>,
    /// Only this skill (repeat for several)
    #[arg(long = "skill")]
    skills: Vec<String>,
    /// Only answers given on or after this day (YYYY-MM-DD) or time (RFC 3339)
    #[arg(long)]
    since: Option<String>,
    /// Seed of the restarts (the same data and seed give the same parameters)
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Return every skill to its authored (or default) parameters
    #[arg(long, conflicts_with_all = ["courses", "skills", "since"])]
    reset: bool,
    /// Leave replaying the passports to the running servers
    #[arg(long)]
    no_recompute: bool,
    #[arg(long)]
    json: bool,
}

/// `tutor passport evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Our events as JSON Lines (as POST /v1/events takes them), or a CSV log with columns
    /// user_id, skill, correct (in order; optional order_id or timestamp, hint_count)
    file: PathBuf,
    /// csv or jsonl [default: from the file's extension]
    #[arg(long)]
    format: Option<String>,
    /// Share of the learners held out of the fit
    #[arg(long, default_value_t = 0.2)]
    test_share: f64,
    /// Exactly these learners are held out (a file with one learner id per line), to compare
    /// with another tool on its split
    #[arg(long)]
    test_learners: Option<PathBuf>,
    /// Seed of the split and of the fit's restarts
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

/// A day or a time, in ms since the Unix epoch.
fn parse_since(s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("--since '{s}': expected a day (2026-09-01) or an RFC 3339 time"))?;
    Ok(day.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
}

pub async fn fit(cfg: Config, args: FitArgs) -> anyhow::Result<ExitCode> {
    let lib = load_or_report(&cfg, args.json)?;
    for c in &args.courses {
        anyhow::ensure!(lib.courses.contains_key(c), "no course '{c}' in the content");
    }
    let skills: Vec<SkillId> = args.skills.iter().map(|s| SkillId::parse(s)).collect::<Result<_, _>>()?;
    for s in &skills {
        anyhow::ensure!(lib.skills.contains_key(s), "no skill '{s}' in the content");
    }
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let app = App::open(cfg).await.context("opening the learner store")?;
    let lib = app.set_library(lib);
    let started = std::time::Instant::now();
    let (report, version) = if args.reset {
        let m = app.reset_model().await?;
        (None, m.version)
    } else {
        let progress = progress_bar(0, args.json);
        progress.set_message("skills");
        let req = FitRequest { courses: args.courses, skills, since, seed: args.seed };
        let r = app.fit_model(&lib, &req, &progress).await?;
        progress.finish_and_clear();
        let v = r.version;
        (Some(r), v)
    };
    let fit_ms = started.elapsed().as_millis();
    let recomputed = if args.no_recompute {
        None
    } else {
        let stale = app.stores.passports.stale(version, 100_000).await?.len();
        let progress = progress_bar(stale as u64, args.json);
        progress.set_message("passports");
        let n = app.recompute_passports(&progress).await?;
        progress.finish_and_clear();
        Some(n)
    };
    if args.json {
        let body = serde_json::json!({
            "version": version,
            "reset": args.reset,
            "fit": report,
            "recomputed_passports": recomputed,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        });
        out!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &report {
        None => out!("Every skill is back on its authored (or default) parameters (version {version})."),
        Some(r) => print_fit(r, fit_ms),
    }
    match recomputed {
        Some(n) => out!("Replayed {n} passport(s) with the new parameters."),
        None => out!("Passports are replayed by the running servers (or the next `tutor passport fit`)."),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_fit(r: &FitReport, ms: u128) {
    out!(
        "Fitted from {} answer(s) of {} learner(s) in {:.1} s (version {}).",
        r.answers,
        r.learners,
        ms as f64 / 1000.0,
        r.version
    );
    out!(
        "{:<34} {:>8} {:>8}  {:<13} {:<13} {:<13} {:<13} {:>9}",
        "skill",
        "learners",
        "answers",
        "prior",
        "learn",
        "guess",
        "slip",
        "LL gain"
    );
    let pair = |a: f64, b: f64| format!("{a:.2} → {b:.2}");
    let unanswered = r.skills.iter().filter(|s| s.answers == 0).count();
    for s in r.skills.iter().filter(|s| s.answers > 0) {
        let (b, a) = (s.before, s.after);
        match s.source {
            Source::Fitted => out!(
                "{:<34} {:>8} {:>8}  {:<13} {:<13} {:<13} {:<13} {:>+9.1}",
                s.skill.as_str(),
                s.learners,
                s.answers,
                pair(b.prior, a.prior),
                pair(b.learn, a.learn),
                pair(b.guess, a.guess),
                pair(b.slip, a.slip),
                s.log_likelihood_gain.unwrap_or(0.0)
            ),
            _ => out!(
                "{:<34} {:>8} {:>8}  {}",
                s.skill.as_str(),
                s.learners,
                s.answers,
                s.note.as_deref().unwrap_or("kept")
            ),
        }
    }
    if unanswered > 0 {
        out!("{unanswered} skill(s) without answers keep their authored (or default) parameters.");
    }
    if r.prior_weight > 0.0 {
        out!(
            "Individualised prior: weight {} (a learner's accuracy so far, against the mean {:.2}, moves where they start on a new skill).",
            r.prior_weight,
            r.mean_accuracy
        );
    } else {
        out!(
            "Individualised prior: off (moving the prior by the learner's accuracy did not predict these answers better)."
        );
    }
}

/// Reads a log in `format` (`csv` or `jsonl`); our events need the content, to know each
/// component's skills.
fn read_log(cfg: &Config, path: &std::path::Path, format: &str) -> anyhow::Result<Log> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(text).map_err(|e| anyhow::anyhow!("{}: not UTF-8 ({e})", path.display()))?;
    let name = path.display().to_string();
    match format {
        "csv" => Ok(evaluate::read_csv(&name, &text)?),
        "jsonl" => {
            let lib = load_or_report(cfg, false).context("our events name components: the content must load")?;
            let now = now_ms();
            let mut b = LogBuilder::default();
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let e = serde_json::from_str::<serde_json::Value>(line)
                    .map_err(|e| format!("not JSON: {e}"))
                    .and_then(|v| validate_statement(&v, &lib, now))
                    .map_err(|reason| anyhow::anyhow!("{name}:{}: {reason}", n + 1))?;
                if e.verb != Verb::Answered {
                    continue;
                }
                let Some(c) = lib.components.get(&e.component) else { continue };
                let skills: Vec<&str> = c.skills.iter().map(SkillId::as_str).collect();
                b.push(e.learner.as_str(), &skills, e.success.unwrap_or(false), e.hints_used.unwrap_or(0), e.timestamp);
            }
            Ok(b.build())
        }
        other => anyhow::bail!("unknown format '{other}' (expected csv or jsonl)"),
    }
}

pub fn evaluate(cfg: &Config, args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.test_share > 0.0 && args.test_share < 1.0,
        "--test-share must be between 0 and 1 (exclusive), not {}",
        args.test_share
    );
    let format = match &args.format {
        Some(f) => f.to_ascii_lowercase(),
        None => match args.file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => "csv".into(),
            Some("jsonl" | "ndjson" | "json") => "jsonl".into(),
            _ => anyhow::bail!("{}: say --format csv or --format jsonl", args.file.display()),
        },
    };
    let log = read_log(cfg, &args.file, &format)?;
    anyhow::ensure!(log.learners.len() >= 2, "{}: needs answers of at least two learners", args.file.display());
    let test: Option<HashSet<String>> = args
        .test_learners
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))
                .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
        })
        .transpose()?;
    // the skills the content knows keep their authored parameters as the baseline
    let lib = load_library(&cfg.content_dir, &cfg.load_options()).ok();
    let current = |name: &str| -> Params {
        let authored = SkillId::parse(name).ok().and_then(|s| lib.as_ref().map(|l| l.authored_bkt(&s)));
        authored.unwrap_or_default().into()
    };
    let progress = progress_bar(log.skills.len() as u64, args.json);
    progress.set_message("skills");
    let started = std::time::Instant::now();
    let ev = evaluate::evaluate(&log, &current, args.test_share, test.as_ref(), args.seed, &|| progress.inc(1));
    progress.finish_and_clear();
    if args.json {
        out!("{}", serde_json::to_string_pretty(&ev)?);
    } else {
        print_evaluation(&ev, started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_evaluation(ev: &Evaluation, secs: f64) {
    out!(
        "{} answer(s) of {} learner(s) on {} skill(s); {} learner(s) held out, {} skill(s) fitted on the other {} ({secs:.1} s).",
        ev.answers,
        ev.learners,
        ev.skills,
        ev.test_learners,
        ev.skills_fitted,
        ev.train_learners
    );
    out!("{:<15} {:>7} {:>7} {:>9} {:>12}  {}", "parameters", "AUC", "RMSE", "log-loss", "predictions", "what");
    for r in &ev.results {
        out!(
            "{:<15} {:>7.4} {:>7.4} {:>9.4} {:>12}  {}",
            r.name,
            r.scores.auc,
            r.scores.rmse,
            r.scores.log_loss,
            r.scores.predictions,
            r.description
        );
    }
    for s in &ev.skipped {
        out!("not measured: {s}");
    }
    if let Some(fitted) = ev.results.iter().find(|r| r.name == "fitted") {
        out!("Calibration of the fitted parameters (predicted chance of a right answer → share right):");
        for b in fitted.scores.calibration.iter().filter(|b| b.predictions > 0) {
            out!(
                "  {:.1}–{:.1}: {:>8} prediction(s), mean {:.3} → {:.3} right",
                b.from,
                b.to,
                b.predictions,
                b.predicted,
                b.observed
            );
        }
    }
}
