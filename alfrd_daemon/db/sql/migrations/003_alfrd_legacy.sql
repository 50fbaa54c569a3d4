-- ALFRD's DuckDB-era tables, kept queryable after `alfrd import-duckdb`.
--
-- Every ALFRD table except `documents` lands here with PostgreSQL types (uuid, jsonb,
-- timestamptz, numeric, date). ALFRD's documents themselves become rows of `documents`, their
-- ALFRD-only columns under metadata->'alfrd'. No table here has a foreign key to `documents`:
-- an ALFRD row may name a document that became a duplicate (legacy_document_duplicates) or was
-- rejected for a bad id, and the import must still keep it.
-- `extra` holds any column a different ALFRD version had that these tables do not, so nothing
-- read is ever dropped.

CREATE TABLE legacy_summaries (
    id                  uuid PRIMARY KEY,
    period_type         text,
    period_start        date,
    period_end          date,
    category            text,
    summary_text        text,
    summary_markdown    text,
    document_count      integer,
    total_amount        numeric,
    document_ids        jsonb,
    generated_at        timestamptz,
    updated_at          timestamptz,
    user_id             text,
    llm_model           text,
    extra               jsonb NOT NULL DEFAULT '{}'::jsonb,
    imported_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE legacy_processing_events (
    id                  uuid PRIMARY KEY,
    event_type          text,
    document_id         uuid,
    status              text,
    payload             jsonb,
    error_message       text,
    created_at          timestamptz,
    processed_at        timestamptz,
    user_id             text,
    extra               jsonb NOT NULL DEFAULT '{}'::jsonb,
    imported_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX legacy_processing_events_document_idx ON legacy_processing_events (document_id);

CREATE TABLE legacy_analytics (
    id                  uuid PRIMARY KEY,
    metric_name         text,
    category            text,
    period              date,
    value               numeric,
    metadata            jsonb,
    calculated_at       timestamptz,
    user_id             text,
    extra               jsonb NOT NULL DEFAULT '{}'::jsonb,
    imported_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE legacy_prompts (
    id                  uuid PRIMARY KEY,
    prompt_type         text,
    document_type       text,
    prompt_text         text,
    version             integer,
    performance_score   double precision,
    performance_metrics jsonb,
    created_at          timestamptz,
    updated_at          timestamptz,
    is_active           boolean,
    user_id             text,
    extra               jsonb NOT NULL DEFAULT '{}'::jsonb,
    imported_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE legacy_classification_suggestions (
    id                  uuid PRIMARY KEY,
    suggested_type      text,
    document_id         uuid,
    confidence          double precision,
    reasoning           text,
    approved            boolean,
    reviewed_at         timestamptz,
    created_at          timestamptz,
    user_id             text,
    extra               jsonb NOT NULL DEFAULT '{}'::jsonb,
    imported_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX legacy_classification_suggestions_document_idx
    ON legacy_classification_suggestions (document_id);

-- type_name was unique in ALFRD; not here, so a second ALFRD database with its own id for the
-- same type is kept rather than dropped.
CREATE TABLE legacy_document_types (
    id                  uuid PRIMARY KEY,
    type_name           text,
    description         text,
    is_active           boolean,
    usage_count         integer,
    created_at          timestamptz,
    user_id             text,
    extra               jsonb NOT NULL DEFAULT '{}'::jsonb,
    imported_at         timestamptz NOT NULL DEFAULT now()
);

-- ALFRD document rows that did not become a `documents` row of their own because their
-- content (sha256) is already a document: they are kept whole here and recorded as a
-- 'duplicate' arrival of that document, as the daemon does for a file dropped twice.
CREATE TABLE legacy_document_duplicates (
    id                  uuid PRIMARY KEY,
    document_id         uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    original_name       text NOT NULL,
    source_path         text NOT NULL,
    tags                text[] NOT NULL DEFAULT '{}',
    status              text NOT NULL,
    extracted_text      text,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    imported_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX legacy_document_duplicates_document_idx ON legacy_document_duplicates (document_id);

-- Rows that could not be imported (an id that is not a UUID): reported, never given an
-- invented id, and kept verbatim so a user can repair and re-import them.
CREATE TABLE legacy_rejects (
    source_table        text NOT NULL,
    source_id           text NOT NULL,
    source              text NOT NULL,
    reason              text NOT NULL,
    row_data            jsonb NOT NULL,
    rejected_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_table, source_id)
);

-- One row per finished `alfrd import-duckdb` run, with its report.
CREATE TABLE legacy_import_runs (
    id                  bigserial PRIMARY KEY,
    source              text NOT NULL,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz NOT NULL DEFAULT now(),
    options             jsonb NOT NULL,
    report              jsonb NOT NULL
);
