-- Learner events and the passport derived from them. Written in the SQL that SQLite and
-- PostgreSQL share, so one migration serves both backends.
CREATE TABLE events (
    learner     TEXT NOT NULL,
    id          TEXT NOT NULL,
    verb        TEXT NOT NULL,
    component   TEXT NOT NULL,
    item        TEXT,
    success     BIGINT,
    score       DOUBLE PRECISION,
    response    TEXT,
    hints_used  BIGINT,
    duration_ms BIGINT,
    ts          BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (learner, id)
);
CREATE INDEX events_by_learner_time ON events (learner, ts, id);

CREATE TABLE skill_states (
    learner    TEXT NOT NULL,
    skill      TEXT NOT NULL,
    mastery    DOUBLE PRECISION NOT NULL,
    evidence   BIGINT NOT NULL,
    state      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (learner, skill)
);
CREATE INDEX skill_states_by_skill ON skill_states (skill);

CREATE TABLE learners (
    learner    TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
