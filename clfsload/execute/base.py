"""What the driver asks of a pool of units: :class:`Pool`, met by the local pool and the Dask pool.

:class:`clfsload.execute.pool.UnitPool` runs units in processes of this node
(or inline); :class:`clfsload.execute.dask_driver.DaskUnitPool` runs them as
Dask tasks. The driver's drain loop is typed against this Protocol only.
"""

from concurrent.futures import Future
from typing import Protocol

from ..work.units import Outcome, Unit


class Pool(Protocol):
    """Runs units concurrently and hands back their outcomes as futures."""

    @property
    def capacity(self) -> int:
        """How many units to keep queued so none of its runners idles."""

    def submit(self, task: Unit) -> "Future[Outcome]":
        """Queue one unit."""

    def repeated(self, future: "Future[Outcome]") -> bool:
        """True if the unit of ``future`` may have run more than once (its runner was lost)."""

    def shutdown(self, cancel: bool = False) -> None:
        """Stop; with ``cancel`` drop the queued units."""


__all__ = ["Pool"]
