-- Named queries. Python asks for one by name (db.queries.QUERIES["name"]) and passes
-- parameters; values always travel as parameters, never in the SQL text.

-- name: insert_document
INSERT INTO documents (id, sha256, original_name, source_path, tags, mime_type, size_bytes,
                       stored_path, status, title, extracted_text, extractor, search_config,
                       metadata, error, store_id, document_type, correspondent, rule_tags,
                       document_date)
VALUES (coalesce(%(id)s, gen_random_uuid()), %(sha256)s, %(original_name)s, %(source_path)s,
        %(tags)s, %(mime_type)s, %(size_bytes)s, %(stored_path)s, %(status)s, %(title)s,
        %(extracted_text)s, %(extractor)s, %(search_config)s::regconfig, %(metadata)s, %(error)s,
        %(store_id)s, %(document_type)s, %(correspondent)s, %(rule_tags)s,
        %(document_date)s)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: insert_documents
-- A committer batch in one statement (rows as a JSON array: one parse and plan instead of one
-- per row, which cost PostgreSQL about 1.4 times the CPU per row). Rows whose content or id
-- is taken are skipped, as by insert_document, and resolved by the caller, which passes each
-- content and id once per statement: which row of a batch is new never depends on order.
INSERT INTO documents (id, sha256, original_name, source_path, tags, mime_type, size_bytes,
                       stored_path, status, title, extracted_text, extractor, search_config,
                       metadata, error, store_id, document_type, correspondent, rule_tags,
                       document_date)
SELECT coalesce(r.id, gen_random_uuid()), r.sha256, r.original_name, r.source_path,
       coalesce(r.tags, '{}'), r.mime_type, r.size_bytes, r.stored_path, r.status, r.title,
       r.extracted_text, r.extractor, r.search_config::regconfig, coalesce(r.metadata, '{}'),
       r.error, r.store_id, r.document_type, r.correspondent, coalesce(r.rule_tags, '{}'),
       r.document_date
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    id uuid, sha256 text, original_name text, source_path text, tags text[], mime_type text,
    size_bytes bigint, stored_path text, status text, title text, extracted_text text,
    extractor text, search_config text, metadata jsonb, error text, store_id uuid,
    document_type text, correspondent text, rule_tags text[], document_date date)
ON CONFLICT DO NOTHING
RETURNING id, sha256;

-- name: find_existing_document
SELECT id, status, stored_path, deleted_at
FROM documents
WHERE sha256 = %(sha256)s OR id = %(id)s
ORDER BY (sha256 = %(sha256)s) DESC
LIMIT 1
FOR UPDATE;

-- name: replace_failed_document
UPDATE documents
SET sha256 = %(sha256)s, original_name = %(original_name)s, source_path = %(source_path)s,
    tags = %(tags)s, mime_type = %(mime_type)s, size_bytes = %(size_bytes)s,
    stored_path = %(stored_path)s, status = %(status)s, title = %(title)s,
    extracted_text = %(extracted_text)s, extractor = %(extractor)s,
    search_config = %(search_config)s::regconfig, metadata = %(metadata)s, error = %(error)s,
    store_id = %(store_id)s, updated_at = now(),
    -- A failed row has no rules' work to keep, but the user may have named it already.
    document_type = CASE WHEN 'document_type' = ANY(user_fields) THEN document_type
                         ELSE %(document_type)s END,
    correspondent = CASE WHEN 'correspondent' = ANY(user_fields) THEN correspondent
                         ELSE %(correspondent)s END,
    rule_tags = %(rule_tags)s,
    document_date = CASE WHEN 'document_date' = ANY(user_fields) THEN document_date
                         ELSE %(document_date)s END
WHERE id = %(existing_id)s AND status = 'failed'
RETURNING id;

