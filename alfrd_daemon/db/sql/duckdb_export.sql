-- `alfrd export-duckdb`: ALFRD's DuckDB-era schema (so the old ALFRD can read the file back),
-- plus our own columns on documents, each prefixed pg_. DuckDB named parameters ($name); each
-- insert takes one list per column and unnests them side by side, one statement per batch
-- (row-by-row executemany is two hundred times slower in DuckDB).
-- No foreign keys: DuckDB refuses updates of a referenced row, which ALFRD's status updates
-- would then hit.

-- name: schema
CREATE TABLE documents (
    id VARCHAR PRIMARY KEY,
    filename VARCHAR NOT NULL,
    original_path VARCHAR NOT NULL,
    file_type VARCHAR NOT NULL,
    file_size BIGINT,
    mime_type VARCHAR,
    status VARCHAR NOT NULL,
    processed_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    error_message VARCHAR,
    document_type VARCHAR,
    suggested_type VARCHAR,
    secondary_tags JSON,
    tags JSON,
    classification_confidence FLOAT,
    confidence FLOAT,
    classification_reasoning TEXT,
    category VARCHAR,
    subcategory VARCHAR,
    vendor VARCHAR,
    amount DECIMAL(10, 2),
    currency VARCHAR DEFAULT 'USD',
    due_date DATE,
    issue_date DATE,
    raw_document_path VARCHAR,
    extracted_text_path VARCHAR,
    metadata_path VARCHAR,
    folder_path VARCHAR,
    user_id VARCHAR,
    extracted_text TEXT,
    summary TEXT,
    structured_data JSON,
    folder_metadata JSON,
    pg_sha256 VARCHAR,
    pg_stored_path VARCHAR,
    pg_source_path VARCHAR,
    pg_tags VARCHAR[],
    pg_status VARCHAR,
    pg_title VARCHAR,
    pg_extractor VARCHAR,
    pg_size_bytes BIGINT,
    pg_error VARCHAR,
    pg_metadata JSON,
    pg_created_at TIMESTAMP,  -- UTC
    pg_updated_at TIMESTAMP,  -- UTC
    pg_duplicate_of VARCHAR
);
CREATE TABLE summaries (
    id VARCHAR PRIMARY KEY,
    period_type VARCHAR NOT NULL,
    period_start DATE NOT NULL,
    period_end DATE NOT NULL,
    category VARCHAR,
    summary_text TEXT NOT NULL,
    summary_markdown TEXT,
    document_count INTEGER,
    total_amount DECIMAL(12, 2),
    document_ids JSON,
    generated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    user_id VARCHAR,
    llm_model VARCHAR
);
CREATE TABLE processing_events (
    id VARCHAR PRIMARY KEY,
    event_type VARCHAR NOT NULL,
    document_id VARCHAR,
    status VARCHAR NOT NULL,
    payload JSON,
    error_message TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    processed_at TIMESTAMP,
    user_id VARCHAR
);
CREATE TABLE analytics (
    id VARCHAR PRIMARY KEY,
    metric_name VARCHAR NOT NULL,
    category VARCHAR,
    period DATE NOT NULL,
    value DECIMAL(12, 2),
    metadata JSON,
    calculated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    user_id VARCHAR
);
CREATE TABLE prompts (
    id VARCHAR PRIMARY KEY,
    prompt_type VARCHAR NOT NULL,
    document_type VARCHAR,
    prompt_text TEXT NOT NULL,
    version INTEGER DEFAULT 1,
    performance_score FLOAT,
    performance_metrics JSON,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    is_active BOOLEAN DEFAULT true,
    user_id VARCHAR
);
CREATE TABLE classification_suggestions (
    id VARCHAR PRIMARY KEY,
    suggested_type VARCHAR NOT NULL,
    document_id VARCHAR,
    confidence FLOAT,
    reasoning TEXT,
    approved BOOLEAN DEFAULT false,
    reviewed_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    user_id VARCHAR
);
CREATE TABLE document_types (
    id VARCHAR PRIMARY KEY,
    type_name VARCHAR NOT NULL UNIQUE,
    description TEXT,
    is_active BOOLEAN DEFAULT true,
    usage_count INTEGER DEFAULT 0,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    user_id VARCHAR
);

