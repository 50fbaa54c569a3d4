-- Named queries of `alfrd check` (the queries.sql format).

-- name: check_references
-- Every file a row points at: its stored_path, and each page of an ALFRD document folder,
-- with the store that holds it (NULL: recorded before stores had an identity).
SELECT d.id, d.status, d.stored_path AS path, d.store_id
FROM documents d
WHERE d.stored_path IS NOT NULL
UNION ALL
SELECT d.id, d.status, p.page ->> 'stored_path', d.store_id
FROM documents d
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(d.metadata -> 'folder' -> 'pages') = 'array'
         THEN d.metadata -> 'folder' -> 'pages' ELSE '[]'::jsonb END) AS p(page)
WHERE p.page ->> 'stored_path' IS NOT NULL
  AND p.page ->> 'stored_path' IS DISTINCT FROM d.stored_path;

-- name: check_is_referenced
SELECT EXISTS (
    SELECT 1 FROM documents d
    WHERE d.stored_path = %(path)s
       OR d.metadata -> 'folder' -> 'pages'
          @> jsonb_build_array(jsonb_build_object('stored_path', %(path)s::text))
) AS referenced;

-- name: check_rows_without_file
-- Only this store's rows (and those no store was recorded for): other hosts check their own.
SELECT id, status, stored_path, error FROM documents WHERE stored_path IS NULL
  AND status <> 'failed'
  AND (store_id IS NULL OR store_id = %(store_id)s::uuid);

-- name: check_rows_of_other_stores
SELECT d.store_id, s.hostname, s.path, count(*) AS n
FROM documents d
JOIN stores s ON s.id = d.store_id
WHERE d.store_id IS DISTINCT FROM %(store_id)s::uuid
GROUP BY d.store_id, s.hostname, s.path
ORDER BY n DESC, d.store_id;

-- name: check_count_other_stores
SELECT count(*) AS n FROM stores WHERE id IS DISTINCT FROM %(store_id)s::uuid;

-- name: check_record_store
-- A row from before stores had an identity whose file this store holds becomes this store's.
UPDATE documents SET store_id = %(store_id)s
WHERE id = ANY(%(ids)s::uuid[]) AND store_id IS NULL;

-- name: check_note_missing
-- Keeps the status; adds the note to `error` once.
UPDATE documents
SET error = CASE WHEN error IS NULL OR error = '' THEN %(note)s
                 ELSE error || '; ' || %(note)s END,
    updated_at = now()
WHERE id = %(id)s AND (error IS NULL OR position(%(note)s IN error) = 0);
