"""The units of work and what loads one: the worker (:mod:`.transfer`), huge files in ranges, scan, ids, upload,
pacing and content checksums.

Imports only ``targets``, ``clfs``, ``_native`` and the top-level ``errors``/``crashpoints``.
"""
