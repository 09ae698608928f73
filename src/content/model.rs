//! Domain types of the content: ids, levels, formats, skills, components, courses.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Why a domain value failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn is_slug_segment(s: &str, extra: &[char]) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
}

/// A skill id: a dotted slug such as `fractions.divide` (segments of `a-z 0-9 _ -`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct SkillId(String);

impl SkillId {
    /// Checks the dotted-slug shape.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > 100 || !s.split('.').all(|seg| is_slug_segment(seg, &['_', '-'])) {
            return Err(ParseError(format!(
                "illegal skill id '{s}': use dotted lowercase slugs such as 'fractions.divide' (a-z, 0-9, '_', '-', separated by '.')"
            )));
        }
        Ok(Self(s.to_owned()))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SkillId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SkillId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A component id: a slug such as `fractions-divide-explain-intro` (`a-z 0-9 -`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct ComponentId(String);

impl ComponentId {
    /// Checks the slug shape.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > 100 || !is_slug_segment(s, &['-']) {
            return Err(ParseError(format!(
                "illegal component id '{s}': use a lowercase slug such as 'fractions-divide-explain-intro' (a-z, 0-9, '-')"
            )));
        }
        Ok(Self(s.to_owned()))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ComponentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Ids compare with their text, so `hit.component_id == "fractions-divide-ex-1"` reads as it
/// should.
macro_rules! id_eq_text {
    ($name:ident) => {
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}
id_eq_text!(SkillId);
id_eq_text!(ComponentId);

/// An enum whose values are written as text (in content, on the wire, in the database): `ALL`,
/// `as_str`, `FromStr` naming the choices when a value is unknown, `Display`, and serde as
/// the same text.
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The value as written in content, on the wire and in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::content::ParseError;
            fn from_str(s: &str) -> Result<Self, $crate::content::ParseError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::content::ParseError(format!(
                        concat!("unknown ", $what, " '{}' (expected one of {})"),
                        s,
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// How far along a learner the material is pitched.
    Level, "level" {
        Intro => "intro",
        Developing => "developing",
        Proficient => "proficient",
        Advanced => "advanced",
    }
);

text_enum!(
    /// The kind of material a component is.
    Format, "format" {
        Explanation => "explanation",
        WorkedExample => "worked_example",
        Scenario => "scenario",
        Exercise => "exercise",
        Summary => "summary",
        Analogy => "analogy",
        Reference => "reference",
    }
);

text_enum!(
    /// The cognitive demand of an exercise item.
    Demand, "cognitive demand" {
        Recall => "recall",
        Application => "application",
        Reasoning => "reasoning",
    }
);

impl Level {
    /// The position of the level, from `intro` (0) to `advanced` (3).
    pub fn rank(self) -> i32 {
        Level::ALL.iter().position(|l| *l == self).unwrap_or(0) as i32
    }

    /// How many levels apart two levels are.
    pub fn distance(self, other: Level) -> i32 {
        (self.rank() - other.rank()).abs()
    }
}

/// Bayesian Knowledge Tracing parameters of a skill.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BktParams {
    /// P(L0): probability the skill is known before any evidence.
    pub prior: f64,
    /// P(T): probability of learning it at each opportunity.
    pub learn: f64,
    /// P(S): probability of a wrong answer although the skill is known.
    pub slip: f64,
    /// P(G): probability of a right answer although the skill is not known.
    pub guess: f64,
}

impl Default for BktParams {
    fn default() -> Self {
        Self { prior: 0.2, learn: 0.15, slip: 0.1, guess: 0.2 }
    }
}

/// A skill of a course's skill graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skill {
    pub id: SkillId,
    pub course: String,
    pub name: String,
    pub description: String,
    /// Skills to master first; the graph over all skills is acyclic.
    pub prerequisites: Vec<SkillId>,
    /// Per-skill BKT parameters when the defaults do not fit.
    pub bkt: Option<BktParams>,
}

/// A course: a folder with a skill graph and its components.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Course {
    pub id: String,
    pub title: String,
    pub description: String,
    pub audience: String,
    pub dir: PathBuf,
    /// Skills in the order the skill graph lists them.
    pub skills: Vec<SkillId>,
    /// Components in file order.
    pub components: Vec<ComponentId>,
}

/// One item of an exercise as a learner sees it. The answer key lives apart, in [`AnswerKey`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExerciseItem {
    pub id: String,
    pub prompt: String,
    pub demand: Demand,
}

/// A known wrong answer and what it says about the learner's thinking.
#[derive(Debug, Clone, PartialEq)]
pub struct Misconception {
    pub response: String,
    pub diagnosis: String,
}

