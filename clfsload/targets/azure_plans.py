"""The logic of the Azure targets, written once for the blocking and the asyncio one.

Each operation is a *plan*: a generator that yields one :class:`Call` per
request it needs (a page of a listing, a get, a put, a delete, the
conditional probe put, creating the container) and receives each answer,
or has each failure thrown in at the point of the request. It does no I/O.
A target runs a plan with :class:`PlanRunner`: it carries each call out
through its own transport (the blocking SDK client; the aio client or the
bare-HTTP data path) under its retry layer, one retried request per call.

So what the two targets must agree on lives here only: which permissions
:func:`check_access` probes and how (without leaving anything in the
container), what a listing leaves out and when it ends (:class:`Listing`),
when a 404 on delete counts as deleted. A target keeps the transport: one
method per call kind, named ``_<kind>`` (``_list``, ``_get``, ...), taking
the call's ``args``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Awaitable, Callable, Generator, Iterator, List, Optional, Tuple, TypeVar, Union

from ..errors import BlobNotFoundError, ClfsLoadError, TransientError
from .azure_common import AzureTargetCore, probe_name
from .base import RESERVED_PREFIX, Payload, check_blob_name

__all__ = [
    "PAGE_SIZE", "EMPTY_PAGE", "Call", "Plan", "PlanRunner", "Listing",
    "check_access", "create_container", "is_empty", "put", "get", "delete",
]

T = TypeVar("T")

#: names per page of ``list_names``/``list_sizes``; each page is retried alone
PAGE_SIZE = 5000
#: names per page of ``is_empty``: its first page usually settles it
EMPTY_PAGE = 16

# The call kinds: the transport method of a target is "_" + kind.
LIST, LIST_SIZES, GET, PUT, DELETE, PROBE_PUT, CREATE = (
    "list", "list_sizes", "get", "put", "delete", "probe_put", "create")


class Call:
    """One request a plan asks for: its kind and arguments, and the operation and blob its errors name.

    ``attempts`` counts how often the retry layer tried it (:meth:`invoke`).
    """

    __slots__ = ("kind", "args", "op", "name", "attempts")

    def __init__(self, kind: str, args: Tuple[Any, ...], op: str, name: Optional[str] = None) -> None:
        self.kind = kind
        self.args = args
        self.op = op
        self.name = name
        self.attempts = 0

    def invoke(self, transport: Callable[..., T]) -> T:
        """One attempt: ``transport(*args)`` (for the asyncio target, the awaitable it returns)."""
        self.attempts += 1
        return transport(*self.args)

    def __repr__(self) -> str:
        return "Call(%s %s)" % (self.kind, self.name or "")


#: a plan: yields calls, is sent their answers, returns the operation's result
Plan = Generator[Call, Any, T]


class PlanRunner:
    """Steps a plan: :meth:`next_call` gives the next request, after :meth:`answer` or :meth:`fail` on the last.

    The target's loop is ``while (call := runner.next_call()) is not None``,
    answering each call or failing it with the exception it raised; the
    plan's return value is then :attr:`result`. An exception the plan does
    not handle comes out of :meth:`next_call`.
    """

    def __init__(self, plan: Plan[Any]) -> None:
        self._plan = plan
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self.result: Any = None

    def next_call(self) -> Optional[Call]:
        """The next request of the plan, or None when it has finished (its value in :attr:`result`)."""
        error, self._error = self._error, None
        try:
            return self._plan.throw(error) if error is not None else self._plan.send(self._value)
        except StopIteration as stop:
            self.result = stop.value
            return None

    def answer(self, value: Any) -> None:
        """The last call succeeded with *value*."""
        self._value = value

    def fail(self, error: BaseException) -> None:
        """The last call failed with *error* (after its retries): it is raised in the plan."""
        self._error = error


class Listing:
    """A listing page by page, from the continuation token of each page; ``.clfsload-`` names left out.

    ``sized``: the pages hold ``(name, size)`` pairs (List Blobs gives each
    Content-Length) instead of names.
    """

    def __init__(self, prefix: str, page_size: int = PAGE_SIZE, sized: bool = False) -> None:
        self.prefix = prefix
        self.page_size = page_size
        self.sized = sized
        self._token: Optional[str] = None
        #: True once a page came without a continuation token
        self.done = False

    def next_call(self) -> Call:
        """The call for the next page."""
        return Call(LIST_SIZES if self.sized else LIST, (self.prefix, self._token, self.page_size), "list")

    def take(self, page: Tuple[List[Any], Optional[str]]) -> List[Any]:
        """The items of a page (``(items, continuation token)``) a caller may see."""
        items, self._token = page
        self.done = not self._token
        return [item for item in items if not (item[0] if self.sized else item).startswith(RESERVED_PREFIX)]


def check_access(core: AzureTargetCore, read: bool, write: bool, delete: bool, list_: bool) -> Plan[None]:
    """Probe each permission asked for, without leaving anything in the container.

    A failure that stays transient through its retries becomes terminal:
    the target cannot be used.
    """
    ops = core.wanted_ops(read, write, delete, list_)
    core.mapper.sas_precheck(ops)
    probe = probe_name()
    try:
        for op in ops:
            if op == "list":
                yield Call(LIST, ("", None, 1), "list")
            elif op == "get":
                yield from _expect_missing(Call(GET, (probe,), "get"))
            elif op == "delete":
                yield from _expect_missing(Call(DELETE, (probe,), "delete"))
            else:
                yield from _probe_write(probe, delete)
    except TransientError as exc:
        raise core.unreachable(exc) from None


def _expect_missing(call: Call) -> Plan[None]:
    """Make *call* on a blob that does not exist: a 404 is the answer that proves the permission."""
    try:
        yield call
    except BlobNotFoundError:
        return


def _probe_write(probe: str, can_delete: bool) -> Plan[None]:
    """Prove the write permission.

    With delete allowed: create the probe blob, overwrite it (only 'w'
    allows that; 'c' creates but cannot replace) and delete it. Without: a
    conditional Put Blob that cannot succeed (If-Match on a made-up ETag),
    which proves 'c' or 'w' but cannot tell them apart; the ``probe_put``
    transport answers True if a server wrote it anyway.
    """
    if can_delete:
        yield Call(PUT, (probe, b""), "put")
        try:
            yield Call(PUT, (probe, b""), "put")
        finally:
            with contextlib.suppress(ClfsLoadError):
                yield from _expect_missing(Call(DELETE, (probe,), "delete"))
        return
    if (yield Call(PROBE_PUT, (probe,), "put")):  # a server that ignored If-Match wrote it: remove it
        with contextlib.suppress(ClfsLoadError):
            yield from _expect_missing(Call(DELETE, (probe,), "delete"))


def create_container() -> Plan[None]:
    """Create the container; the ``create`` transport takes "it exists already" as success."""
    yield Call(CREATE, (), "create")


def is_empty() -> Plan[bool]:
    """True if the container holds no blob (the targets' own ``.clfsload-`` names aside)."""
    listing = Listing("", EMPTY_PAGE)
    while not listing.done:
        if listing.take((yield listing.next_call())):
            return False
    return True


def put(core: AzureTargetCore, name: str, payload: Union[bytes, Payload]) -> Plan[None]:
    """One Put Blob that creates or replaces *name*; counted once it succeeded."""
    check_blob_name(name)
    yield Call(PUT, (name, payload), "put", name)
    core.stats.count_put(len(payload))


def get(name: str) -> Plan[bytes]:
    """The whole content of *name*."""
    check_blob_name(name)
    return (yield Call(GET, (name,), "get", name))


def delete(name: str, missing_ok: bool) -> Plan[None]:
    """Delete *name*. A 404 after a retried attempt counts as deleted (the first one may have landed)."""
    check_blob_name(name)
    call = Call(DELETE, (name,), "delete", name)
    try:
        yield call
    except BlobNotFoundError:
        if not (missing_ok or call.attempts > 1):
            raise


def run_blocking(plan: Plan[T], step: Callable[[Call], Any]) -> T:
    """Run *plan* with the blocking *step* (one retried request per call)."""
    runner = PlanRunner(plan)
    while (call := runner.next_call()) is not None:
        try:
            runner.answer(step(call))
        except BaseException as exc:  # noqa: BLE001 - raised in the plan, which re-raises what it does not handle
            runner.fail(exc)
    return runner.result


async def run_async(plan: Plan[T], step: Callable[[Call], Awaitable[Any]]) -> T:
    """Run *plan* with the asyncio *step*; see :func:`run_blocking`."""
    runner = PlanRunner(plan)
    while (call := runner.next_call()) is not None:
        try:
            runner.answer(await step(call))
        except BaseException as exc:  # noqa: BLE001 - see run_blocking
            runner.fail(exc)
    return runner.result


def listing_pages(listing: Listing, step: Callable[[Call], Any]) -> Iterator[Any]:
    """The visible items of *listing*, fetched page by page with the blocking *step*."""
    while not listing.done:
        yield from listing.take(step(listing.next_call()))
