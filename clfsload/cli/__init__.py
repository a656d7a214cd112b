"""The command line: argv parsed into :class:`~clfsload.settings.Settings` (:mod:`.main`), the reading commands
(:mod:`.commands`) and the end-of-run report (:mod:`.report`).

The top layer: it may import every layer below (``driver``, ``read``, ``work``, ``targets``, ...); nothing imports it
except the entry points (``CLFSLoad.py``, ``python -m clfsload``, the ``clfsload`` console script).
"""
