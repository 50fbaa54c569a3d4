-- What a document is, as a user asks for it ("the electricity bills of 2024", "everything
-- from the tax office"): its type, its correspondent and the date printed on it, as indexed
-- columns. Rules (issue 14) and the user (`alfrd set`, `alfrd tag`) fill them.
--
-- Manual edits win: `user_fields` names the fields a user set by hand (document_type,
-- correspondent, document_date, title, tags); an automatic run (rules, date detection, OCR)
-- never writes them. `rule_tags` are the tags rules added, so that a later rule run can take
-- back a tag whose rule no longer matches without touching folder or user tags;
-- `user_removed_tags` are tags the user took off, which no rule adds again.
--
-- `deleted_at`: the document is in the trash (row and stored file kept for trash.keep_days,
-- then removed by the prune job); every user-facing query leaves trashed rows out.

ALTER TABLE documents
    ADD COLUMN document_type     text,
    ADD COLUMN correspondent     text,
    ADD COLUMN document_date     date,
    ADD COLUMN user_fields       text[] NOT NULL DEFAULT '{}',
    ADD COLUMN rule_tags         text[] NOT NULL DEFAULT '{}',
    ADD COLUMN user_removed_tags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN deleted_at        timestamptz;

CREATE INDEX documents_document_date_idx ON documents (document_date);
CREATE INDEX documents_document_type_idx ON documents (lower(document_type));
CREATE INDEX documents_correspondent_idx ON documents (lower(correspondent));
CREATE INDEX documents_deleted_idx ON documents (deleted_at) WHERE deleted_at IS NOT NULL;
