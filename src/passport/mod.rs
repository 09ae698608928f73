//! The skill passport: learner events, the mastery model (Bayesian Knowledge Tracing) with its
//! evidence, format preference, the store that keeps them (in the learner database, SQLite or
//! PostgreSQL), and the views the API serves (passport, plan).

pub mod bkt;
pub mod evaluate;
mod event;
pub mod fit;
mod fitted;
mod model;
mod recommend;
mod rollup;
mod store;
mod view;

pub use event::{
    Event, Invalid, LearnerId, MAX_CLOCK_SKEW_MS, MAX_GROUP_CHARS, Verb, WireStatement, normalize_answer, parse_group,
    validate_batch, validate_statement,
};
pub use fitted::{AnswerFilter, FittedModel, FittedSkill, ModelStore, SqlModelStore};
pub use model::{
    FormatSignal, LearnerState, MisconceptionHit, SkillState, Tally, misconception_of, week_of, week_start,
};
pub use recommend::{
    Feedback, Given, Kind, Recommendation, Recommendations, Step, Trail, evidence_trail, recommendations,
};
pub use store::{PassportStore, Read, Recorded, SqlPassportStore, States};
pub use view::{
    Band, FormatPreference, Passport, Plan, Review, SkillView, SkipOffer, Variant, best_material, name_in_sentence,
    passport, plan, skill_view,
};
