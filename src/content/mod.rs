//! Content: the domain model of courses, skills and components, the loader that validates
//! them, the chunker that prepares them for the index, and the learner's view of a component
//! (rendered, sanitised HTML without answer keys).

mod chunk;
mod load;
mod model;
mod render;

pub use chunk::{ChunkSettings, Chunker, count_tokens, tokenizer, trim_counted, trim_course_text, trim_to_tokens};
pub use load::{ContentError, Diagnostic, LoadOptions, SKILLS_FILE, load_library};
pub(crate) use model::text_enum;
pub use model::*;
pub use render::{LearnerComponent, LearnerItem, SkillRef, learner_component, markdown_html, skill_ref};
