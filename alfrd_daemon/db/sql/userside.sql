-- Named queries of the user's commands (`alfrd get/open/tag/set/delete/restore-deleted`) and
-- of the trash's purge in the prune job (the queries.sql format).

-- name: find_document
-- One document by id or id prefix, trashed ones included (the command decides); two rows
-- mean the prefix is ambiguous.
SELECT d.id, d.sha256, d.original_name, d.stored_path, d.status, d.size_bytes, d.metadata,
       d.deleted_at, d.store_id, s.hostname AS store_hostname, s.path AS store_path
FROM documents d
LEFT JOIN stores s ON s.id = d.store_id
WHERE d.id::text = %(id)s OR d.id::text LIKE %(prefix)s
ORDER BY d.id
LIMIT 2;

-- name: lock_document
-- The fields an edit reads and rewrites, locked until the edit commits: two users (or a
-- rule run) editing one document one after the other, never interleaved.
SELECT id, tags, rule_tags, user_removed_tags, user_fields, title, document_type,
       correspondent, document_date, deleted_at
FROM documents
WHERE id = %(id)s
FOR UPDATE;

-- name: update_tags
UPDATE documents
SET tags = %(tags)s, rule_tags = %(rule_tags)s, user_removed_tags = %(user_removed_tags)s,
    user_fields = %(user_fields)s, updated_at = now()
WHERE id = %(id)s
RETURNING id, tags, rule_tags, user_removed_tags, user_fields;

-- name: update_fields
UPDATE documents
SET title = %(title)s, document_type = %(document_type)s, correspondent = %(correspondent)s,
    document_date = %(document_date)s, user_fields = %(user_fields)s, updated_at = now()
WHERE id = %(id)s
RETURNING id, title, document_type, correspondent, document_date, user_fields;

-- name: trash_document
-- Already trashed: no row, and the command says so (the first deletion's time stays).
UPDATE documents SET deleted_at = now(), updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id, deleted_at;

-- name: restore_document
UPDATE documents SET deleted_at = NULL, updated_at = now()
WHERE id = %(id)s AND deleted_at IS NOT NULL
RETURNING id;

-- name: trash_expired_all
-- Trashed rows past keep_days, every store's (see jobs/trash.py). Locked, so a restore waits
-- and then finds the row gone, and skipped when locked, so a running edit is not waited on.
SELECT id, stored_path, store_id, metadata, deleted_at
FROM documents
WHERE deleted_at < %(cutoff)s
ORDER BY deleted_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: purge_documents
-- Arrivals and OCR jobs go with their row (ON DELETE CASCADE).
DELETE FROM documents
WHERE id = ANY(%(ids)s::uuid[]) AND deleted_at < %(cutoff)s
RETURNING id;

-- name: file_referenced
-- Whether any row still points at a store file (its own file, or a page of a document
-- folder): content may be shared by a folder page and a document of its own.
SELECT EXISTS (
    SELECT 1 FROM documents d
    WHERE d.stored_path = %(path)s
       OR d.metadata -> 'folder' -> 'pages'
          @> jsonb_build_array(jsonb_build_object('stored_path', %(path)s::text))
) AS referenced;
