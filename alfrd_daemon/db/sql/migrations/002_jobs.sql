-- Scheduled jobs: the history of every run, and what the scheduler must remember per job.

CREATE TABLE job_runs (
    id              bigserial PRIMARY KEY,
    job             text NOT NULL,
    instance        text NOT NULL,
    -- schedule: a regular fire; catch-up: a slot missed while no daemon ran it;
    -- manual: `alfrd jobs run`; reload: a configuration change (search.language → reindex).
    trigger         text NOT NULL CHECK (trigger IN ('schedule', 'catch-up', 'manual', 'reload')),
    -- The fire time a scheduled run serves; with the job's advisory lock it makes each slot
    -- run once however many daemons share the database. NULL for manual and reload runs.
    scheduled_for   timestamptz,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    -- running rows whose holder died are marked abandoned by the next run that gets the lock.
    outcome         text NOT NULL DEFAULT 'running'
                    CHECK (outcome IN ('running', 'succeeded', 'failed', 'abandoned')),
    details         jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX job_runs_job_started_idx ON job_runs (job, started_at DESC);
CREATE INDEX job_runs_slot_idx ON job_runs (job, scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE INDEX job_runs_finished_idx ON job_runs (finished_at);

CREATE TABLE job_state (
    job             text PRIMARY KEY,
    -- When a scheduler first knew the job: a job that never succeeded is overdue once a slot
    -- after this has passed (a laptop asleep every night at 03:00 still gets its backup).
    first_scheduled timestamptz NOT NULL DEFAULT now(),
    -- Start of the last successful run; kept here so pruning job_runs cannot lose it.
    last_success    timestamptz
);
