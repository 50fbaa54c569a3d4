-- The core archive: one row per document, every sighting, and each daemon's heartbeat.

CREATE TABLE documents (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL only for failures whose content could not be read (a FIFO, an unreadable file).
    sha256          text UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    original_name   text NOT NULL,
    source_path     text NOT NULL,
    tags            text[] NOT NULL DEFAULT '{}',
    mime_type       text,
    size_bytes      bigint,
    stored_path     text,
    status          text NOT NULL
                    CHECK (status IN ('pending', 'extracted', 'processing', 'completed', 'failed')),
    title           text,
    extracted_text  text,
    extractor       text,
    search_config   regconfig NOT NULL DEFAULT 'english',
    -- Generated, so no writer can store a vector that disagrees with its text; the text is
    -- capped because a tsvector may not exceed 1 MB.
    search_vector   tsvector GENERATED ALWAYS AS (
                        setweight(to_tsvector(search_config,
                            coalesce(title, '') || ' ' || translate(original_name, '_-.', '   ')),
                            'A')
                        || setweight(to_tsvector(search_config,
                            left(coalesce(extracted_text, ''), 200000)), 'B')
                    ) STORED,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX documents_search_vector_idx ON documents USING gin (search_vector);
CREATE INDEX documents_tags_idx ON documents USING gin (tags);
CREATE INDEX documents_status_created_idx ON documents (status, created_at);
CREATE INDEX documents_created_idx ON documents (created_at DESC);

CREATE TABLE document_arrivals (
    id              bigserial PRIMARY KEY,
    document_id     uuid REFERENCES documents (id) ON DELETE CASCADE,
    -- Identifies one claimed file (device, inode, mtime, size, hash): a claim replayed after a
    -- crash between commit and cleanup finds its arrival already recorded.
    claim_key       text NOT NULL UNIQUE,
    source_path     text NOT NULL,
    original_name   text NOT NULL,
    size_bytes      bigint,
    instance        text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('ingested', 'duplicate', 'failed')),
    arrived_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX document_arrivals_document_idx ON document_arrivals (document_id);
CREATE INDEX document_arrivals_arrived_idx ON document_arrivals (arrived_at);

CREATE TABLE daemon_instances (
    instance        text PRIMARY KEY,
    hostname        text NOT NULL,
    pid             integer NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    stopped_at      timestamptz,
    state           jsonb NOT NULL DEFAULT '{}'::jsonb
);
