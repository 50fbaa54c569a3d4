"""The date printed on a document: candidates found by patterns in its text and file name,
each parsed by dateparser under the configured order and languages. Pure: no I/O and no calendar
(the caller passes today)."""

from alfrd_daemon.dates.detect import (
    DateOptions,
    DateResult,
    DatesConfig,
    Found,
    date_document,
    find_dates,
)

__all__ = ["DateOptions", "DateResult", "DatesConfig", "Found", "date_document", "find_dates"]
