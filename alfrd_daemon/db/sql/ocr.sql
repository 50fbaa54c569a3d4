-- Named queries of the OCR queue (the queries.sql format). Jobs are made by the trigger of
-- migration 005; a worker claims one, renews its lease after each page, and completes, fails
-- or releases it. Every change a worker makes checks that it still holds the lease
-- (lease_owner is unique per claim), so a worker whose lease expired and was taken over can
-- never complete a document a second time.

-- fragment: pages_estimate
-- Pages a job has to OCR: known once a worker opened it, else the pages ingest found
-- without a text layer, else the PDF's page count, else one (an image).
coalesce(j.pages_total,
         CASE WHEN jsonb_typeof(d.metadata -> 'ocr_pages') = 'array'
              THEN jsonb_array_length(d.metadata -> 'ocr_pages') END,
         CASE WHEN jsonb_typeof(d.metadata -> 'pages') = 'number'
              THEN (d.metadata ->> 'pages')::numeric::integer END,
         1)

-- name: ocr_claim
-- The oldest queued job that is due, or a running one whose worker let its lease expire
-- (stopped or killed). Counting the attempt here means a document that kills its worker
-- every time still ends failed after max_attempts.
WITH candidate AS (
    SELECT j.document_id
    FROM ocr_jobs j
    JOIN documents d ON d.id = j.document_id
    WHERE d.status = 'pending' AND d.deleted_at IS NULL  -- not in the trash
      -- Only files this worker's store holds (a shared store has one id for every host).
      AND (d.store_id IS NULL OR %(store_id)s::uuid IS NULL OR d.store_id = %(store_id)s::uuid)
      AND ((j.state = 'queued' AND j.not_before <= now())
           OR (j.state = 'running' AND j.lease_expires_at < now()))
    ORDER BY j.enqueued_at, j.document_id
    LIMIT 1
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE ocr_jobs j
SET state = 'running', attempts = j.attempts + 1, lease_owner = %(owner)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    started_at = now(), pages_done = 0
FROM candidate c, documents d
WHERE j.document_id = c.document_id AND d.id = j.document_id
RETURNING j.document_id, j.attempts, j.last_error, d.stored_path, d.mime_type,
          d.original_name, d.store_id, d.metadata -> 'folder' -> 'pages' AS folder_pages;

-- name: ocr_renew
UPDATE ocr_jobs
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    pages_done = %(pages_done)s, pages_total = %(pages_total)s
WHERE document_id = %(id)s AND state = 'running' AND lease_owner = %(owner)s
RETURNING document_id;

-- name: ocr_complete
-- Text and status in one statement; search_vector is generated from extracted_text.
WITH job AS (
    UPDATE ocr_jobs
    SET state = 'done', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL,
        last_error = NULL, pages_total = %(pages)s, pages_done = %(pages)s
    WHERE document_id = %(id)s AND state = 'running' AND lease_owner = %(owner)s
    RETURNING document_id
)
UPDATE documents d
SET extracted_text = %(text)s, status = 'extracted', extractor = %(extractor)s,
    metadata = d.metadata || jsonb_build_object('ocr', %(ocr)s::jsonb), error = NULL,
    updated_at = now()
FROM job
WHERE d.id = job.document_id
RETURNING d.id;

-- name: ocr_document_date
-- The date read from the OCR text, written in ocr_complete's transaction; a date the user
-- set by hand stays. The candidates are recorded either way.
UPDATE documents
SET document_date = CASE WHEN 'document_date' = ANY(user_fields) THEN document_date
                         ELSE %(document_date)s END,
    metadata = metadata || %(dates)s::jsonb
WHERE id = %(id)s;

-- name: ocr_fail
-- One attempt failed: queued again after `delay_seconds`, or failed for good once it had
-- max_attempts (the document too, with the reason).
WITH job AS (
    UPDATE ocr_jobs
    SET state = CASE WHEN attempts >= %(max_attempts)s THEN 'failed' ELSE 'queued' END,
        not_before = now() + make_interval(secs => %(delay_seconds)s),
        last_error = %(reason)s, lease_owner = NULL, lease_expires_at = NULL,
        finished_at = CASE WHEN attempts >= %(max_attempts)s THEN now() END
    WHERE document_id = %(id)s AND state = 'running' AND lease_owner = %(owner)s
    RETURNING document_id, state, attempts
), doc AS (
    UPDATE documents d
    SET status = 'failed', error = %(error)s, updated_at = now()
    FROM job
    WHERE d.id = job.document_id AND job.state = 'failed' AND d.status = 'pending'
    RETURNING d.id
)
SELECT state, attempts FROM job;

-- name: ocr_release
-- Not the document's fault (stopping, the database or the engine away): back in the queue
-- without counting the attempt.
UPDATE ocr_jobs
SET state = 'queued', attempts = greatest(attempts - 1, 0),
    not_before = now() + make_interval(secs => %(delay_seconds)s),
    lease_owner = NULL, lease_expires_at = NULL
WHERE document_id = %(id)s AND state = 'running' AND lease_owner = %(owner)s
RETURNING document_id;

-- name: ocr_queue_summary
SELECT count(*) FILTER (WHERE j.state IN ('queued', 'running')) AS documents_waiting,
       count(*) FILTER (WHERE j.state = 'running' AND j.lease_expires_at >= now()) AS running,
       coalesce(sum(greatest({pages_estimate} - j.pages_done, 0))
                FILTER (WHERE j.state IN ('queued', 'running')), 0) AS pages_waiting,
       min(j.enqueued_at) FILTER (WHERE j.state IN ('queued', 'running')) AS oldest_waiting,
       count(*) FILTER (WHERE j.state = 'failed') AS failed,
       count(*) FILTER (WHERE j.state IN ('queued', 'running') AND j.attempts > 0
                        AND j.last_error IS NOT NULL) AS retrying
FROM ocr_jobs j
JOIN documents d ON d.id = j.document_id
WHERE j.state IN ('queued', 'running', 'failed') AND d.deleted_at IS NULL
  AND (j.state = 'failed' OR d.status = 'pending');

-- name: ocr_recent_rate
-- Pages finished in the window, and the span they were finished in (first start to last
-- finish), for pages per second across every worker.
SELECT coalesce(sum(j.pages_total), 0) AS pages,
       extract(epoch FROM max(j.finished_at) - min(j.started_at)) AS seconds
FROM ocr_jobs j
WHERE j.state = 'done' AND j.finished_at > now() - make_interval(secs => %(window_seconds)s);

-- name: ocr_recent_failures
SELECT j.document_id, d.original_name, j.last_error, j.attempts, j.finished_at
FROM ocr_jobs j
JOIN documents d ON d.id = j.document_id
WHERE j.state = 'failed'
ORDER BY j.finished_at DESC NULLS LAST
LIMIT %(limit)s;

-- name: ocr_retry_failed
-- `alfrd retry`: a document whose OCR failed is pending again; the trigger queues it afresh.
UPDATE documents d
SET status = 'pending', error = NULL, updated_at = now()
FROM ocr_jobs j
WHERE j.document_id = d.id AND j.state = 'failed' AND d.status = 'failed'
  AND d.deleted_at IS NULL
  AND (%(all)s OR d.id::text LIKE ANY(%(prefixes)s::text[]))
RETURNING d.id, d.original_name;

-- name: ocr_again
-- `alfrd ocr --again`: documents of an OCR type back to pending (their current text stays
-- searchable until OCR replaces it); the trigger queues them. --all takes every document OCR
-- has seen.
UPDATE documents d
SET status = 'pending', error = NULL, updated_at = now()
WHERE alfrd_ocr_queued(d.mime_type) AND d.stored_path IS NOT NULL AND d.deleted_at IS NULL
  AND (d.status IN ('pending', 'extracted')
       OR EXISTS (SELECT 1 FROM ocr_jobs j WHERE j.document_id = d.id AND j.state = 'failed'))
  AND ((%(all)s AND EXISTS (SELECT 1 FROM ocr_jobs j WHERE j.document_id = d.id))
       OR d.id::text LIKE ANY(%(prefixes)s::text[]))
RETURNING d.id, d.original_name;

-- name: ocr_job_of
SELECT state, attempts, last_error, pages_total, pages_done, lease_owner, enqueued_at,
       started_at, finished_at
FROM ocr_jobs WHERE document_id = %(id)s;

-- name: ocr_next_due
-- When a worker with nothing to do should look again: the next queued job falling due (after
-- a retry's backoff) or the next lease running out.
SELECT extract(epoch FROM min(CASE WHEN j.state = 'queued' THEN j.not_before
                                   ELSE j.lease_expires_at END) - now()) AS seconds
FROM ocr_jobs j
JOIN documents d ON d.id = j.document_id
WHERE j.state IN ('queued', 'running') AND d.status = 'pending' AND d.deleted_at IS NULL
  AND (d.store_id IS NULL OR %(store_id)s::uuid IS NULL OR d.store_id = %(store_id)s::uuid);
