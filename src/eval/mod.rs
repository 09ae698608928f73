//! The offline eval suite: cases (`evals/cases/*.yaml`), the runner for the offline, replay
//! and live engines, the scorers, and the report with its gate. See `evals/README.md`.

pub mod case;
pub mod report;
pub mod run;
pub mod score;

pub use case::{Case, case_files, load_cases};
pub use report::{Summary, Thresholds, gate, markdown, summarize, table};
pub use run::{CaseResult, Engine, RunError, RunOptions, request_hash, run_all};
