"""Hooks: the user's commands run after a document is committed and after its OCR, from a
durable queue in PostgreSQL, outside the ingest workers."""