-- name: revive_trashed_document
-- The content of a document in the trash arrives again: the user wants it back, so the row
-- becomes this arrival's fresh ingest (its name, path, tags, created now), not a silent
-- duplicate of something deleted. What the user or rules set on the deleted document goes
-- with the deletion.
UPDATE documents
SET sha256 = %(sha256)s, original_name = %(original_name)s, source_path = %(source_path)s,
    tags = %(tags)s, mime_type = %(mime_type)s, size_bytes = %(size_bytes)s,
    stored_path = %(stored_path)s, status = %(status)s, title = %(title)s,
    extracted_text = %(extracted_text)s, extractor = %(extractor)s,
    search_config = %(search_config)s::regconfig, metadata = %(metadata)s, error = %(error)s,
    store_id = %(store_id)s, deleted_at = NULL, created_at = now(), updated_at = now(),
    document_type = NULL, correspondent = NULL, document_date = NULL, user_fields = '{}',
    rule_tags = '{}', user_removed_tags = '{}'
WHERE id = %(existing_id)s AND deleted_at IS NOT NULL
RETURNING id;

-- name: insert_arrival
INSERT INTO document_arrivals (document_id, claim_key, source_path, original_name, size_bytes,
                               instance, outcome)
VALUES (%(document_id)s, %(claim_key)s, %(source_path)s, %(original_name)s, %(size_bytes)s,
        %(instance)s, %(outcome)s)
ON CONFLICT (claim_key) DO NOTHING
RETURNING id;

-- name: insert_arrivals
-- The arrivals of a committer batch in one statement; returns the claim keys recorded now
-- (a key already there was recorded before a crash: its claim is being replayed).
INSERT INTO document_arrivals (document_id, claim_key, source_path, original_name, size_bytes,
                               instance, outcome)
SELECT r.document_id, r.claim_key, r.source_path, r.original_name, r.size_bytes, r.instance,
       r.outcome
FROM jsonb_to_recordset(%(arrivals)s::jsonb) AS r(
    document_id uuid, claim_key text, source_path text, original_name text, size_bytes bigint,
    instance text, outcome text)
ON CONFLICT (claim_key) DO NOTHING
RETURNING claim_key;

-- name: notify_document
SELECT pg_notify('alfrd_documents', %(document_id)s::text);

-- fragment: filters
-- The filters of `alfrd search` and `alfrd list` (db/search_filters.py); trashed rows never
-- match. A filter passed as NULL is folded away when the statement is planned with its values.
d.deleted_at IS NULL
AND (%(tags)s::text[] IS NULL OR d.tags @> %(tags)s::text[])
AND (%(status)s::text IS NULL OR d.status = %(status)s::text)
AND (%(document_type)s::text IS NULL OR lower(d.document_type) = lower(%(document_type)s::text))
AND (%(correspondent)s::text IS NULL OR lower(d.correspondent) = lower(%(correspondent)s::text))
AND (%(date_from)s::date IS NULL OR d.document_date >= %(date_from)s::date)
AND (%(date_until)s::date IS NULL OR d.document_date < %(date_until)s::date)
AND (%(after)s::date IS NULL
     OR coalesce(d.document_date, d.created_at::date) >= %(after)s::date)
AND (%(before)s::date IS NULL
     OR coalesce(d.document_date, d.created_at::date) <= %(before)s::date)
AND (%(ingested_after)s::date IS NULL OR d.created_at >= %(ingested_after)s::date)
AND (%(ingested_before)s::date IS NULL OR d.created_at < %(ingested_before)s::date + 1)

-- fragment: tsquery
-- The query db/search_query.py built from what the user typed: quoted, escaped pieces.
to_tsquery(%(config)s::regconfig, %(tsquery)s::text) AS q(query)

-- name: search_matches
-- Not run: `alfrd search` asks the planner how many rows it expects this to return (EXPLAIN),
-- together with the table's size, to choose how a query finds its newest matches.
SELECT 1
FROM documents d, {tsquery}
WHERE d.search_vector @@ q.query
  AND {filters};

-- name: documents_estimate
SELECT reltuples::bigint AS n FROM pg_class WHERE oid = 'documents'::regclass;

