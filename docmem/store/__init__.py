"""Archival storage: one interface (``base.ArchivalStore``), two Qdrant backends.

``edge`` runs the Qdrant engine in-process (the default); ``server`` talks to a Qdrant
server or cluster through qdrant-client. Both store the same points: a sparse BM25 vector
(always), an optional dense vector, and the chunk as payload. ``corpus`` ties a store to
its manifest and embedder.
"""
