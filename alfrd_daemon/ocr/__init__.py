"""The OCR stage: documents waiting for OCR, taken from PostgreSQL by workers in this daemon
or on other hosts, read page by page in sandboxed extractor children."""
