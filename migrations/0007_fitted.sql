-- BKT parameters fitted from the stored answers (`tutor passport fit`), versioned: the newest
-- version is the one every passport uses; a version with `reset` = 1 returns to the authored
-- parameters. Each version says when it was made and from which data.
CREATE TABLE bkt_fits (
    version       BIGINT PRIMARY KEY,
    fitted_at     BIGINT NOT NULL,
    reset         BIGINT NOT NULL,
    answers       BIGINT NOT NULL,
    learners      BIGINT NOT NULL,
    -- the newest answer fitted from (received, ms): with `answers`, the version of the data
    newest_answer BIGINT NOT NULL,
    since         BIGINT,
    prior_weight  DOUBLE PRECISION NOT NULL,
    mean_accuracy DOUBLE PRECISION NOT NULL,
    seed          BIGINT NOT NULL
);

CREATE TABLE bkt_params (
    version        BIGINT NOT NULL,
    skill          TEXT NOT NULL,
    prior          DOUBLE PRECISION NOT NULL,
    learn          DOUBLE PRECISION NOT NULL,
    guess          DOUBLE PRECISION NOT NULL,
    slip           DOUBLE PRECISION NOT NULL,
    learners       BIGINT NOT NULL,
    answers        BIGINT NOT NULL,
    log_likelihood_gain DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (version, skill)
);

-- which fitted version each stored passport was computed with, so that passports computed
-- with an older one are found and replayed
ALTER TABLE learners ADD COLUMN params_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX learners_by_params ON learners (params_version);
