-- 0002_workflows_runs.sql — workflows and runs (issue #6) in the PostgreSQL
-- read model. Written by the projector's PostgreSQL target in the same
-- transaction as the batch's events and offsets (projections/proj_pg.c).
-- No secret is stored anywhere in this schema: webhook_secret and
-- signing_secret appear as "[redacted]" in events.payload.

-- Live workflows; a deleted workflow's row is removed. actions: the query
-- answer's action objects (projections/proj_doc.h).
CREATE TABLE workflows (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    enabled    boolean     NOT NULL,
    actions    jsonb       NOT NULL,
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
) WITH (fillfactor = 70);
CREATE INDEX workflows_enabled_id ON workflows (enabled, id);

-- Runs. steps: [{"index","name"?,"type"?,"status"}] (attempts in run_attempts).
CREATE TABLE runs (
    id               text        PRIMARY KEY,
    workflow_id      text        NOT NULL,
    workflow_version bigint      NOT NULL,
    trigger          text        NOT NULL CHECK (trigger IN ('manual', 'webhook')),
    status           text        NOT NULL
                     CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    payload          jsonb       NOT NULL,
    error            text,
    steps            jsonb       NOT NULL,
    version          bigint      NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
) WITH (fillfactor = 70);
CREATE INDEX runs_workflow_id ON runs (workflow_id, id);
CREATE INDEX runs_status_id ON runs (status, id);

-- Every StepAttempted of a run.
CREATE TABLE run_attempts (
    run_id        text        NOT NULL,
    step          integer     NOT NULL,
    attempt       bigint      NOT NULL,
    status_code   integer,
    error         text,
    at            timestamptz NOT NULL,
    duration_ms   bigint      NOT NULL,
    next_delay_ms bigint,
    delivery_id   text,
    PRIMARY KEY (run_id, step, attempt)
);
