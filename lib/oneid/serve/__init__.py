"""The data service: an online store loaded from the batch tables, and the look-up API.

``sync`` (Spark) copies a batch's answers into a :class:`~oneid.serve.store.ProfileStore`
(SQLite or Redis) as one new version; ``api`` (FastAPI, no Spark) answers from the serving
version. See ``docs/serving.md``.
"""
