"""The driver of a load: the phase sequence (:mod:`.engine`), the state store and its one writer (:mod:`.state`),
opening a run (:mod:`.opening`), recording units' outcomes (:mod:`.recording`), split directories and huge files
(:mod:`.assembly`), FINALIZE (:mod:`.finalize`), the result (:mod:`.result`), sweep, relist, progress and the dry run.

Imports ``execute``, ``work`` and the layers below; never ``cli``.
"""
