"""The driver of a load: the phase sequence (:mod:`.engine`), the state store and its one writer (:mod:`.state`),
sweep, relist, progress and the dry run.

Imports ``execute``, ``work`` and the layers below; never ``cli``.
"""
