"""Metadata tables and migrations (SQLAlchemy 2), content-addressed blobs (fsspec)."""
