//! The eval case format (`evals/cases/*.yaml`, documented in `evals/README.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub learner: LearnerSetup,
    #[serde(default)]
    pub page: Option<String>,
    pub turns: Vec<String>,
    #[serde(default)]
    pub expect: Expect,
    /// The file it came from.
    #[serde(skip)]
    pub file: PathBuf,
}

/// Who asks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerSetup {
    /// Skill → `low`, `developing`, `proficient` or `mastered`.
    #[serde(default)]
    pub mastery: BTreeMap<String, String>,
    #[serde(default)]
    pub events: Vec<SetupEvent>,
}

/// An answer the page posted before the conversation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupEvent {
    pub component: String,
    pub item: String,
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default)]
    pub response: Option<String>,
    #[serde(default)]
    pub hints_used: Option<u32>,
}

/// A tool that must be called, with predicates on its arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolExpect {
    pub name: String,
    #[serde(default)]
    pub args: ArgPredicates,
}

/// Predicates on a tool call's arguments; all given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgPredicates {
    #[serde(default)]
    pub equals: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub skills_include: Option<String>,
    #[serde(default)]
    pub query_contains: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
}

/// The reading level asked for.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ReadingLevel {
    /// `auto`: the band of the learner's level on the page's skill.
    Auto(String),
    Max {
        max_grade: f64,
    },
}

/// What must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub tools_called: Vec<ToolExpect>,
    #[serde(default)]
    pub tools_not_called: Vec<String>,
    #[serde(default)]
    pub cites_any: Vec<String>,
    #[serde(default)]
    pub cites_none: Vec<String>,
    #[serde(default)]
    pub flag: Option<String>,
    #[serde(default)]
    pub no_flag: bool,
    #[serde(default)]
    pub never: Vec<String>,
    #[serde(default)]
    pub declined: Option<bool>,
    #[serde(default)]
    pub refuses_answer: Option<bool>,
    #[serde(default)]
    pub skip_offer: Option<bool>,
    #[serde(default)]
    pub reading_level: Option<ReadingLevel>,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub mistake: Option<String>,
}

/// A case file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CaseError {
    pub path: String,
    pub message: String,
}

/// The files a `--cases` pattern names: a file, a folder (its `*.yaml`), or a path whose file
/// name has `*` wildcards.
pub fn case_files(pattern: &Path) -> Result<Vec<PathBuf>, CaseError> {
    let err = |message: String| CaseError { path: pattern.display().to_string(), message };
    if pattern.is_file() {
        return Ok(vec![pattern.to_owned()]);
    }
    let (dir, name) = if pattern.is_dir() {
        (pattern.to_owned(), "*.yaml".to_owned())
    } else {
        let name = pattern.file_name().and_then(|n| n.to_str()).ok_or_else(|| err("no such file or folder".into()))?;
        (pattern.parent().map_or_else(|| PathBuf::from("."), Path::to_owned), name.to_owned())
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| err(e.to_string()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| wildcard(&name, n)))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(err("no case files match".into()));
    }
    Ok(files)
}

/// `*` matches any run of characters.
fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            let Some(at) = rest.find(p) else { return false };
            rest = &rest[at + p.len()..];
        }
    }
    true
}

/// Loads every case of the files, checking ids are unique and well formed.
pub fn load_cases(files: &[PathBuf]) -> Result<Vec<Case>, CaseError> {
    let mut out: Vec<Case> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| CaseError { path: f.display().to_string(), message: e.to_string() })?;
        let cases: Vec<Case> = serde_yaml::from_str(&text).map_err(|e| {
            let line = e.location().map(|l| format!(":{}", l.line())).unwrap_or_default();
            CaseError { path: format!("{}{line}", f.display()), message: e.to_string() }
        })?;
        for mut c in cases {
            let bad = |m: String| CaseError { path: f.display().to_string(), message: format!("case {}: {m}", c.id) };
            if c.id.is_empty() || !c.id.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-') {
                return Err(bad("the id must be lowercase letters, digits and -".into()));
            }
            if out.iter().any(|o| o.id == c.id) {
                return Err(bad("duplicate id".into()));
            }
            if c.turns.is_empty() {
                return Err(bad("no turns".into()));
            }
            c.file = f.clone();
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards_match_file_names() {
        assert!(wildcard("fractions-*.yaml", "fractions-levels.yaml"));
        assert!(!wildcard("fractions-*.yaml", "security-levels.yaml"));
        assert!(wildcard("*.yaml", "a.yaml"));
        assert!(wildcard("a*b*c", "aXbYc"));
        assert!(!wildcard("a*b*c", "aXbY"));
        assert!(wildcard("exact.yaml", "exact.yaml"));
    }
}
