"""The store: every request recorded in SQLite (default) or PostgreSQL, through SQLAlchemy."""

from polyroute.store.db import Store
from polyroute.store.recorder import Recorder, RequestRecord

__all__ = ["Recorder", "RequestRecord", "Store"]