-- fragment: snippet
-- The best fragment of a result: at most MaxWords words, the matches between \x02 and \x03
-- (db/snippet.py turns them into offsets or bold and caps the length: runs of punctuation
-- such as dotted leaders are no words and would pass MaxWords). Both search queries use it.
left(ts_headline(d.search_config,
                 left(translate(concat_ws(E'\n', d.title,
                                          coalesce(nullif(d.extracted_text, ''),
                                                   d.original_name)),
                                E'\x02\x03', '  '),
                      200000),
                 hits.query,
                 E'StartSel=\x02, StopSel=\x03, MaxWords=30, MinWords=12, MaxFragments=1'),
     4000)

-- fragment: result_columns
d.id, d.original_name, d.tags, d.status, d.created_at, d.document_type, d.correspondent,
d.document_date, hits.rank

-- fragment: rank_newest_open
-- The search queries below find a query's newest window + 1 matches, newest first, between
-- rank_newest_open and rank_newest_close, which rank the first `window` of them: `more` says
-- that more than `window` matched (the query is broad and the older matches were left out).
-- With no more than `window` matches, every match is ranked. Snippets are built for the page
-- of results only (ts_headline re-parses text).
SELECT {result_columns}, {snippet} AS snippet, hits.more
FROM (
    SELECT ranked.id, ts_rank_cd(ranked.search_vector, ranked.query) AS rank, ranked.query,
           ranked.created_at, ranked.more
    FROM (
        SELECT newest.*, row_number() OVER (ORDER BY newest.created_at DESC) AS nth,
               count(*) OVER () > %(window)s AS more
        FROM (

-- fragment: rank_newest_close
        ) AS newest
    ) AS ranked
    WHERE ranked.nth <= %(window)s
    ORDER BY rank DESC, ranked.created_at DESC
    LIMIT %(limit)s
) AS hits
JOIN documents d ON d.id = hits.id
ORDER BY hits.rank DESC, d.created_at DESC

