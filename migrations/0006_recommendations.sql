-- A learner's newest feedback on each recommendation (helpful, not_now, already_know,
-- dismiss): it changes later recommendations, and is erased with the learner.
CREATE TABLE recommendation_feedback (
    learner        TEXT NOT NULL,
    recommendation TEXT NOT NULL,
    feedback       TEXT NOT NULL,
    at             BIGINT NOT NULL,
    PRIMARY KEY (learner, recommendation)
);

-- Hints given on request, per learner and exercise item: given in order; the answer after a
-- hint counts it in its hints_used (`counted`: the hints already counted in an answer).
CREATE TABLE hints_given (
    learner   TEXT NOT NULL,
    component TEXT NOT NULL,
    item      TEXT NOT NULL,
    given     INTEGER NOT NULL,
    counted   INTEGER NOT NULL DEFAULT 0,
    at        BIGINT NOT NULL,
    PRIMARY KEY (learner, component, item)
);
