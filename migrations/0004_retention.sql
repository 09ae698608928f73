-- Retention: the learner's model as of the newest event deleted by the retention policy, from
-- which a replay of the remaining events starts (the events themselves are gone).
ALTER TABLE learners ADD COLUMN base_state TEXT;
ALTER TABLE learners ADD COLUMN base_until BIGINT;

-- Who read a learner's data, other than the learner: kept with the learner's data and erased
-- with it.
CREATE TABLE audit_reads (
    learner TEXT NOT NULL,
    reader  TEXT NOT NULL,
    what    TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX audit_reads_by_learner ON audit_reads (learner, at);
