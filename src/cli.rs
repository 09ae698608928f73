//! The `tutor` command line: `validate`, `ingest`, `search`, `serve`, `passport`, `events import`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{self, App, Stores};
use crate::config::Config;
use crate::content::{ContentError, Format, Level, Library, SkillId, load_library};
use crate::ids::now_ms;
use crate::passport::{self, LearnerId, Recorded, validate_statement};
use crate::retrieval::{Hit, SearchFilter, SearchMode, SearchRequest};

/// `println!` that ends the program quietly when stdout is closed (`tutor search … | head`),
/// instead of panicking on the broken pipe.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        $crate::cli::written(writeln!(std::io::stdout().lock(), $($t)*));
    }};
}

/// `print!`, as [`out!`].
macro_rules! out_part {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        $crate::cli::written(write!(std::io::stdout().lock(), $($t)*));
    }};
}

mod model;

/// Exits quietly (status 0) when stdout was closed by its reader, with status 1 on another
/// write error.
pub fn written(r: std::io::Result<()>) {
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// An agentic AI tutor that lives in the content layer.
#[derive(Debug, Parser)]
#[command(name = "tutor", version, about, after_help = env_help())]
pub struct Cli {
    /// Data directory (index, caches, database) [env: TUTOR_DATA_DIR] [default: ./data]
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Configuration file [env: TUTOR_CONFIG] [default: ./tutor.toml when present]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

fn env_help() -> String {
    format!("Environment: {} (see README), RUST_LOG for log levels.", crate::config::env_vars().join(", "))
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a content tree and report every problem as path:line: message
    Validate {
        /// A folder of courses or one course folder [default: the configured content dir]
        path: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Validate, chunk, embed and index the content (only a fully valid tree is indexed)
    Ingest {
        path: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Search the index
    Search {
        #[arg(required_unless_present = "eval")]
        query: Option<String>,
        #[arg(long)]
        course: Option<String>,
        /// Restrict to a skill (repeat for any of several)
        #[arg(long = "skill")]
        skills: Vec<String>,
        #[arg(long = "level")]
        levels: Vec<String>,
        #[arg(long = "format")]
        formats: Vec<String>,
        /// Number of components to return
        #[arg(short, default_value_t = 5)]
        k: usize,
        #[arg(long)]
        json: bool,
        /// Ask a running service (e.g. http://127.0.0.1:8080) instead of opening the index;
        /// its token, if it checks them, in TUTOR_TOKEN
        #[arg(long, conflicts_with = "eval")]
        server: Option<String>,
        /// Measure retrieval on labelled learner questions instead (YAML: question, skill;
        /// repeat for several files): recall@1, recall@5 and MRR@5 for BM25, dense and hybrid
        #[arg(long, value_name = "FILE", conflicts_with_all = ["query", "course", "skills", "levels", "formats", "k"])]
        eval: Vec<PathBuf>,
        /// With --eval: also list the questions hybrid search did not answer first
        #[arg(long, requires = "eval")]
        misses: bool,
    },
    /// Run the HTTP service (ingests the content at start when the index is missing or stale)
    Serve {
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        host: Option<String>,
    },
    /// Show a learner's skill passport; `passport fit` learns the BKT parameters from the stored
    /// answers, `passport evaluate FILE` measures how well the model predicts answers
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Passport {
        #[command(subcommand)]
        command: Option<PassportCommand>,
        #[arg(required = true)]
        learner: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Ask the tutor a question as a learner: streams the answer, prints the tool trace to stderr
    Ask {
        question: String,
        #[arg(long)]
        learner: String,
        /// The page the learner is on
        #[arg(long)]
        component: Option<String>,
        /// Continue a session
        #[arg(long)]
        session: Option<String>,
        /// Print only the final result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Run the eval suite (evals/cases) and score the tutor; non-zero below evals/thresholds.toml
    Eval(EvalArgs),
    /// Learner events
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Apply the retention policy now: delete transcripts and raw events older than TUTOR_RETENTION_DAYS
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Demo learners of the sample courses (ids starting with demo-), for trying /educator
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
    /// Mint a bearer token with the configured secret (TUTOR_JWT_SECRET), for operators and tests
    Token {
        /// learner, educator, admin or service
        #[arg(long)]
        role: String,
        /// The subject: a learner id for a learner token, a name otherwise
        #[arg(long)]
        sub: String,
        /// A course the token covers (educator, service); repeat for several
        #[arg(long = "course")]
        courses: Vec<String>,
        /// A class or team, for group analytics
        #[arg(long)]
        group: Option<String>,
        /// Lifetime: 90s, 15m, 1h, 7d
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

/// `tutor eval …`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// offline, replay or live
    #[arg(long, default_value = "offline")]
    engine: String,
    /// The evals folder: cases/, replays/, thresholds.toml, report/
    #[arg(long, default_value = "evals")]
    evals: PathBuf,
    /// A case file, a folder, or a file pattern with * [default: <evals>/cases]
    #[arg(long)]
    cases: Option<PathBuf>,
    /// Record the live endpoint's replies into evals/replays (live only)
    #[arg(long)]
    record: bool,
    /// Replay only the cases that have a recording (replay only)
    #[arg(long)]
    recorded: bool,
    /// Only these cases: ids separated by commas
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also have the model judge each answer with prompts/judge.md (replay or live)
    #[arg(long)]
    judge: bool,
    /// Where the JSON and Markdown reports go [default: <evals>/report]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the JSON report to stdout instead of the table
    #[arg(long)]
    json: bool,
}

/// `tutor passport fit|evaluate …`.
#[derive(Debug, Subcommand)]
pub enum PassportCommand {
    /// Fit each skill's BKT parameters (prior, learn, guess, slip) to the stored answers by
    /// expectation–maximisation; every passport uses them from then on (and is replayed)
    Fit(model::FitArgs),
    /// Next-answer prediction on learners held out of the fit: AUC, RMSE, log-loss and
    /// calibration for the authored parameters, fitted ones and the extensions
    Evaluate(model::EvaluateArgs),
}

/// `tutor retention …`.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Delete what is older than the policy (or --days) allows, and say what went
    Run {
        /// Days to keep [default: TUTOR_RETENTION_DAYS]
        #[arg(long)]
        days: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

/// `tutor demo …`.
#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Add the demo learners (groups, a month of views and answers, the flags they raise)
    Seed {
        #[arg(long)]
        json: bool,
    },
    /// Erase every demo learner and everything about them
    Clear {
        #[arg(long)]
        json: bool,
    },
}

/// `tutor events …`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Import statements from a JSON Lines file (one statement per line, as POST /v1/events
    /// takes them); every line is checked first, and nothing is stored if any is bad
    Import {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Statements recorded per transaction by `tutor events import`.
const IMPORT_BATCH: usize = 500;

/// Runs the command line; the exit code is 0 on success, 1 on failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // qdrant-edge warns about an internal mmap probe on every open; it is not actionable
    let default_log =
        if matches!(cli.command, Command::Serve { .. }) { "info,qdrant_edge=error" } else { "warn,qdrant_edge=error" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_log.into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(cli.config.as_deref()).context("loading configuration")?;
    if let Some(d) = cli.data_dir {
        cfg.data_dir = d;
    }
    match cli.command {
        Command::Validate { path, json } => {
            let root = path.unwrap_or_else(|| cfg.content_dir.clone());
            match load_library(&root, &cfg.load_options()) {
                Ok(lib) => {
                    if json {
                        out!(
                            "{}",
                            serde_json::json!({"ok": true, "courses": lib.courses.len(), "skills": lib.skills.len(), "components": lib.components.len()})
                        );
                    } else {
                        out!(
                            "{}: {} course(s), {} skill(s), {} component(s), no problems",
                            root.display(),
                            lib.courses.len(),
                            lib.skills.len(),
                            lib.components.len()
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    print_content_errors(&e, json, false);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Ingest { path, json } => {
            let root = path.unwrap_or_else(|| cfg.content_dir.clone());
            let lib = match load_library(&root, &cfg.load_options()) {
                Ok(lib) => lib,
                Err(e) => {
                    print_content_errors(&e, json, true);
                    return Ok(ExitCode::FAILURE);
                }
            };
            run_ingest(&cfg, &lib, json).await
        }
        Command::Search { eval, json, misses, .. } if !eval.is_empty() => search_eval(&cfg, &eval, json, misses).await,
        Command::Search { query, course, skills, levels, formats, k, json, server: Some(server), .. } => {
            let query = query.unwrap_or_default();
            // the bound of a local search, where the service would refuse what is outside it
            let k = k.clamp(1, crate::retrieval::MAX_K);
            let mut params = vec![("q", query), ("k", k.to_string())];
            params.extend(course.map(|c| ("course", c)));
            for (name, values) in [("skill", skills), ("level", levels), ("format", formats)] {
                if !values.is_empty() {
                    params.push((name, values.join(",")));
                }
            }
            let hits = search_server(&server, &params).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&hits)?);
            } else {
                print_hits(&hits);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Search { query, course, skills, levels, formats, k, json, server: None, .. } => {
            let query = query.unwrap_or_default();
            let filter = SearchFilter {
                course,
                skills: skills.iter().map(|s| SkillId::parse(s)).collect::<Result<_, _>>()?,
                levels: levels.iter().map(|s| s.parse::<Level>()).collect::<Result<_, _>>()?,
                formats: formats.iter().map(|s| s.parse::<Format>()).collect::<Result<_, _>>()?,
            };
            let retriever = app::open_retriever(&cfg).await.context("opening the index")?;
            let hits = retriever.search(&SearchRequest { text: query, filter, k }).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&hits)?);
            } else {
                print_hits(&hits);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { port, host } => {
            if let Some(p) = port {
                cfg.port = p;
            }
            if let Some(h) = host {
                cfg.host = h;
            }
            let (addr, server) = crate::api::serve(cfg, shutdown_signal()).await.context("starting the service")?;
            tracing::info!(%addr, "tutor listening on http://{addr}");
            server.await.context("serving")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Passport { command: Some(PassportCommand::Fit(args)), .. } => model::fit(cfg, args).await,
        Command::Passport { command: Some(PassportCommand::Evaluate(args)), .. } => model::evaluate(&cfg, args),
        Command::Passport { command: None, learner, json } => {
            let learner = LearnerId::parse(&learner.unwrap_or_default())?;
            let mut lib = load_or_report(&cfg, json)?;
            let stores = Stores::open(&cfg).await.context("opening the learner store")?;
            lib.learned = stores.learned().await?;
            let state = stores.passports.learner(&learner).await?;
            let p = passport::passport(&lib, &cfg.passport, &learner, &state);
            if json {
                out!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print_passport(&p);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Events { command: EventsCommand::Import { file, json } } => import_events(&cfg, &file, json).await,
        Command::Ask { question, learner, component, session, json } => {
            ask(cfg, question, learner, component, session, json).await
        }
        Command::Eval(args) => eval(cfg, args).await,
        Command::Retention { command: RetentionCommand::Run { days, json } } => {
            let Some(days) = days.or(cfg.retention_days).filter(|d| *d > 0) else {
                anyhow::bail!("no retention policy: set TUTOR_RETENTION_DAYS or pass --days N (at least 1)");
            };
            let lib = load_or_report(&cfg, json)?;
            let app = App::open(cfg).await.context("opening the service")?;
            let lib = app.set_library(lib);
            let r = app.apply_retention(days, &lib).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                out!(
                    "Deleted what is older than {days} day(s): {} event(s), {} session(s), {} turn(s). Passports are kept.",
                    r.events,
                    r.sessions,
                    r.turns
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { command } => {
            let lib = load_or_report(&cfg, false)?;
            let app = App::open(cfg).await.context("opening the service")?;
            let lib = app.set_library(lib);
            match command {
                DemoCommand::Seed { json } => {
                    // the index, for the demo learners' tutor turns (a running server holds it:
                    // then they are seeded without a conversation)
                    if let Err(e) = crate::app::serve_current(&app.index, &app.retriever).await {
                        tracing::warn!(error = %e, "no index for the demo's tutor turns");
                    }
                    let n = app.demo_seed(&lib).await?;
                    if json {
                        out!("{}", serde_json::to_string_pretty(&n)?);
                    } else {
                        out!(
                            "Seeded {} demo learner(s), {} event(s), {} flag(s). `tutor demo clear` removes them.",
                            n.learners,
                            n.events,
                            n.flags
                        );
                    }
                }
                DemoCommand::Clear { json } => {
                    let n = crate::app::demo::clear(&app).await?;
                    if json {
                        out!("{}", serde_json::json!({"erased_learners": n}));
                    } else {
                        out!("Erased {n} demo learner(s).");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { role, sub, courses, group, ttl } => {
            let req = crate::auth::TokenRequest {
                role: role.parse()?,
                sub,
                courses,
                group,
                ttl: crate::auth::parse_ttl(&ttl).map_err(anyhow::Error::msg)?,
            };
            out!("{}", crate::auth::mint(&cfg.auth, &req)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The configured content, or an error naming how many problems it has.
fn load_or_report(cfg: &Config, json: bool) -> anyhow::Result<Library> {
    load_library(&cfg.content_dir, &cfg.load_options()).map_err(|e| {
        print_content_errors(&e, json, false);
        anyhow::anyhow!("the content in {} does not validate", cfg.content_dir.display())
    })
}

fn progress_bar(len: u64, hidden: bool) -> ProgressBar {
    if hidden || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

async fn import_events(cfg: &Config, file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let lib = load_or_report(cfg, json)?;
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text = String::from_utf8(text).map_err(|e| anyhow::anyhow!("{}: not UTF-8 ({e})", file.display()))?;
    let now = now_ms();
    let mut events = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let checked = serde_json::from_str::<serde_json::Value>(line)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| validate_statement(&v, &lib, now));
        match checked {
            Ok(e) => events.push(e),
            Err(reason) => problems.push(format!("{}:{}: {reason}", file.display(), n + 1)),
        }
    }
    if !problems.is_empty() {
        if json {
            out!("{}", serde_json::json!({"ok": false, "errors": problems}));
        } else {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!("{} bad line(s); nothing was imported.", problems.len());
        }
        return Ok(ExitCode::FAILURE);
    }
    let stores = Stores::open(cfg).await.context("opening the learner store")?;
    let mut lib = lib;
    lib.learned = stores.learned().await?;
    let started = std::time::Instant::now();
    let progress = progress_bar(events.len() as u64, json);
    progress.set_message("events");
    let mut total = Recorded::default();
    for batch in events.chunks(IMPORT_BATCH) {
        let r = stores
            .passports
            .record(batch, &lib)
            .await
            .context("recording events (batches before this one are stored; re-running the import is safe)")?;
        total.accepted += r.accepted;
        total.duplicates += r.duplicates;
        progress.inc(batch.len() as u64);
    }
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if json {
        out!(
            "{}",
            serde_json::json!({"ok": true, "accepted": total.accepted, "duplicates": total.duplicates, "seconds": secs})
        );
    } else {
        out!(
            "Imported {} event(s) ({} duplicate(s) skipped) in {secs:.2} s into {}.",
            total.accepted,
            total.duplicates,
            stores.db.backend().as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn eval(cfg: Config, args: EvalArgs) -> anyhow::Result<ExitCode> {
    let EvalArgs { engine, evals, cases, record, recorded, only, judge, out, json } = args;
    use crate::eval::{Engine, RunOptions, Thresholds};
    let engine: Engine = engine.parse().map_err(anyhow::Error::msg)?;
    if record && engine != Engine::Live {
        anyhow::bail!("--record records a live endpoint: use it with --engine live");
    }
    if recorded && engine != Engine::Replay {
        anyhow::bail!("--recorded picks the recorded cases to replay: use it with --engine replay");
    }
    let files = crate::eval::case_files(&cases.unwrap_or_else(|| evals.join("cases")))?;
    let mut cases = crate::eval::load_cases(&files)?;
    if !only.is_empty() {
        let unknown: Vec<&String> = only.iter().filter(|id| !cases.iter().any(|c| &c.id == *id)).collect();
        if !unknown.is_empty() {
            anyhow::bail!(
                "--only names no such case: {}",
                unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        cases.retain(|c| only.contains(&c.id));
    }
    if recorded {
        let all = cases.len();
        cases.retain(|c| evals.join("replays").join(format!("{}.json", c.id)).is_file());
        if cases.is_empty() {
            anyhow::bail!("no case has a recording in {}", evals.join("replays").display());
        }
        if !json {
            eprintln!("replaying the {} recorded case(s) of {all}", cases.len());
        }
    }
    let thresholds: Thresholds = match std::fs::read_to_string(evals.join("thresholds.toml")) {
        Ok(t) => toml::from_str(&t).context("evals/thresholds.toml")?,
        Err(_) => {
            eprintln!("warning: no {}: scores are reported but not gated", evals.join("thresholds.toml").display());
            Thresholds::default()
        }
    };
    let lib = std::sync::Arc::new(load_or_report(&cfg, json)?);
    // the LLM engines are compared with the offline baseline on the same cases
    let mut engines = vec![Engine::Offline];
    if engine != Engine::Offline {
        engines.push(engine);
    }
    let mut runs = Vec::new();
    for e in engines {
        let opts =
            RunOptions { engine: e, record, replays: evals.join("replays"), judge: judge && e != Engine::Offline };
        let started = std::time::Instant::now();
        let results = match crate::eval::run_all(&cfg, lib.clone(), &cases, &opts).await {
            Ok(r) => r,
            Err(err) => {
                eprintln!("error: {err}");
                return Ok(ExitCode::from(2));
            }
        };
        if !json {
            eprintln!("{}: {} case(s) in {:.1} s", e.as_str(), results.len(), started.elapsed().as_secs_f64());
        }
        runs.push((crate::eval::summarize(e.as_str(), &results), results));
    }
    let out = out.unwrap_or_else(|| evals.join("report"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let report = serde_json::json!({
        "summaries": runs.iter().map(|(s, _)| s).collect::<Vec<_>>(),
        "cases": runs.iter().map(|(s, r)| (s.engine.clone(), r)).collect::<std::collections::BTreeMap<_, _>>(),
    });
    let name = engine.as_str();
    std::fs::write(out.join(format!("{name}.json")), serde_json::to_string_pretty(&report)? + "\n")?;
    std::fs::write(out.join(format!("{name}.md")), crate::eval::markdown(&runs))?;
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out_part!("{}", crate::eval::table(&runs));
        for (s, _) in &runs {
            for f in &s.failures {
                out!("  {}: {f}", s.engine);
            }
        }
        out!("reports: {}", out.join(format!("{name}.{{json,md}}")).display());
    }
    let short: Vec<String> = runs.iter().flat_map(|(s, _)| crate::eval::gate(s, &thresholds)).collect();
    if short.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for s in &short {
            eprintln!("below threshold: {s}");
        }
        Ok(ExitCode::FAILURE)
    }
}

async fn ask(
    cfg: Config,
    question: String,
    learner: String,
    component: Option<String>,
    session: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let learner = LearnerId::parse(&learner)?;
    let component = component.map(|c| crate::content::ComponentId::parse(&c)).transpose()?;
    let lib = load_or_report(&cfg, json)?;
    let app = App::open(cfg).await?;
    let lib = app.set_library(lib);
    app.open_index().await.context("opening the index")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let req = crate::agent::TurnRequest { learner, session_id: session, component, message: question, courses: None };
    let printer = tokio::spawn(async move {
        let mut out = std::io::stdout();
        while let Some(e) = rx.recv().await {
            match e {
                crate::agent::TurnEvent::Tool(t) if !json => {
                    eprintln!("· {}({}) → {}{}", t.name, t.arguments, if t.ok { "" } else { "failed: " }, t.result);
                }
                crate::agent::TurnEvent::Delta { text } if !json => {
                    let _ = write!(out, "{text}");
                    let _ = out.flush();
                }
                crate::agent::TurnEvent::Replace { message, .. } if !json => {
                    // a terminal cannot take back what it printed: say that the answer follows anew
                    let _ = write!(out, "\n\n[{message}]\n\n");
                    let _ = out.flush();
                }
                _ => {}
            }
        }
    });
    let result = app.agent.turn(lib, req, Some(tx)).await;
    let _ = printer.await;
    let r = result?;
    if json {
        out!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        out!();
        eprintln!(
            "engine {}{}, mode {}, citations: {}, tokens: {} prompt / {} completion (budget {}), session {}",
            r.engine,
            r.fallback_reason.as_deref().map(|f| format!(" ({f})")).unwrap_or_default(),
            r.mode,
            if r.citations.is_empty() {
                "none".into()
            } else {
                r.citations.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            },
            r.tokens.prompt,
            r.tokens.completion,
            r.tokens.budget,
            r.session_id
        );
        if !r.checks.is_empty() {
            let checks: Vec<String> =
                r.checks.iter().map(|c| format!("{} {}", c.check, if c.passed { "ok" } else { "FAILED" })).collect();
            eprintln!(
                "checks: {}{}",
                checks.join(", "),
                if r.actions.is_empty() { String::new() } else { format!("; then {}", r.actions.join(", ")) }
            );
        }
        for f in &r.flags {
            eprintln!("flag {} on {}: {}", if f.opened { "opened" } else { "extended" }, f.skill, f.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_passport(p: &passport::Passport) {
    out!("Skill passport of {}", p.learner);
    if p.skills.is_empty() {
        out!("no evidence yet");
        return;
    }
    let width = p.skills.iter().map(|s| s.skill.as_str().len()).max().unwrap_or(5).max(5);
    out!("{:<width$}  {:>7}  {:<10}  {:>8}  {:<7}  recent", "skill", "mastery", "band", "evidence", "trend");
    for s in &p.skills {
        out!(
            "{:<width$}  {:>7.2}  {:<10}  {:>8}  {:<7}  {}",
            s.skill.as_str(),
            s.mastery,
            s.band.as_str(),
            s.evidence,
            s.trend,
            s.recent
        );
        if let Some(d) = &s.demand_summary {
            out!("{:<width$}  {d}", "");
        }
        for m in &s.misconceptions {
            out!("{:<width$}  misconception ({} {}: \"{}\"): {}", "", m.component, m.item, m.response, m.diagnosis);
        }
    }
    for g in &p.prerequisite_gaps {
        let needed: Vec<&str> = g.needed_by.iter().map(|s| s.as_str()).collect();
        out!("gap: {} ({:.2}, {}) is needed by {}", g.name, g.mastery, g.band.as_str(), needed.join(", "));
    }
    if let Some(f) = p.format_preference.preferred {
        out!("does best with: {}", f.as_str().replace('_', " "));
    }
}

async fn run_ingest(cfg: &Config, lib: &Library, json: bool) -> anyhow::Result<ExitCode> {
    let progress = progress_bar(0, json);
    let report = crate::retrieval::ingest(cfg, &app::index(cfg)?, lib, app::embedder(cfg).await, &progress).await;
    progress.finish_and_clear();
    let report = report.context("ingest failed; the previous index is unchanged")?;
    app::keep_snapshot(cfg, lib, &report.generation).await;
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.rebuilt {
        out!(
            "Indexed {} components as {} chunks in {:.2} s: {} unchanged, {} new or changed, {} removed, {} chunks embedded.\nGeneration {} is now current.",
            report.components,
            report.chunks,
            report.elapsed_ms as f64 / 1000.0,
            report.unchanged,
            report.updated,
            report.removed,
            report.embedded_chunks,
            report.generation
        );
    } else {
        out!(
            "Index is up to date: {} components, {} chunks, all unchanged ({:.2} s).",
            report.components,
            report.chunks,
            report.elapsed_ms as f64 / 1000.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_content_errors(e: &ContentError, json: bool, ingest: bool) {
    if json {
        out!("{}", serde_json::json!({"ok": false, "errors": e.diagnostics}));
        return;
    }
    for d in &e.diagnostics {
        eprintln!("{d}");
    }
    let files: std::collections::BTreeSet<_> = e.diagnostics.iter().map(|d| &d.path).collect();
    eprintln!("{} problem(s) in {} file(s).", e.diagnostics.len(), files.len());
    if ingest {
        eprintln!("Nothing was indexed; the previous index is unchanged.");
    }
}

/// `GET /v1/search` of a running service, with `TUTOR_TOKEN` as the bearer token when set.
async fn search_server(server: &str, params: &[(&str, String)]) -> anyhow::Result<Vec<Hit>> {
    let base = server.trim_end_matches('/');
    let url = reqwest::Url::parse_with_params(&format!("{base}/v1/search"), params)
        .with_context(|| format!("'{server}' is not a URL such as http://127.0.0.1:8080"))?;
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let mut req = client.get(url).header("accept", "application/json");
    if let Ok(token) = std::env::var("TUTOR_TOKEN") {
        req = req.bearer_auth(token.trim());
    }
    let r = req.send().await.with_context(|| format!("asking {base}"))?;
    let status = r.status();
    let body = r.text().await.with_context(|| format!("reading the answer of {base}"))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
            " (set TUTOR_TOKEN to a token the service accepts)"
        } else {
            ""
        };
        anyhow::bail!("{base} answered {status}: {message}{hint}");
    }
    serde_json::from_str(&body).with_context(|| format!("{base} did not answer with search results"))
}

/// `tutor search --eval`: every question file over the current index, each mode side by side.
async fn search_eval(cfg: &Config, files: &[PathBuf], json: bool, misses: bool) -> anyhow::Result<ExitCode> {
    use crate::retrieval::eval::{QuestionSet, evaluate};
    let lib = load_library(&cfg.content_dir, &cfg.load_options())
        .map_err(|e| anyhow::anyhow!("loading the content in {}: {e}", cfg.content_dir.display()))?;
    let sets = files.iter().map(|f| QuestionSet::read(f, &lib)).collect::<Result<Vec<_>, _>>()?;
    let retriever = app::open_retriever(cfg).await.context("opening the index")?;
    let modes = [SearchMode::Bm25, SearchMode::Dense, SearchMode::Hybrid];
    let report = evaluate(&retriever, &sets, &lib, &modes).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let total: usize = sets.iter().map(|s| s.questions.len()).sum();
    let model = retriever.store().and_then(|s| s.manifest().settings.dense.as_ref().map(|d| d.model.clone()));
    out!("{total} learner questions in {} file(s); dense model: {}", sets.len(), model.as_deref().unwrap_or("none"));
    out!(
        "a hit: a component tagged with the question's skill and at most {} skills",
        crate::retrieval::eval::FOCUSED_MAX_SKILLS
    );
    let width = files.iter().map(|f| f.display().to_string().len()).max().unwrap_or(3).max(3);
    out!("{:<width$}  {:<6}  {:>9}  {:>8}  {:>8}  {:>5}", "set", "mode", "questions", "recall@1", "recall@5", "MRR@5");
    let row = |set: &str, mode: SearchMode, s: &crate::retrieval::eval::Scores| {
        out!(
            "{set:<width$}  {:<6}  {:>9}  {:>8.3}  {:>8.3}  {:>5.3}",
            mode.to_string(),
            s.questions,
            s.recall_at_1,
            s.recall_at_5,
            s.mrr_at_5
        )
    };
    for f in files {
        let f = f.display().to_string();
        for m in &report.modes {
            row(&f, m.mode, &m.files[&f]);
        }
    }
    if files.len() > 1 {
        for m in &report.modes {
            row("all", m.mode, &m.all);
        }
    }
    for s in &report.skipped {
        out!("skipped {s}");
    }
    if misses && let Some(m) = report.modes.iter().find(|m| m.mode == SearchMode::Hybrid) {
        out!("\nnot first in {} search ({}):", m.mode, m.misses.len());
        for x in &m.misses {
            let rank = x.rank.map_or_else(|| "-".to_owned(), |r| r.to_string());
            out!("  [{rank}] {} ({}): got {}", x.question, x.skill, x.got.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_hits(hits: &[Hit]) {
    if hits.is_empty() {
        out!("no results");
        return;
    }
    let width = hits.iter().map(|h| h.component_id.as_str().len()).max().unwrap_or(9).max(9);
    out!("{:>2}  {:>7}  {:<width$}  {:<10}  {:<14}  title", "#", "score", "component", "level", "format");
    for (i, h) in hits.iter().enumerate() {
        out!(
            "{:>2}  {:>7.3}  {:<width$}  {:<10}  {:<14}  {}",
            i + 1,
            h.score,
            h.component_id,
            h.level.as_str(),
            h.format.as_str(),
            h.title
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}
