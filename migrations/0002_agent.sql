-- Struggle flags, and the tutor's sessions and transcripts. Same SQL for SQLite and PostgreSQL.
CREATE TABLE flags (
    id         TEXT PRIMARY KEY,
    learner    TEXT NOT NULL,
    skill      TEXT NOT NULL,
    course     TEXT NOT NULL,
    component  TEXT,
    reason     TEXT NOT NULL,
    severity   TEXT NOT NULL,
    status     TEXT NOT NULL,
    evidence   TEXT NOT NULL,
    notes      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- at most one open flag per (learner, skill)
CREATE UNIQUE INDEX flags_one_open ON flags (learner, skill) WHERE status = 'open';
CREATE INDEX flags_by_learner ON flags (learner);
CREATE INDEX flags_by_status ON flags (status, updated_at);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    learner    TEXT NOT NULL,
    component  TEXT,
    summary    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_learner ON sessions (learner);

CREATE TABLE turns (
    session_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    learner    TEXT NOT NULL,
    role       TEXT NOT NULL,
    content    TEXT NOT NULL,
    meta       TEXT NOT NULL,
    tokens     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX turns_by_learner ON turns (learner);

-- generated renders, keyed by (component or skill, level, format, prompt version, model)
CREATE TABLE renders (
    key        TEXT PRIMARY KEY,
    content    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
