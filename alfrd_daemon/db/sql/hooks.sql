-- Named queries of the hook runs (the queries.sql format). Runs are made by the triggers of
-- migration 007; a runner claims one under a lease, and finishes or releases it. Every change
-- a runner makes checks that it still holds the lease (lease_owner is unique per claim).

-- name: hook_config_clear
-- This host's daemon declares its hooks afresh at every start.
DELETE FROM hook_config WHERE host = %(host)s;

-- name: hook_config_set
INSERT INTO hook_config (hook, host, command) VALUES (%(hook)s, %(host)s, %(command)s)
ON CONFLICT (hook, host) DO UPDATE SET command = EXCLUDED.command, updated_at = now();

-- name: hook_skip_unconfigured
-- Runs queued for a hook no host has any more (or left running by a runner gone since)
-- would wait for ever.
UPDATE hook_runs r
SET state = 'skipped', finished_at = now(), last_error = 'no host has this hook configured',
    lease_owner = NULL, lease_expires_at = NULL
WHERE (r.state = 'queued' OR (r.state = 'running' AND r.lease_expires_at < now()))
  AND NOT EXISTS (SELECT 1 FROM hook_config c WHERE c.hook = r.hook);

-- name: hook_running_of_host
-- Runs leased by processes of this host, to find those of a daemon that died (kill -9).
SELECT document_id, hook, lease_owner
FROM hook_runs
WHERE state = 'running' AND lease_owner LIKE %(prefix)s;

-- name: hook_claim
-- The oldest due run of a hook this runner has, or a running one whose runner let its
-- lease expire; only documents whose file is in this runner's store.
WITH candidate AS (
    SELECT r.document_id, r.hook
    FROM hook_runs r
    JOIN documents d ON d.id = r.document_id
    WHERE r.hook = ANY(%(hooks)s::text[])
      AND (d.store_id IS NULL OR %(store_id)s::uuid IS NULL OR d.store_id = %(store_id)s::uuid)
      AND ((r.state = 'queued' AND r.not_before <= now())
           OR (r.state = 'running' AND r.lease_expires_at < now()))
    ORDER BY r.enqueued_at, r.document_id
    LIMIT 1
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE hook_runs r
SET state = 'running', attempts = r.attempts + 1, lease_owner = %(owner)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s), started_at = now()
FROM candidate c, documents d
WHERE r.document_id = c.document_id AND r.hook = c.hook AND d.id = r.document_id
RETURNING r.document_id, r.hook, r.attempts, d.original_name, d.stored_path, d.tags,
          d.document_type, d.correspondent, d.document_date, d.mime_type, d.status,
          d.title, d.deleted_at;

-- name: hook_finish
-- The run's outcome; `state` is done, failed, skipped, or queued again (a retry, due after
-- delay_seconds).
UPDATE hook_runs
SET state = %(state)s, exit_code = %(exit_code)s, last_error = %(error)s, output = %(output)s,
    finished_at = CASE WHEN %(state)s = 'queued' THEN NULL ELSE now() END,
    not_before = now() + make_interval(secs => %(delay_seconds)s),
    lease_owner = NULL, lease_expires_at = NULL
WHERE document_id = %(id)s AND hook = %(hook)s AND state = 'running'
  AND lease_owner = %(owner)s
RETURNING document_id;

-- name: hook_record_failure
-- On the document, beside its other metadata; status, text and tags are left alone.
UPDATE documents
SET metadata = jsonb_set(metadata, ARRAY['hooks'],
                         coalesce(metadata -> 'hooks', '{}'::jsonb)
                         || jsonb_build_object(%(hook)s::text, %(record)s::jsonb)),
    updated_at = now()
WHERE id = %(id)s;

-- name: hook_clear_failure
-- A later run that succeeded takes back the failure an earlier one recorded.
UPDATE documents
SET metadata = metadata #- ARRAY['hooks', %(hook)s::text], updated_at = now()
WHERE id = %(id)s AND metadata -> 'hooks' ? %(hook)s::text;

-- name: hook_release
-- Put back uncounted: the runner stopped, or the daemon that ran it died.
UPDATE hook_runs
SET state = 'queued', attempts = greatest(0, attempts - 1), not_before = now(),
    lease_owner = NULL, lease_expires_at = NULL
WHERE document_id = %(id)s AND hook = %(hook)s AND state = 'running'
  AND lease_owner = %(owner)s
RETURNING document_id;

-- name: hook_runs_of
SELECT hook, state, attempts, exit_code, last_error, output, enqueued_at, started_at,
       finished_at
FROM hook_runs WHERE document_id = %(id)s ORDER BY hook;

-- name: hook_counts
SELECT hook, state, count(*) AS n FROM hook_runs
WHERE state IN ('queued', 'running', 'failed') GROUP BY hook, state ORDER BY hook, state;
