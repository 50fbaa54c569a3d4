-- Named queries of the scheduled jobs (same format as queries.sql, read by db/queries.py).

-- name: job_try_lock
SELECT pg_try_advisory_lock(%(key)s) AS locked;

-- name: job_abandon_stale
UPDATE job_runs
SET outcome = 'abandoned', finished_at = now(),
    details = details || jsonb_build_object('reason', 'the run''s holder died or lost its connection')
WHERE job = %(job)s AND outcome = 'running'
RETURNING id, instance;

-- name: job_running_elsewhere
SELECT instance, started_at FROM job_runs
WHERE job = %(job)s AND outcome = 'running'
ORDER BY started_at DESC
LIMIT 1;

-- name: job_slot_served
SELECT id, instance, outcome FROM job_runs
WHERE job = %(job)s AND scheduled_for = %(slot)s AND outcome IN ('succeeded', 'failed')
LIMIT 1;

-- name: job_start
INSERT INTO job_runs (job, instance, trigger, scheduled_for)
VALUES (%(job)s, %(instance)s, %(trigger)s, %(slot)s)
RETURNING id, started_at;

-- name: job_finish
UPDATE job_runs
SET finished_at = now(), outcome = %(outcome)s, details = %(details)s
WHERE id = %(id)s;

-- name: job_record_success
INSERT INTO job_state (job, last_success) VALUES (%(job)s, %(started_at)s)
ON CONFLICT (job) DO UPDATE
SET last_success = greatest(job_state.last_success, EXCLUDED.last_success);

-- name: job_register
INSERT INTO job_state (job) VALUES (%(job)s) ON CONFLICT (job) DO NOTHING;

-- name: job_reference
SELECT coalesce(last_success, first_scheduled) AS reference, last_success
FROM job_state WHERE job = %(job)s;

-- name: job_latest_runs
SELECT DISTINCT ON (job) id, job, instance, trigger, scheduled_for, started_at, finished_at,
       outcome, details
FROM job_runs
ORDER BY job, started_at DESC, id DESC;

-- name: job_record
-- A finished run of an instance job, recorded in one statement after the fact.
INSERT INTO job_runs (job, instance, trigger, started_at, finished_at, outcome, details)
VALUES (%(job)s, %(instance)s, %(trigger)s, %(started_at)s, now(), %(outcome)s, %(details)s)
RETURNING id;

-- name: job_states
SELECT job, first_scheduled, last_success FROM job_state;

-- name: job_history
SELECT id, job, instance, trigger, scheduled_for, started_at, finished_at, outcome, details
FROM job_runs
WHERE (%(job)s::text IS NULL OR job = %(job)s)
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s;

-- name: backup_export_snapshot
SELECT pg_export_snapshot() AS snapshot, current_database() AS database,
       current_setting('server_version') AS server_version;

-- name: backup_user_tables
SELECT n.nspname AS schema, c.relname AS table
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%%' AND n.nspname NOT LIKE 'pg\_temp%%'
  AND NOT c.relispartition
ORDER BY 1, 2;

-- name: backup_content_store
SELECT sha256, stored_path FROM documents
WHERE sha256 IS NOT NULL AND stored_path IS NOT NULL
ORDER BY sha256;

-- name: backup_sample_lexemes
-- Words common in a sample of the archive, to compare searches after a restore.
SELECT lexeme, count(*) AS documents
FROM (
    SELECT unnest(tsvector_to_array(search_vector)) AS lexeme
    FROM documents
    WHERE search_vector IS NOT NULL
    ORDER BY id
    LIMIT %(documents)s
) words
WHERE lexeme ~ '^[[:alpha:]]{3,}$'
GROUP BY lexeme
ORDER BY count(*) DESC, lexeme
LIMIT %(limit)s;

-- name: backup_search_fingerprint
-- Matches for one lexeme: how many and which (as a digest of the sorted ids).
SELECT count(*) AS matches, md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')) AS ids_md5
FROM documents
WHERE search_vector @@ quote_literal(%(lexeme)s)::tsquery;

-- name: restore_user_objects
SELECT n.nspname AS schema, c.relname AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%%' AND n.nspname NOT LIKE 'pg\_temp%%'
ORDER BY 1, 2
LIMIT 3;

