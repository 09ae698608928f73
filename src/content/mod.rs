//! Content: the domain model of courses, skills and components, the loader that validates
//! them, and the chunker that prepares them for the index.

mod chunk;
mod load;
mod model;

pub use chunk::{ChunkSettings, Chunker, count_tokens, tokenizer, trim_counted, trim_course_text, trim_to_tokens};
pub use load::{ContentError, Diagnostic, LoadOptions, SKILLS_FILE, load_library};
pub(crate) use model::text_enum;
pub use model::*;