-- name: insert_documents
INSERT INTO documents BY NAME
SELECT unnest($id) AS id, unnest($filename) AS filename,
       unnest($original_path) AS original_path, unnest($file_type) AS file_type,
       unnest($file_size) AS file_size, unnest($mime_type) AS mime_type,
       unnest($status) AS status, unnest($processed_at) AS processed_at,
       unnest($created_at) AS created_at, unnest($updated_at) AS updated_at,
       unnest($error_message) AS error_message, unnest($document_type) AS document_type,
       unnest($suggested_type) AS suggested_type, unnest($secondary_tags) AS secondary_tags,
       unnest($tags) AS tags, unnest($classification_confidence) AS classification_confidence,
       unnest($confidence) AS confidence,
       unnest($classification_reasoning) AS classification_reasoning,
       unnest($category) AS category, unnest($subcategory) AS subcategory,
       unnest($vendor) AS vendor, unnest($amount) AS amount, unnest($currency) AS currency,
       unnest($due_date) AS due_date, unnest($issue_date) AS issue_date,
       unnest($raw_document_path) AS raw_document_path,
       unnest($extracted_text_path) AS extracted_text_path,
       unnest($metadata_path) AS metadata_path, unnest($folder_path) AS folder_path,
       unnest($user_id) AS user_id, unnest($extracted_text) AS extracted_text,
       unnest($summary) AS summary, unnest($structured_data) AS structured_data,
       unnest($folder_metadata) AS folder_metadata, unnest($pg_sha256) AS pg_sha256,
       unnest($pg_stored_path) AS pg_stored_path, unnest($pg_source_path) AS pg_source_path,
       unnest($pg_tags) AS pg_tags, unnest($pg_status) AS pg_status,
       unnest($pg_title) AS pg_title, unnest($pg_extractor) AS pg_extractor,
       unnest($pg_size_bytes) AS pg_size_bytes, unnest($pg_error) AS pg_error,
       unnest($pg_metadata) AS pg_metadata, unnest($pg_created_at) AS pg_created_at,
       unnest($pg_updated_at) AS pg_updated_at, unnest($pg_duplicate_of) AS pg_duplicate_of;

-- name: insert_summaries
INSERT INTO summaries BY NAME
SELECT unnest($id) AS id, unnest($period_type) AS period_type,
       unnest($period_start) AS period_start, unnest($period_end) AS period_end,
       unnest($category) AS category, unnest($summary_text) AS summary_text,
       unnest($summary_markdown) AS summary_markdown,
       unnest($document_count) AS document_count, unnest($total_amount) AS total_amount,
       unnest($document_ids) AS document_ids, unnest($generated_at) AS generated_at,
       unnest($updated_at) AS updated_at, unnest($user_id) AS user_id,
       unnest($llm_model) AS llm_model;

-- name: insert_processing_events
INSERT INTO processing_events BY NAME
SELECT unnest($id) AS id, unnest($event_type) AS event_type,
       unnest($document_id) AS document_id, unnest($status) AS status,
       unnest($payload) AS payload, unnest($error_message) AS error_message,
       unnest($created_at) AS created_at, unnest($processed_at) AS processed_at,
       unnest($user_id) AS user_id;

-- name: insert_analytics
INSERT INTO analytics BY NAME
SELECT unnest($id) AS id, unnest($metric_name) AS metric_name,
       unnest($category) AS category, unnest($period) AS period, unnest($value) AS value,
       unnest($metadata) AS metadata, unnest($calculated_at) AS calculated_at,
       unnest($user_id) AS user_id;

-- name: insert_prompts
INSERT INTO prompts BY NAME
SELECT unnest($id) AS id, unnest($prompt_type) AS prompt_type,
       unnest($document_type) AS document_type, unnest($prompt_text) AS prompt_text,
       unnest($version) AS version, unnest($performance_score) AS performance_score,
       unnest($performance_metrics) AS performance_metrics,
       unnest($created_at) AS created_at, unnest($updated_at) AS updated_at,
       unnest($is_active) AS is_active, unnest($user_id) AS user_id;

-- name: insert_classification_suggestions
INSERT INTO classification_suggestions BY NAME
SELECT unnest($id) AS id, unnest($suggested_type) AS suggested_type,
       unnest($document_id) AS document_id, unnest($confidence) AS confidence,
       unnest($reasoning) AS reasoning, unnest($approved) AS approved,
       unnest($reviewed_at) AS reviewed_at, unnest($created_at) AS created_at,
       unnest($user_id) AS user_id;

-- name: insert_document_types
INSERT INTO document_types BY NAME
SELECT unnest($id) AS id, unnest($type_name) AS type_name,
       unnest($description) AS description, unnest($is_active) AS is_active,
       unnest($usage_count) AS usage_count, unnest($created_at) AS created_at,
       unnest($user_id) AS user_id;

-- name: digests_documents
SELECT id, extracted_text AS text FROM documents;

-- name: digests_summaries
SELECT id, summary_text AS text FROM summaries;

-- name: digests_processing_events
SELECT id, event_type AS text FROM processing_events;

-- name: digests_analytics
SELECT id, metric_name AS text FROM analytics;

-- name: digests_prompts
SELECT id, prompt_text AS text FROM prompts;

-- name: digests_classification_suggestions
SELECT id, reasoning AS text FROM classification_suggestions;

-- name: digests_document_types
SELECT id, type_name AS text FROM document_types;
