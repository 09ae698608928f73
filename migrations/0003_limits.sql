-- LLM tokens each learner spent per UTC day (`YYYY-MM-DD`), for the daily budget.
CREATE TABLE llm_usage (
    learner TEXT NOT NULL,
    day     TEXT NOT NULL,
    tokens  BIGINT NOT NULL,
    PRIMARY KEY (learner, day)
);
