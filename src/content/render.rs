//! Components as learners see them: Markdown rendered to HTML (`pulldown-cmark`) and sanitised
//! (`ammonia`: course text is authored, but treated as untrusted), with exercise items as
//! their prompts only. A [`LearnerComponent`] is built from a [`Component`], which holds no
//! answer key, hint or diagnosis, so none can reach a learner through it.

use serde::Serialize;

use super::{Component, ComponentId, Demand, Format, Level, Library, SkillId};

/// A skill named for a learner.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SkillRef {
    pub id: SkillId,
    pub name: String,
}

/// An exercise item as a learner sees it: its prompt, nothing of its key.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LearnerItem {
    pub id: String,
    /// The prompt, rendered and sanitised.
    pub prompt_html: String,
    pub demand: Demand,
    /// How many hints the item has (each is given on request, one at a time).
    pub hints: usize,
}

/// A component as a learner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LearnerComponent {
    pub id: ComponentId,
    pub course: String,
    pub title: String,
    pub skills: Vec<SkillRef>,
    pub level: Level,
    pub format: Format,
    pub objectives: Vec<String>,
    /// The body, rendered and sanitised.
    pub html: String,
    /// Exercise items (empty unless the format is `exercise`).
    pub items: Vec<LearnerItem>,
}

/// Markdown → HTML that is safe to put in a page: no scripts, no event handlers, no styles,
/// links only to `http(s)`/`mailto` or relative, opened without a referrer.
pub fn markdown_html(markdown: &str) -> String {
    let opts = pulldown_cmark::Options::ENABLE_TABLES | pulldown_cmark::Options::ENABLE_STRIKETHROUGH;
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, pulldown_cmark::Parser::new_ext(markdown, opts));
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto"].into())
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&html)
        .to_string()
}

/// A skill's id and name.
pub fn skill_ref(lib: &Library, skill: &SkillId) -> SkillRef {
    SkillRef { id: skill.clone(), name: lib.skills.get(skill).map_or_else(|| skill.to_string(), |s| s.name.clone()) }
}

/// The learner's view of a component.
pub fn learner_component(lib: &Library, c: &Component) -> LearnerComponent {
    LearnerComponent {
        id: c.id.clone(),
        course: c.course.clone(),
        title: c.title.clone(),
        skills: c.skills.iter().map(|s| skill_ref(lib, s)).collect(),
        level: c.level,
        format: c.format,
        objectives: c.objectives.clone(),
        html: markdown_html(&c.body),
        items: c
            .items
            .iter()
            .map(|i| LearnerItem {
                id: i.id.clone(),
                prompt_html: markdown_html(&i.prompt),
                demand: i.demand,
                hints: lib.answer_key(&c.id, &i.id).map_or(0, |k| k.hints.len()),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_rendered_and_scripts_are_not() {
        let html = markdown_html(
            "## Title\n\n**bold** and [a link](https://example.org) \
             <script>alert(1)</script><img src=x onerror=alert(2)> [js](javascript:alert(3))",
        );
        assert!(html.contains("<h2>Title</h2>") && html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains(r#"href="https://example.org""#) && html.contains("noopener"), "{html}");
        for bad in ["<script", "onerror", "javascript:"] {
            assert!(!html.contains(bad), "{bad} survived: {html}");
        }
    }
}
