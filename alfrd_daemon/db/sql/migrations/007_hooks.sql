-- Hooks (issue 14): a user's command run after a document is committed (post_ingest) and
-- after its OCR is written (post_ocr). Runs are a durable queue, filled by triggers in the
-- committing transaction, so no writer can forget one and a run survives a crash of the
-- daemon; runners (service/hooks) claim them with FOR UPDATE SKIP LOCKED under a lease.
--
-- A trigger cannot read the YAML: `hook_config` holds, per host, the hooks its daemon has
-- configured (each daemon replaces its host's rows at start). A run is enqueued only while
-- some host has that hook, so an archive without hooks writes no rows at all, and enabling
-- a hook later does not run it over every old document.
--
-- hook_runs.state: queued (due from not_before on), running (a runner holds the lease until
-- lease_expires_at; an expired lease is taken by another runner: at-least-once), done,
-- failed (the command failed or timed out, after hooks.retries more tries), skipped (no host
-- has the hook any more, or the document went to the trash before its hook ran).

CREATE TABLE hook_config (
    hook        text NOT NULL CHECK (hook IN ('post_ingest', 'post_ocr')),
    host        text NOT NULL,
    command     text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hook, host)
);

CREATE TABLE hook_runs (
    document_id       uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    hook              text NOT NULL CHECK (hook IN ('post_ingest', 'post_ocr')),
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'done', 'failed', 'skipped')),
    attempts          integer NOT NULL DEFAULT 0,
    not_before        timestamptz NOT NULL DEFAULT now(),
    lease_owner       text,
    lease_expires_at  timestamptz,
    exit_code         integer,
    last_error        text,
    output            text,
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    PRIMARY KEY (document_id, hook)
);

CREATE INDEX hook_runs_queued_idx ON hook_runs (enqueued_at) WHERE state = 'queued';
CREATE INDEX hook_runs_running_idx ON hook_runs (lease_expires_at) WHERE state = 'running';
CREATE INDEX hook_runs_failed_idx ON hook_runs (finished_at) WHERE state = 'failed';

-- post_ingest runs once per document: when its row first exists and is not failed (a new
-- row, or a failed one replaced by a good ingest of the file). ON CONFLICT DO NOTHING: a
-- document whose OCR failed and is retried was ingested long ago.
-- The notification's payload is constant, so a group commit of many rows sends one.
-- A session that sets alfrd.skip_hooks = on (`alfrd import-duckdb`: moving an archive is
-- no new ingest) queues none.
CREATE FUNCTION alfrd_hooks_after_ingest() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('alfrd.skip_hooks', true) IS DISTINCT FROM 'on'
       AND EXISTS (SELECT 1 FROM hook_config WHERE hook = 'post_ingest') THEN
        INSERT INTO hook_runs (document_id, hook) VALUES (NEW.id, 'post_ingest')
        ON CONFLICT (document_id, hook) DO NOTHING;
        PERFORM pg_notify('alfrd_hooks', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER documents_hooks_ingested
AFTER INSERT ON documents
FOR EACH ROW
WHEN (NEW.status <> 'failed')
EXECUTE FUNCTION alfrd_hooks_after_ingest();

CREATE TRIGGER documents_hooks_replaced
AFTER UPDATE OF status ON documents
FOR EACH ROW
WHEN (OLD.status = 'failed' AND NEW.status <> 'failed')
EXECUTE FUNCTION alfrd_hooks_after_ingest();

-- post_ocr runs after every completed OCR (`alfrd ocr --again` reads a document once more,
-- and its hook runs again): a run in progress loses its lease, so its result is dropped and
-- the new one runs.
CREATE FUNCTION alfrd_hooks_after_ocr() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM hook_config WHERE hook = 'post_ocr') THEN
        INSERT INTO hook_runs (document_id, hook) VALUES (NEW.document_id, 'post_ocr')
        ON CONFLICT (document_id, hook) DO UPDATE
        SET state = 'queued', attempts = 0, not_before = now(), lease_owner = NULL,
            lease_expires_at = NULL, exit_code = NULL, last_error = NULL, output = NULL,
            enqueued_at = now(), started_at = NULL, finished_at = NULL;
        PERFORM pg_notify('alfrd_hooks', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER ocr_jobs_hooks_done
AFTER UPDATE OF state ON ocr_jobs
FOR EACH ROW
WHEN (NEW.state = 'done' AND OLD.state IS DISTINCT FROM 'done')
EXECUTE FUNCTION alfrd_hooks_after_ocr();
