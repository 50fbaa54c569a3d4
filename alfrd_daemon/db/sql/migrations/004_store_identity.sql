-- Which store holds each row's file. Daemons on several hosts may share one database, each
-- with its own store; a store's id lives in its `.alfrd-store` file and is registered here by
-- every daemon that opens it (hostname and path are those of the latest one).

CREATE TABLE stores (
    id              uuid PRIMARY KEY,
    hostname        text NOT NULL,
    path            text NOT NULL,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_seen       timestamptz NOT NULL DEFAULT now()
);

-- NULL for rows written before stores had an identity: they belong to whichever store holds
-- their file (`alfrd check --repair` records it). Failed rows name the store of the state dir
-- whose failed/ folder holds their file.
ALTER TABLE documents ADD COLUMN store_id uuid REFERENCES stores (id);

-- `alfrd status` counts rows per store; the foreign key's checks need it too.
CREATE INDEX documents_store_idx ON documents (store_id);
