//! `tutor`: an agentic AI tutor that lives in the content layer.
//!
//! Modules, one per area:
//! - [`content`]: the course model (skills, components, answer keys held apart), the loader
//!   that validates a content tree and reports every problem as `path:line: message`, and the
//!   Markdown chunker sized in tokens.
//! - [`retrieval`]: BM25 and dense embeddings, the `VectorStore` trait with its embedded
//!   `qdrant-edge` backend, hybrid search with filters, and the ingest that builds a fresh
//!   index generation and switches to it atomically.
//! - [`passport`]: learner events and their validation, Bayesian Knowledge Tracing, the
//!   learner model, the SQL store (SQLite, PostgreSQL) and the passport and plan views.
//! - [`api`]: the HTTP service (axum): router, state, startup and shutdown, learner routes.
//! - [`config`]: settings from defaults, `tutor.toml` and `TUTOR_*` variables.
//! - [`cli`]: the `tutor` command line.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod content;
pub mod eval;
pub mod flags;
pub mod passport;
pub mod retrieval;
