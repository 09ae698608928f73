-- Educators: the review history of flags; each learner's group and last activity per course (for
-- group analytics and drop-off); when each learner first showed a skill and first reached
-- proficient; mastery by week (for progression); priority skills. Same SQL for both backends.
CREATE TABLE flag_history (
    flag_id TEXT NOT NULL,
    learner TEXT NOT NULL,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    status  TEXT NOT NULL,
    outcome TEXT,
    note    TEXT
);
CREATE INDEX flag_history_by_flag ON flag_history (flag_id, at);
CREATE INDEX flag_history_by_learner ON flag_history (learner);
CREATE INDEX flags_by_course ON flags (course, created_at);

CREATE TABLE learner_courses (
    learner        TEXT NOT NULL,
    course         TEXT NOT NULL,
    grp            TEXT,
    last_at        BIGINT NOT NULL,
    last_component TEXT NOT NULL,
    PRIMARY KEY (learner, course)
);
CREATE INDEX learner_courses_by_course ON learner_courses (course, grp);

ALTER TABLE skill_states ADD COLUMN first_at BIGINT;
ALTER TABLE skill_states ADD COLUMN proficient_at BIGINT;

CREATE TABLE mastery_weeks (
    learner TEXT NOT NULL,
    skill   TEXT NOT NULL,
    week    BIGINT NOT NULL,
    mastery DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (learner, skill, week)
);
CREATE INDEX mastery_weeks_by_skill ON mastery_weeks (skill, week);

CREATE TABLE priorities (
    course TEXT NOT NULL,
    grp    TEXT NOT NULL,
    skill  TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at BIGINT NOT NULL,
    PRIMARY KEY (course, grp, skill)
);
