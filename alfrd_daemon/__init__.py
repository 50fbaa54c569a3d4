"""alfrd-daemon: turn an inbox folder into a searchable PostgreSQL document archive."""

__version__ = "0.1.0"
