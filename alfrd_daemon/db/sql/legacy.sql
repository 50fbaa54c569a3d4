-- Named queries of `alfrd import-duckdb` / `export-duckdb` (queries.sql format, loaded by
-- legacy/importer.py, legacy/verify.py and legacy/exporter.py). The legacy_* tables' own
-- inserts and reads are composed from legacy/mapping.py's LEGACY_TABLES with psycopg.sql
-- identifiers.

-- name: import_try_lock
SELECT pg_try_advisory_lock(%(key)s) AS locked;

-- name: import_unlock
SELECT pg_advisory_unlock(%(key)s) AS unlocked;

-- name: existing_documents
SELECT id, metadata ? 'alfrd' AS imported FROM documents WHERE id = ANY(%(ids)s);

-- name: existing_duplicates
SELECT id FROM legacy_document_duplicates WHERE id = ANY(%(ids)s);

-- name: insert_document
INSERT INTO documents (id, sha256, original_name, source_path, tags, mime_type, size_bytes,
                       stored_path, status, title, extracted_text, extractor, search_config,
                       metadata, error, created_at, updated_at)
VALUES (%(id)s, %(sha256)s, %(original_name)s, %(source_path)s, %(tags)s, %(mime_type)s,
        %(size_bytes)s, %(stored_path)s, %(status)s, %(title)s, %(extracted_text)s,
        %(extractor)s, %(search_config)s::regconfig, %(metadata)s, %(error)s,
        coalesce(%(created_at)s, now()), coalesce(%(updated_at)s, %(created_at)s, now()))
ON CONFLICT DO NOTHING
RETURNING id;

-- name: conflicting_document
SELECT id, id = %(id)s AS same_id, metadata ? 'alfrd' AS imported
FROM documents
WHERE id = %(id)s OR sha256 = %(sha256)s
ORDER BY (id = %(id)s) DESC
LIMIT 1;

-- ALFRD's columns onto a document the daemon ingested itself under the same id (an ALFRD
-- folder dropped into the inbox before the import). ALFRD's text goes along only when it
-- differs from ours, so neither is lost.
-- name: merge_document
UPDATE documents
SET metadata = metadata || jsonb_build_object(
        'alfrd', CASE WHEN extracted_text IS NOT DISTINCT FROM %(extracted_text)s::text
                      THEN %(alfrd)s::jsonb
                      ELSE %(alfrd)s::jsonb
                           || jsonb_build_object('extracted_text', %(extracted_text)s::text)
                 END,
        'import', %(import)s::jsonb),
    tags = tags || ARRAY(SELECT t FROM unnest(%(tags)s::text[]) AS t WHERE t <> ALL (tags)),
    updated_at = now()
WHERE id = %(id)s AND NOT metadata ? 'alfrd'
RETURNING id;

-- name: insert_duplicate
INSERT INTO legacy_document_duplicates (id, document_id, original_name, source_path, tags,
                                        status, extracted_text, metadata, created_at,
                                        updated_at)
VALUES (%(id)s, %(document_id)s, %(original_name)s, %(source_path)s, %(tags)s, %(status)s,
        %(extracted_text)s, %(metadata)s, coalesce(%(created_at)s, now()),
        coalesce(%(updated_at)s, %(created_at)s, now()))
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: insert_arrival
INSERT INTO document_arrivals (document_id, claim_key, source_path, original_name, size_bytes,
                               instance, outcome, arrived_at)
VALUES (%(document_id)s, %(claim_key)s, %(source_path)s, %(original_name)s, %(size_bytes)s,
        %(instance)s, %(outcome)s, coalesce(%(arrived_at)s, now()))
ON CONFLICT (claim_key) DO NOTHING;

-- name: notify_document
SELECT pg_notify('alfrd_documents', %(document_id)s::text);

-- name: insert_reject
INSERT INTO legacy_rejects (source_table, source_id, source, reason, row_data)
VALUES (%(source_table)s, %(source_id)s, %(source)s, %(reason)s, %(row_data)s)
ON CONFLICT (source_table, source_id) DO NOTHING;

-- name: record_run
INSERT INTO legacy_import_runs (source, started_at, options, report)
VALUES (%(source)s, %(started_at)s, %(options)s, %(report)s);

-- Per-row digests the verification compares with the source's (legacy_map.text_digest).
-- name: verify_documents
SELECT id::text AS id,
       CASE WHEN t IS NULL THEN 'null' ELSE encode(sha256(convert_to(t, 'UTF8')), 'hex') END
           AS digest
FROM (SELECT id, CASE WHEN metadata -> 'alfrd' ? 'extracted_text'
                      THEN metadata -> 'alfrd' ->> 'extracted_text'
                      ELSE extracted_text END AS t
      FROM documents WHERE id = ANY(%(ids)s::uuid[])
      UNION ALL
      SELECT id, extracted_text FROM legacy_document_duplicates
      WHERE id = ANY(%(ids)s::uuid[])) AS s;

-- name: verify_rejects
SELECT count(*) AS n FROM legacy_rejects
WHERE source_table = %(table)s AND source_id = ANY(%(ids)s);

-- Every ALFRD document there is: ours, then the duplicates with their document's content.
-- name: export_documents
SELECT d.id, d.sha256, d.original_name, d.source_path, d.tags, d.mime_type, d.size_bytes,
       d.stored_path, d.status, d.title, d.extracted_text, d.extractor, d.metadata, d.error,
       d.created_at, d.updated_at, NULL::uuid AS duplicate_of
FROM documents d
UNION ALL
SELECT x.id, d.sha256, x.original_name, x.source_path, x.tags, d.mime_type, d.size_bytes,
       d.stored_path, x.status, NULL, x.extracted_text, NULL, x.metadata, NULL, x.created_at,
       x.updated_at, x.document_id
FROM legacy_document_duplicates x JOIN documents d ON d.id = x.document_id
ORDER BY created_at, id;

-- name: export_rejects
SELECT source_table, source_id, row_data FROM legacy_rejects ORDER BY source_table, source_id;

-- name: export_count_documents
SELECT (SELECT count(*) FROM documents) + (SELECT count(*) FROM legacy_document_duplicates)
       AS n;
