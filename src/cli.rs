//! The `tutor` command line: `validate`, `ingest`, `search`, `serve`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::content::{ContentError, Format, Level, Library, SkillId, load_library};
use crate::retrieval::{EdgeStore, Hit, Retriever, SearchFilter, SearchRequest, ingest, open_current};

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
    format!("Environment: {} (see README), RUST_LOG for log levels.", crate::config::ENV_VARS.join(", "))
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
        query: String,
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
    },
    /// Run the HTTP service (ingests the content at start when the index is missing or stale)
    Serve {
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        host: Option<String>,
    },
}

/// Runs the command line; the exit code is 0 on success, 1 on failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // qdrant-edge warns about an internal mmap probe on every open; it is not actionable
    let default_log = if matches!(cli.command, Command::Serve { .. }) { "info,qdrant_edge=error" } else { "warn,qdrant_edge=error" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr)
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
                        println!("{}", serde_json::json!({"ok": true, "courses": lib.courses.len(), "skills": lib.skills.len(), "components": lib.components.len()}));
                    } else {
                        println!("{}: {} course(s), {} skill(s), {} component(s), no problems", root.display(), lib.courses.len(), lib.skills.len(), lib.components.len());
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
        Command::Search { query, course, skills, levels, formats, k, json } => {
            let filter = SearchFilter {
                course,
                skills: skills.iter().map(|s| SkillId::parse(s)).collect::<Result<_, _>>()?,
                levels: levels.iter().map(|s| s.parse::<Level>()).collect::<Result<_, _>>()?,
                formats: formats.iter().map(|s| s.parse::<Format>()).collect::<Result<_, _>>()?,
            };
            let dir = cfg.index_dir();
            let store: EdgeStore = tokio::task::spawn_blocking(move || open_current(&dir))
                .await?
                .context("opening the index")?
                .context("no index yet: run `tutor ingest` first")?;
            let retriever = Retriever::new(crate::api::embedder(&cfg));
            retriever.set_store(std::sync::Arc::new(store));
            let hits = retriever.search(&SearchRequest { text: query, filter, k }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
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
            let (addr, server) = crate::api::serve(cfg, shutdown_signal()).await.context("binding the listener")?;
            tracing::info!(%addr, "tutor listening on http://{addr}");
            server.await.context("serving")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_ingest(cfg: &Config, lib: &Library, json: bool) -> anyhow::Result<ExitCode> {
    let progress = if json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
                .expect("static template")
                .progress_chars("=> "),
        );
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    };
    let report = ingest(cfg, lib, crate::api::embedder(cfg), &progress).await;
    progress.finish_and_clear();
    let report = report.context("ingest failed; the previous index is unchanged")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.rebuilt {
        println!(
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
        println!(
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
        println!("{}", serde_json::json!({"ok": false, "errors": e.diagnostics}));
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

fn print_hits(hits: &[Hit]) {
    if hits.is_empty() {
        println!("no results");
        return;
    }
    let width = hits.iter().map(|h| h.component_id.len()).max().unwrap_or(9).max(9);
    println!("{:>2}  {:>7}  {:<width$}  {:<10}  {:<14}  title", "#", "score", "component", "level", "format");
    for (i, h) in hits.iter().enumerate() {
        println!(
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
