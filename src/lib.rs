//! `tutor`: an agentic AI tutor that lives in the content layer.
//!
//! Modules, one per area, in the order data flows through them:
//! - [`content`]: the course model (skills, components, answer keys held apart), the loader
//!   that validates a content tree and reports every problem as `path:line: message`, and the
//!   Markdown chunker sized in tokens.
//! - [`retrieval`]: BM25 and dense embeddings, the index seam (`IndexBackend` builds
//!   generations, `VectorStore` serves one) with its embedded `qdrant-edge` backend, hybrid
//!   search with filters, and the ingest that builds a fresh generation and switches to it
//!   atomically.
//! - [`db`]: the learner database (SQLite or PostgreSQL): pools, migrations, the locks the
//!   stores share, and erasure across the stores in one transaction.
//! - [`passport`]: learner events and their validation, Bayesian Knowledge Tracing, the
//!   learner model, its store, and the passport and plan views.
//! - [`flags`]: the struggle rules and the flag store.
//! - [`agent`]: one tutor turn: context, the LLM and offline engines behind one trait, the
//!   typed tools, the answer-key guard, prompts, sessions and transcripts.
//! - [`app`]: the composition root, building all of the above from a [`config::Config`], and
//!   the lifecycle of the served index.
//! - [`auth`]: bearer JWTs (a shared secret or a JWKS), roles and their scopes, minting.
//! - [`api`]: the HTTP service (axum): routes, extractors, responses, one error type, and the
//!   layers every request passes (request ids, JSON errors, rate limits, CORS, authentication).
//! - [`eval`]: the eval suite: cases, the runner (offline, replay, live), scorers and report.
//! - [`cli`]: the `tutor` command line.
//! - [`config`]: settings from defaults, `tutor.toml` and `TUTOR_*` variables, from one table
//!   of keys.
//! - [`ids`], [`text`]: ids and the clock; phrase matching, each written once.
//! - [`metrics`]: the process's Prometheus metrics.

pub mod agent;
pub mod analytics;
pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod content;
pub mod db;
pub mod eval;
pub mod flags;
pub mod ids;
pub mod metrics;
pub mod passport;
pub mod retrieval;
pub mod text;