/// The secret part of an exercise item: used for grading and diagnosis only, never indexed,
/// never sent to the model or the learner. Deliberately not `Serialize`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerKey {
    pub answer: String,
    pub accept: Vec<String>,
    pub explanation: Option<String>,
    pub hints: Vec<String>,
    pub misconceptions: Vec<Misconception>,
}

/// The addressable unit of content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    pub id: ComponentId,
    pub course: String,
    pub title: String,
    pub skills: Vec<SkillId>,
    pub level: Level,
    pub format: Format,
    pub objectives: Vec<String>,
    /// Markdown body, without front matter.
    pub body: String,
    /// Exercise items (prompts and demand only).
    pub items: Vec<ExerciseItem>,
    pub path: PathBuf,
}

impl Component {
    /// The text a learner may see and that is indexed: the body, then the item prompts.
    /// Answer keys are not part of a component, so they cannot leak through here.
    pub fn retrievable_text(&self) -> String {
        let mut text = self.body.trim().to_owned();
        if !self.items.is_empty() {
            text.push_str("\n\n");
            for (n, item) in self.items.iter().enumerate() {
                text.push_str(&format!("{}. {}\n", n + 1, item.prompt.trim()));
            }
        }
        text
    }
}

/// Every course loaded and validated, with answer keys held apart from the components.
#[derive(Debug, Clone, Default)]
pub struct Library {
    pub courses: BTreeMap<String, Course>,
    pub skills: BTreeMap<SkillId, Skill>,
    pub components: BTreeMap<ComponentId, Component>,
    answer_keys: BTreeMap<(ComponentId, String), AnswerKey>,
    /// Parameters learned from the organisation's answers (`tutor passport fit`), which
    /// take precedence over the authored ones.
    pub learned: LearnedParams,
}

/// BKT parameters fitted from stored answers, as the passport uses them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LearnedParams {
    /// The stored fit these come from; 0 when nothing was fitted (authored parameters).
    pub version: i64,
    pub skills: BTreeMap<SkillId, BktParams>,
    /// How far a learner's accuracy so far moves a new skill's prior (0: standard BKT).
    pub prior_weight: f64,
    /// The mean accuracy over the answers fitted from, which that accuracy is compared with.
    pub mean_accuracy: f64,
}

impl Library {
    pub(crate) fn insert_answer_key(&mut self, component: ComponentId, item: String, key: AnswerKey) {
        self.answer_keys.insert((component, item), key);
    }

    /// The answer key of one exercise item, for grading.
    pub fn answer_key(&self, component: &ComponentId, item: &str) -> Option<&AnswerKey> {
        self.answer_keys.get(&(component.clone(), item.to_owned()))
    }

    /// The BKT parameters of a skill: its authored ones, else the defaults. Every mastery
    /// computation asks here, so that parameters learned from data plug in in one place.
    pub fn bkt(&self, skill: &SkillId) -> BktParams {
        self.learned.skills.get(skill).copied().unwrap_or_else(|| self.authored_bkt(skill))
    }

    /// The parameters an author gave the skill, else the defaults (what a fit starts from and
    /// what `--reset` returns to).
    pub fn authored_bkt(&self, skill: &SkillId) -> BktParams {
        self.skills.get(skill).and_then(|s| s.bkt).unwrap_or_default()
    }

    /// Every answer key, for checks that they never leak.
    pub fn answer_keys(&self) -> impl Iterator<Item = (&ComponentId, &str, &AnswerKey)> {
        self.answer_keys.iter().map(|((c, i), k)| (c, i.as_str(), k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_slugs_and_reject_the_rest() {
        assert!(SkillId::parse("fractions.divide").is_ok());
        assert!(SkillId::parse("security.mfa-push_2").is_ok());
        for bad in ["", "Fractions.divide", "fractions..divide", ".x", "a b", "x/y", "-x"] {
            assert!(SkillId::parse(bad).is_err(), "{bad}");
        }
        assert!(ComponentId::parse("fractions-divide-ex-1").is_ok());
        for bad in ["", "Frac", "a.b", "a_b", "-a", "a b"] {
            assert!(ComponentId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums_parse_their_text_and_name_the_choices() {
        assert_eq!("worked_example".parse::<Format>().unwrap(), Format::WorkedExample);
        let err = "beginner".parse::<Level>().unwrap_err().0;
        assert!(err.contains("unknown level 'beginner'") && err.contains("intro, developing"), "{err}");
    }
}
