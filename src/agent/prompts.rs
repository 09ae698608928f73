//! The prompts and tool descriptions, as text files under `prompts/`: built into the binary,
//! or read from `TUTOR_PROMPTS_DIR` at start. Each carries a version: the file's own
//! `version N` header and a hash of its text, so a changed prompt never hides behind an old
//! cache entry or replay.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::Digest;

/// One prompt file.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// e.g. `tutor`, `tools/retrieve_components`, `render/scenario`.
    pub name: String,
    /// The text, without its `<!-- prompt: … -->` header line.
    pub text: String,
    /// `v{N}-{hash}`: the declared version and the first 8 hex digits of the text's SHA-256.
    pub version: String,
    /// `o200k_base` tokens of `text`.
    pub tokens: usize,
}

/// Every prompt the agent uses.
#[derive(Debug, Clone)]
pub struct Prompts {
    prompts: BTreeMap<String, Prompt>,
    /// Tokens of the tool definitions, counted on first use.
    pub tool_tokens: std::sync::OnceLock<usize>,
}

/// The built-in prompts (the repository's `prompts/` folder).
const BUILT_IN: &[(&str, &str)] = &[
    ("tutor", include_str!("../../prompts/tutor.md")),
    ("tools/lookup_mastery", include_str!("../../prompts/tools/lookup_mastery.md")),
    ("tools/retrieve_components", include_str!("../../prompts/tools/retrieve_components.md")),
    ("tools/render_format", include_str!("../../prompts/tools/render_format.md")),
    ("tools/flag_struggle", include_str!("../../prompts/tools/flag_struggle.md")),
    ("render/explanation", include_str!("../../prompts/render/explanation.md")),
    ("render/worked_example", include_str!("../../prompts/render/worked_example.md")),
    ("render/scenario", include_str!("../../prompts/render/scenario.md")),
    ("render/summary", include_str!("../../prompts/render/summary.md")),
    ("render/exercise", include_str!("../../prompts/render/exercise.md")),
    ("offline", include_str!("../../prompts/offline.md")),
    ("judge", include_str!("../../prompts/judge.md")),
    ("repair", include_str!("../../prompts/repair.md")),
];

/// The sections `prompts/offline.md` must have.
pub const OFFLINE_SECTIONS: &[&str] = &[
    "opening_novice",
    "opening_expert",
    "misconception",
    "mistake",
    "stated_right",
    "fallback",
    "sources",
    "see_also",
    "next_review",
    "next_practice",
    "decline",
    "not_found",
    "unavailable",
    "unavailable_none",
    "refuse",
    "refuse_hint",
    "refuse_method",
    "refuse_close",
    "footer",
];

/// Fills `{name}` placeholders.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// A prompt file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PromptError {
    pub path: String,
    pub message: String,
}

fn parse(name: &str, raw: &str, path: &str) -> Result<Prompt, PromptError> {
    let err = |message: String| PromptError { path: path.to_owned(), message };
    let (first, rest) = raw.split_once('\n').unwrap_or((raw, ""));
    let declared = first
        .trim()
        .strip_prefix("<!--")
        .and_then(|h| h.strip_suffix("-->"))
        .and_then(|h| h.rsplit_once("version"))
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| err("line 1: expected a header like `<!-- prompt: tutor, version 1 -->`".into()))?;
    let text = rest.trim().to_owned();
    if text.is_empty() {
        return Err(err("the prompt is empty".into()));
    }
    let hash = sha2::Sha256::digest(text.as_bytes());
    let short: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let tokens = crate::content::count_tokens(&text);
    Ok(Prompt { name: name.to_owned(), text, version: format!("v{declared}-{short}"), tokens })
}

impl Prompts {
    /// The built-in prompts.
    pub fn built_in() -> Self {
        let prompts = BUILT_IN
            .iter()
            .map(|(name, raw)| {
                let p = parse(name, raw, &format!("prompts/{name}.md")).expect("built-in prompts are valid");
                (name.to_string(), p)
            })
            .collect();
        Self { prompts, tool_tokens: std::sync::OnceLock::new() }
    }

    /// The prompts of `dir`, which must hold every file the built-in set has.
    pub fn load(dir: &Path) -> Result<Self, PromptError> {
        let mut prompts = BTreeMap::new();
        for (name, _) in BUILT_IN {
            let path = dir.join(format!("{name}.md"));
            let shown = path.display().to_string();
            let raw = std::fs::read_to_string(&path)
                .map_err(|e| PromptError { path: shown.clone(), message: e.to_string() })?;
            prompts.insert(name.to_string(), parse(name, &raw, &shown)?);
        }
        // the offline engine's templates must all be there
        if let Some(p) = prompts.get("offline") {
            for s in OFFLINE_SECTIONS {
                if !p.text.contains(&format!("## {s}\n")) {
                    return Err(PromptError {
                        path: dir.join("offline.md").display().to_string(),
                        message: format!("no `## {s}` section"),
                    });
                }
            }
        }
        Ok(Self { prompts, tool_tokens: std::sync::OnceLock::new() })
    }

    /// From `dir` when given, else built in.
    pub fn from_config(dir: Option<&Path>) -> Result<Self, PromptError> {
        match dir {
            Some(d) => Self::load(d),
            None => Ok(Self::built_in()),
        }
    }

    /// A prompt by name (one of the built-in names).
    pub fn get(&self, name: &str) -> &Prompt {
        self.prompts.get(name).unwrap_or_else(|| panic!("unknown prompt {name}"))
    }

    /// A `## name` section of a prompt (the offline engine's templates), trimmed.
    pub fn section(&self, prompt: &str, name: &str) -> &str {
        let text = &self.get(prompt).text;
        let head = format!("## {name}\n");
        text.find(&head)
            .map(|i| {
                let rest = &text[i + head.len()..];
                rest[..rest.find("\n## ").unwrap_or(rest.len())].trim()
            })
            .unwrap_or_else(|| panic!("prompt {prompt} has no section {name}"))
    }

    /// Every prompt's version, e.g. for a report or a cache key.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.prompts.iter().map(|(k, p)| (k.clone(), p.version.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_prompts_parse_with_versions() {
        let p = Prompts::built_in();
        assert!(p.get("tutor").text.contains("Never give the answer"));
        assert!(p.get("tutor").version.starts_with("v2-"));
        assert_eq!(p.versions().len(), BUILT_IN.len());
        for s in OFFLINE_SECTIONS {
            assert!(!p.section("offline", s).is_empty(), "{s}");
        }
        assert_eq!(fill(p.section("offline", "sources"), &[("id", "a-b"), ("title", "T")]), "Source: [a-b] T.");
    }

    #[test]
    fn a_prompt_without_a_header_or_text_is_refused() {
        assert!(parse("x", "no header\ntext", "x.md").unwrap_err().message.contains("line 1"));
        assert!(parse("x", "<!-- prompt: x, version 2 -->\n  \n", "x.md").unwrap_err().message.contains("empty"));
        assert_eq!(parse("x", "<!-- prompt: x, version 2 -->\nHello", "x.md").unwrap().version.len(), "v2-".len() + 8);
    }
}
