-- The OCR queue: one job per document waiting for OCR. Ingest commits images and scanned
-- PDFs as 'pending'; a trigger enqueues them in the same transaction and wakes the workers
-- (NOTIFY alfrd_ocr, delivered at commit), so no writer can forget to.
--
-- state: queued (waiting, from not_before on), running (a worker holds the lease until
-- lease_expires_at; an expired lease is taken by another worker), done, failed (after
-- max_attempts; `alfrd retry` queues it again).

CREATE TABLE ocr_jobs (
    document_id       uuid PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    not_before        timestamptz NOT NULL DEFAULT now(),
    lease_owner       text,
    lease_expires_at  timestamptz,
    last_error        text,
    pages_total       integer,
    pages_done        integer NOT NULL DEFAULT 0,
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz
);

-- The claim walks queued jobs in order, and looks for expired leases.
CREATE INDEX ocr_jobs_queued_idx ON ocr_jobs (enqueued_at) WHERE state = 'queued';
CREATE INDEX ocr_jobs_running_idx ON ocr_jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX ocr_jobs_finished_idx ON ocr_jobs (finished_at) WHERE state = 'done';

-- The MIME types OCR reads: alfrd_daemon.ocr.reader.ocr_mime_types() (a test keeps the two
-- equal).
CREATE FUNCTION alfrd_ocr_mime(mime text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT mime IN ('image/png', 'image/jpeg', 'image/tiff', 'image/webp', 'image/bmp',
                    'image/gif', 'image/heic', 'image/heif', 'application/pdf')
$$;

-- What the queue takes: a document of an OCR type, or an ALFRD document folder, which is
-- pending when one of its pages is a scan or a photo (the worker reads those pages and keeps
-- the others' text).
CREATE FUNCTION alfrd_ocr_queued(mime text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT alfrd_ocr_mime(mime) OR mime = 'application/x-alfrd-folder'
$$;

-- A pending document of an OCR type is (re)queued: a new one, one whose failed OCR is taken
-- again, one `alfrd ocr --again` sets back to pending. A running job is left to its worker.
CREATE FUNCTION alfrd_ocr_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ocr_jobs (document_id) VALUES (NEW.id)
    ON CONFLICT (document_id) DO UPDATE
    SET state = 'queued', attempts = 0, not_before = now(), last_error = NULL,
        lease_owner = NULL, lease_expires_at = NULL, pages_done = 0, pages_total = NULL,
        enqueued_at = now(), started_at = NULL, finished_at = NULL
    WHERE ocr_jobs.state <> 'running';
    PERFORM pg_notify('alfrd_ocr', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER documents_ocr_enqueue
AFTER INSERT OR UPDATE OF status ON documents
FOR EACH ROW
WHEN (NEW.status = 'pending' AND alfrd_ocr_queued(NEW.mime_type))
EXECUTE FUNCTION alfrd_ocr_enqueue();

-- Rows ingested before this migration, waiting since.
INSERT INTO ocr_jobs (document_id, enqueued_at)
SELECT id, created_at FROM documents
WHERE status = 'pending' AND alfrd_ocr_queued(mime_type)
ON CONFLICT DO NOTHING;
