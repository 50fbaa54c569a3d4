-- Named queries of rule runs (the queries.sql format): after OCR, and `alfrd rules apply`.
-- Every run reads and writes a document under its row lock, so a user's edit (which takes
-- the same lock) is never overwritten by a run that read the row before it.

-- fragment: rule_columns
d.id, d.extracted_text, d.original_name, d.source_path, d.tags, d.rule_tags, d.user_fields,
d.user_removed_tags, d.document_type, d.correspondent, d.title, d.document_date, d.created_at,
d.metadata

-- name: rules_lock_one
SELECT {rule_columns}
FROM documents d
WHERE d.id = %(id)s AND d.deleted_at IS NULL AND d.status <> 'failed'
FOR UPDATE;

-- name: rules_next_ids
-- One batch of `rules apply`, in id order (keyset: resumable from the last id done).
SELECT d.id
FROM documents d
WHERE d.id > %(after)s::uuid AND d.deleted_at IS NULL AND d.status <> 'failed'
  AND (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s::timestamptz)
ORDER BY d.id
LIMIT %(limit)s;

-- name: rules_count
SELECT count(*) AS n
FROM documents d
WHERE d.id > %(after)s::uuid AND d.deleted_at IS NULL AND d.status <> 'failed'
  AND (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s::timestamptz);

-- name: rules_read_ids
-- A batch read without locks: only rows the rules would change are then locked and read
-- again (rules_lock_ids), so a run over an archive that is already right writes nothing.
SELECT {rule_columns}
FROM documents d
WHERE d.id = ANY(%(ids)s::uuid[]) AND d.deleted_at IS NULL AND d.status <> 'failed'
ORDER BY d.id;

-- name: rules_lock_ids
-- Waits for rows another transaction holds (an OCR completion, a user's edit: short), so no
-- document of the batch is skipped; locks in id order, as every batch does, so two runs
-- cannot deadlock.
SELECT {rule_columns}
FROM documents d
WHERE d.id = ANY(%(ids)s::uuid[]) AND d.deleted_at IS NULL AND d.status <> 'failed'
ORDER BY d.id
FOR UPDATE;

-- name: rules_update
UPDATE documents
SET tags = %(tags)s, rule_tags = %(rule_tags)s, document_type = %(document_type)s,
    correspondent = %(correspondent)s, title = %(title)s,
    metadata = metadata || %(patch)s::jsonb, updated_at = now()
WHERE id = %(id)s;

-- name: rules_find_ids
SELECT d.id
FROM documents d
WHERE (d.id::text = %(id)s OR d.id::text LIKE %(prefix)s) AND d.deleted_at IS NULL
ORDER BY d.id
LIMIT 2;

-- name: rules_read_one
SELECT {rule_columns}
FROM documents d
WHERE d.id = %(id)s;
