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

-- the learner's group in the skill's course when the state was written ('' for none)
ALTER TABLE skill_states ADD COLUMN grp TEXT;
ALTER TABLE skill_states ADD COLUMN first_at BIGINT;
ALTER TABLE skill_states ADD COLUMN proficient_at BIGINT;
CREATE INDEX skill_states_by_skill_group ON skill_states (skill, grp, evidence);
CREATE INDEX skill_states_to_proficient ON skill_states (skill, grp, proficient_at, first_at)
    WHERE proficient_at IS NOT NULL;

CREATE TABLE mastery_weeks (
    learner TEXT NOT NULL,
    skill   TEXT NOT NULL,
    week    BIGINT NOT NULL,
    grp     TEXT NOT NULL,
    mastery DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (learner, skill, week)
);
CREATE INDEX mastery_weeks_by_skill ON mastery_weeks (skill, week, grp, mastery);
-- the weeks each learner answered in a course (learners per week, for progression)
CREATE TABLE learner_weeks (
    learner TEXT NOT NULL,
    course  TEXT NOT NULL,
    week    BIGINT NOT NULL,
    grp     TEXT NOT NULL,
    PRIMARY KEY (learner, course, week)
);
CREATE INDEX learner_weeks_count ON learner_weeks (course, week, grp);

-- Analytics rollups, kept as answers arrive, so that reading them never scans the events.
-- A learner counts in the group they were in when first seen there ('' for none); erasing a
-- learner removes their rows (and takes their answers out of item_stats).
CREATE TABLE item_stats (
    course    TEXT NOT NULL,
    component TEXT NOT NULL,
    item      TEXT NOT NULL,
    grp       TEXT NOT NULL,
    attempts  BIGINT NOT NULL,
    wrong     BIGINT NOT NULL,
    hints     BIGINT NOT NULL,
    PRIMARY KEY (course, component, item, grp)
);
CREATE TABLE learner_components (
    learner   TEXT NOT NULL,
    course    TEXT NOT NULL,
    component TEXT NOT NULL,
    grp       TEXT NOT NULL,
    PRIMARY KEY (learner, component)
);
CREATE INDEX learner_components_count ON learner_components (course, component, grp);
CREATE TABLE learner_demands (
    learner TEXT NOT NULL,
    course  TEXT NOT NULL,
    skill   TEXT NOT NULL,
    demand  TEXT NOT NULL,
    grp     TEXT NOT NULL,
    PRIMARY KEY (learner, skill, demand)
);
CREATE INDEX learner_demands_count ON learner_demands (course, skill, demand, grp);
CREATE TABLE learner_misconceptions (
    learner   TEXT NOT NULL,
    course    TEXT NOT NULL,
    component TEXT NOT NULL,
    item      TEXT NOT NULL,
    response  TEXT NOT NULL,
    grp       TEXT NOT NULL,
    PRIMARY KEY (learner, component, item, response)
);
CREATE INDEX learner_misconceptions_count ON learner_misconceptions (course, component, item, response, grp);
-- the group each answer was counted in, to take it back out on erasure
ALTER TABLE events ADD COLUMN grp TEXT;

CREATE TABLE priorities (
    course TEXT NOT NULL,
    grp    TEXT NOT NULL,
    skill  TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at BIGINT NOT NULL,
    PRIMARY KEY (course, grp, skill)
);
