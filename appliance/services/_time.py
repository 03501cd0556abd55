"""Time helpers the services share: stored times are UTC, and SQLite hands them back naive."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    """Now, UTC, whole seconds (what certificates and CRLs can express)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def aware(value: dt.datetime) -> dt.datetime:
    """A stored time as aware UTC (naive from SQLite, aware from PostgreSQL)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
