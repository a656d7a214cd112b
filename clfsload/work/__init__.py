"""The units of work (:mod:`.units`) and what loads one (:mod:`.transfer`'s UnitRunner), directories stored
(:mod:`.directories`), huge files in ranges, scan, ids, upload, pacing and content checksums.

Imports only ``targets``, ``clfs``, ``_native`` and the top-level ``errors``/``crashpoints``.
"""
