"""Reading a container back: open it from a target (:mod:`.readback`), compare it with a source tree (:mod:`.verify`),
restore a subtree (:mod:`.restore`).

Imports ``work.checksum_log``, ``targets``, ``clfs`` and ``errors``; never ``driver`` or ``cli``.
"""
