-- A learner's newest feedback on each recommendation (helpful, not_now, already_know,
-- dismiss): it changes later recommendations, and is erased with the learner.
CREATE TABLE recommendation_feedback (
    learner        TEXT NOT NULL,
    recommendation TEXT NOT NULL,
    feedback       TEXT NOT NULL,
    at             BIGINT NOT NULL,
    PRIMARY KEY (learner, recommendation)
);