-- name: search_documents_newest
-- Many matches for the archive's size: walk the created_at index, newest first, until
-- window + 1 matches turned up (about window / density rows, each one's search_vector read).
{rank_newest_open}
            SELECT d.id, d.search_vector, d.created_at, q.query
            FROM documents d, {tsquery}
            WHERE d.search_vector @@ q.query
              AND {filters}
            ORDER BY d.created_at DESC
            LIMIT %(window)s + 1
{rank_newest_close};

-- name: search_documents_newest_of_few
-- Fewer matches: the GIN index gives them as a bitmap, and the newest are sorted out by
-- created_at (ordering by an expression of it keeps the planner from choosing the walk, whose
-- cost estimate leaves reading the search_vector out). With newest_rows given, only documents
-- among the newest that many are considered: a bitmap of them from the created_at index is
-- ANDed with the GIN bitmap, so only their pages are read, not one page per match.
-- db/search.py widens the cut when fewer than window + 1 matches fell inside it.
{rank_newest_open}
            SELECT d.id, d.search_vector, d.created_at, q.query
            FROM documents d, {tsquery}
            WHERE d.search_vector @@ q.query
              AND {filters}
              AND (%(newest_rows)s::bigint IS NULL
                   OR d.created_at >= coalesce(
                       (SELECT created_at FROM documents
                        ORDER BY created_at DESC OFFSET %(newest_rows)s::bigint - 1 LIMIT 1),
                       '-infinity'))
            ORDER BY d.created_at + interval '0 seconds' DESC
            LIMIT %(window)s + 1
{rank_newest_close};

-- name: list_documents
-- ocr_state: where a document stands in the OCR queue (NULL: OCR never had it).
SELECT d.id, d.original_name, d.source_path, d.tags, d.status, d.mime_type, d.size_bytes,
       d.created_at, d.error, d.document_type, d.correspondent, d.document_date,
       j.state AS ocr_state
FROM documents d
LEFT JOIN ocr_jobs j ON j.document_id = d.id
WHERE {filters}
ORDER BY d.created_at DESC, d.id
LIMIT %(limit)s;

-- name: show_document
-- Trashed documents too: `alfrd show` says so, and how to restore one.
SELECT d.id, d.sha256, d.original_name, d.source_path, d.tags, d.mime_type, d.size_bytes,
       d.stored_path, d.status, d.title, d.extractor, d.search_config::text AS search_config,
       d.metadata, d.error, d.created_at, d.updated_at, d.document_type, d.correspondent,
       d.document_date, d.user_fields, d.rule_tags,
       left(coalesce(d.extracted_text, ''), %(text_limit)s) AS text,
       length(coalesce(d.extracted_text, '')) AS text_length,
       d.store_id, s.hostname AS store_hostname, s.path AS store_path,
       d.document_type, d.correspondent, d.document_date, d.user_fields, d.rule_tags,
       d.user_removed_tags, d.deleted_at
FROM documents d
LEFT JOIN stores s ON s.id = d.store_id
WHERE d.id::text = %(id)s OR d.id::text LIKE %(prefix)s
ORDER BY d.id
LIMIT 2;

-- name: document_arrivals
SELECT source_path, original_name, outcome, instance, arrived_at
FROM document_arrivals
WHERE document_id = %(id)s
ORDER BY arrived_at;

-- name: count_by_status
-- Documents in the trash count as 'trashed', whatever their status was.
SELECT CASE WHEN deleted_at IS NULL THEN status ELSE 'trashed' END AS status, count(*) AS n
FROM documents
GROUP BY 1
ORDER BY 1;

-- name: count_arrivals_by_outcome
SELECT outcome, count(*) AS n FROM document_arrivals GROUP BY outcome ORDER BY outcome;

-- name: upsert_instance
INSERT INTO daemon_instances (instance, hostname, pid, state)
VALUES (%(instance)s, %(hostname)s, %(pid)s, %(state)s)
ON CONFLICT (instance) DO UPDATE
SET heartbeat_at = now(), state = EXCLUDED.state, stopped_at = NULL;

-- name: instances_present
SELECT instance FROM daemon_instances WHERE instance = ANY(%(instances)s);

-- name: stop_instance
UPDATE daemon_instances SET stopped_at = now(), heartbeat_at = now(), state = %(state)s
WHERE instance = %(instance)s;

-- name: list_instances
SELECT instance, hostname, pid, started_at, heartbeat_at, stopped_at, state,
       now() - heartbeat_at AS heartbeat_age
FROM daemon_instances
WHERE stopped_at IS NULL OR stopped_at > now() - interval '1 day'
ORDER BY started_at DESC
LIMIT 20;

-- name: delete_failed_document
DELETE FROM documents WHERE id = %(id)s AND status = 'failed';

-- name: arrival_document
SELECT document_id, outcome FROM document_arrivals WHERE claim_key = %(claim_key)s;

-- name: set_arrival_document
UPDATE document_arrivals SET document_id = %(document_id)s, outcome = %(outcome)s
WHERE id = %(arrival_id)s;

-- name: refresh_failed_document
-- The file now waits in this daemon's failed/ folder, so the row names this daemon's store.
UPDATE documents
SET error = %(error)s, stored_path = %(stored_path)s, store_id = %(store_id)s,
    updated_at = now()
WHERE id = %(id)s AND status = 'failed';

-- name: arrival_stored_path
-- Where a failure replayed after a crash said its file would be (failed/<name>).
SELECT d.stored_path FROM document_arrivals a JOIN documents d ON d.id = a.document_id
WHERE a.claim_key = %(claim_key)s;

-- name: notify_documents
SELECT pg_notify('alfrd_documents', id) FROM unnest(%(ids)s::text[]) AS id;

-- name: register_store
INSERT INTO stores (id, hostname, path) VALUES (%(id)s, %(hostname)s, %(path)s)
ON CONFLICT (id) DO UPDATE
SET hostname = EXCLUDED.hostname, path = EXCLUDED.path, last_seen = now();

-- name: other_stores_at_path
SELECT id FROM stores
WHERE hostname = %(hostname)s AND path = %(path)s AND id <> %(id)s::uuid;

-- name: list_stores
-- Every store with the rows it holds, and the rows no store was recorded for (id NULL).
SELECT s.id, s.hostname, s.path, s.first_seen, s.last_seen,
       (SELECT count(*) FROM documents d WHERE d.store_id = s.id) AS documents
FROM stores s
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, count(*) FROM documents WHERE store_id IS NULL
ORDER BY first_seen NULLS LAST;
