"""Ingest: every declared source into ``bronze.<source>``; bad rows into ``quarantine.<source>``."""
