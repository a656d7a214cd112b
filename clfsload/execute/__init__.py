"""Where units of work run: the local process pool (:mod:`.pool`), the Dask driver and the Dask worker side,
both meeting :class:`.base.Pool`.

Imports ``work`` and the layers below; never ``driver`` or ``cli``.
"""