-- name: reindex_config_exists
SELECT cfgname::text AS config FROM pg_ts_config WHERE cfgname = %(config)s;

-- name: reindex_count_stale
SELECT count(*) AS stale, (SELECT count(*) FROM documents) AS total
FROM documents WHERE search_config <> %(config)s::regconfig;

-- name: reindex_batch
-- One batch in id order; the generated search_vector is recomputed for the rows it changes.
WITH batch AS (
    SELECT id FROM documents WHERE id > %(after)s ORDER BY id LIMIT %(limit)s
), changed AS (
    UPDATE documents d SET search_config = %(config)s::regconfig
    FROM batch
    WHERE d.id = batch.id AND d.search_config <> %(config)s::regconfig
    RETURNING d.id
)
SELECT (SELECT id FROM batch ORDER BY id DESC LIMIT 1) AS last_id,
       (SELECT count(*) FROM batch) AS scanned,
       (SELECT count(*) FROM changed) AS changed;

-- name: reindex_index_stats
SELECT pg_relation_size('documents_search_vector_idx') AS index_bytes,
       greatest((SELECT reltuples FROM pg_class WHERE oid = 'documents'::regclass), 0)::bigint
           AS estimated_rows,
       (SELECT count(*) FROM documents) AS rows;

-- name: reindex_invalid_leftovers
-- REINDEX CONCURRENTLY that was interrupted leaves an invalid copy named …_ccnew[N].
SELECT c.relname AS name
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'documents'::regclass AND NOT i.indisvalid
  AND c.relname LIKE 'documents\_search\_vector\_idx\_ccnew%%';

-- name: reindex_last_baseline
SELECT (details->>'baseline_bytes_per_row')::float8 AS bytes_per_row
FROM job_runs
WHERE job = 'reindex' AND outcome = 'succeeded' AND details ? 'baseline_bytes_per_row'
ORDER BY started_at DESC
LIMIT 1;

-- name: prune_arrivals
DELETE FROM document_arrivals
WHERE id IN (SELECT id FROM document_arrivals WHERE arrived_at < %(cutoff)s LIMIT %(limit)s);

-- name: prune_job_runs
DELETE FROM job_runs
WHERE id IN (
    SELECT id FROM job_runs r
    WHERE r.finished_at < %(cutoff)s
      AND r.id <> (SELECT l.id FROM job_runs l WHERE l.job = r.job
                   ORDER BY l.started_at DESC, l.id DESC LIMIT 1)
    LIMIT %(limit)s);

-- name: reindex_clean_pending_list
SELECT gin_clean_pending_list('documents_search_vector_idx'::regclass);

-- name: reextract_candidates
-- Rows left pending when nothing read their type, by an older "none" that a reader has since
-- replaced (extract.api.EXTRACTOR_VERSIONS), or for a reason that may have gone (a tool that
-- was not installed), in id order after the last one seen.
SELECT id, stored_path, original_name, extractor, metadata->>'pending_reason' AS pending_reason
FROM documents
WHERE status = 'pending' AND mime_type = ANY(%(mime_types)s) AND stored_path IS NOT NULL
  AND ((extractor LIKE 'none/%%' AND extractor <> %(current)s) OR metadata ? 'pending_reason')
  AND id > %(after)s
ORDER BY id
LIMIT %(limit)s;

-- name: reextract_document_date
-- The date read from the new text (a date the user set by hand stays), written right after
-- reextract_update.
UPDATE documents
SET document_date = CASE WHEN 'document_date' = ANY(user_fields) THEN document_date
                         ELSE %(document_date)s END,
    metadata = metadata || %(dates)s::jsonb
WHERE id = %(id)s;

-- name: reextract_update
-- Only if no downstream worker took the row meanwhile (it would no longer be pending).
UPDATE documents
SET extracted_text = %(extracted_text)s, extractor = %(extractor)s, status = %(status)s,
    mime_type = coalesce(%(mime_type)s, mime_type), title = coalesce(%(title)s, title),
    metadata = (metadata - 'pending_reason') || %(metadata)s, error = %(error)s,
    updated_at = now()
WHERE id = %(id)s AND status = 'pending' AND extractor = %(old_extractor)s
RETURNING id;
