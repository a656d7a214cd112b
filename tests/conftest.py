"""Shared test setup: the two twins of each hot path, as a facade (after multidict and propcache).

* ``impl`` is parametrised over ``"py"`` and ``"c"``; ``impl("records")`` is
  that twin of the topic, so one test body checks both.
* ``twins("records")`` returns ``(records_py, records_c)`` for differential
  tests.

The compiled twin of a topic is skipped, with the reason, when it is not
built, when ``CLFSLOAD_NO_EXTENSIONS`` is set or when ``--no-c-extensions``
is given; with ``CLFSLOAD_REQUIRE_EXTENSIONS=1`` a missing twin fails instead.
"""

import dataclasses
import importlib
import os
from types import ModuleType
from typing import Callable, Optional, Tuple

import pytest

from clfsload._native import _compat

_CONFIG: Optional[pytest.Config] = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=False,
        help="test only the pure-Python twins (as CLFSLOAD_NO_EXTENSIONS=1 does)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Loads record their speed for later dry-run estimates: keep the tests' runs
    # out of the user's history (every loader the tests start inherits this).
    if "CLFSLOAD_HISTORY" not in os.environ:
        import tempfile

        os.environ["CLFSLOAD_HISTORY"] = os.path.join(tempfile.mkdtemp(prefix="clfsload-test-history-"), "history.json")
    global _CONFIG
    _CONFIG = config
    config.addinivalue_line("markers", "c_extension: exercises a compiled (Cython) twin")
    config.addinivalue_line("markers", "slow: a long end-to-end run (the kill campaign), done once per CI run (compiled pass)")
    config.addinivalue_line("markers", "alters_containers: changes a loaded container on purpose (no handle-rule check after it)")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    # differential tests need the compiled twins: mark them like the "c" params
    for item in items:
        if "twins" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.c_extension)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    # Containers a test made in Azurite go when it ends (those of module
    # fixtures, made during set-up, stay): every blob left in the emulator's
    # account slows each later Put Blob (it scans them all).
    az = getattr(item, "funcargs", {}).get("azurite")
    mark = len(az._made) if az is not None else 0
    yield
    if az is not None:
        item._handle_violations = _azurite_handle_violations(az, az._made[mark:])  # checked at teardown
        az.delete_made_since(mark)


#: containers up to this many blobs are checked after each test (the golden ones,
#: bigdir too, are checked by the tests themselves: each blob is one GET here)
HANDLE_CHECK_MAX_BLOBS = 1000


def _azurite_handle_violations(az, containers) -> list:
    """FMT §2.2 handle-rule violations of the finished containers a test made in Azurite."""
    from clfsload.clfs.container import Container
    from clfsload.clfs.fh_rules import handle_rule_violations
    from clfsload.errors import ClfsLoadError
    from clfsload.targets import open_target

    from _load import TargetSource

    found = []
    for name in containers:
        try:
            target = open_target(az.endpoint, name, az.connection_string)
            try:
                source = TargetSource(target)
                if len(source.names()) > HANDLE_CHECK_MAX_BLOBS:
                    continue
                container = Container(source)
                if container.finished:
                    found.extend("%s: %s" % (name, v) for v in handle_rule_violations(container, spread_tolerance=0.05))
            finally:
                target.close()
        except (ClfsLoadError, OSError, ValueError):
            continue  # gone, refused or damaged on purpose: the test's own assertions cover it
    return found


def pytest_runtest_setup(item: pytest.Item) -> None:
    # skip (or, when they are required, fail) before Hypothesis starts generating
    if item.get_closest_marker("c_extension") is not None:
        reason = c_unavailable(item.config)
        if reason:
            pytest.skip(reason)


@dataclasses.dataclass(frozen=True)
class NativeImplementation:
    """One side of the twin pair: ``impl("records")`` imports that side's module."""

    is_pure_python: bool

    @property
    def tag(self) -> str:
        return "py" if self.is_pure_python else "c"

    def imported_module(self, topic: str) -> ModuleType:
        return importlib.import_module("clfsload._native.%s_%s" % (topic, self.tag))

    def __call__(self, topic: str) -> ModuleType:
        """The module, or a skip (a failure under CLFSLOAD_REQUIRE_EXTENSIONS) if it cannot be tested."""
        if not self.is_pure_python:
            reason = c_unavailable(_CONFIG, topic)
            if reason:
                pytest.skip(reason)
        return self.imported_module(topic)


PY = NativeImplementation(is_pure_python=True)
C = NativeImplementation(is_pure_python=False)


def c_unavailable(config: Optional[pytest.Config], topic: Optional[str] = None) -> Optional[str]:
    """Why the compiled twins (or ``topic``'s) cannot be tested here, or None.

    A twin that is required (CLFSLOAD_REQUIRE_EXTENSIONS=1) but missing fails
    the test instead of skipping it.
    """
    if config is not None and config.getoption("--no-c-extensions"):
        return "--no-c-extensions: pure-Python twins only"
    if _compat.NO_EXTENSIONS:
        return "CLFSLOAD_NO_EXTENSIONS is set (or not CPython): pure-Python twins only"
    for name in (topic,) if topic else _compat_topics():
        try:
            C.imported_module(name)
        except ImportError as exc:
            if _compat.REQUIRE_EXTENSIONS:
                pytest.fail("CLFSLOAD_REQUIRE_EXTENSIONS=1 but clfsload._native.%s_c cannot be imported: %s" % (name, exc))
            return "compiled twin clfsload._native.%s_c is not built (%s); build with setup.py build_ext --inplace" % (
                name,
                exc,
            )
    return None


def _compat_topics() -> Tuple[str, ...]:
    from clfsload._native import TOPICS

    return TOPICS


@pytest.fixture(
    scope="session",
    params=[PY, pytest.param(C, marks=pytest.mark.c_extension)],
    ids=["py", "c"],
)
def impl(request: pytest.FixtureRequest) -> NativeImplementation:
    """Each twin in turn; call it with a topic: ``impl("records").encode_vattr(...)``."""
    return request.param


@pytest.fixture(scope="session")
def c_skip_reason(request: pytest.FixtureRequest) -> Optional[str]:
    """Why the compiled twins cannot be tested in this session, or None when they can."""
    return c_unavailable(request.config)


@pytest.fixture(scope="session")
def twins() -> Callable[[str], Tuple[ModuleType, ModuleType]]:
    """``twins(topic)`` -> ``(pure module, compiled module)``; skips when the compiled one is unavailable."""

    def pair(topic: str) -> Tuple[ModuleType, ModuleType]:
        return PY(topic), C(topic)

    return pair


def _loaded_folders(root: str):
    """The ``file:`` container folders of the finished loads whose state dirs lie under ``root``."""
    import sqlite3

    for parent, dirs, files in os.walk(root):
        if "state.db" not in files:
            continue
        dirs[:] = []  # a state dir holds no other
        try:
            db = sqlite3.connect("file:%s?mode=ro" % os.path.join(parent, "state.db"), uri=True)
            try:
                meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('phase', 'target')").fetchall())
            finally:
                db.close()
        except sqlite3.Error:
            continue
        target = meta.get("target", "")
        if meta.get("phase") == "DONE" and target.startswith("file:") and os.path.isdir(target[len("file:"):]):
            yield target[len("file:"):]


@pytest.fixture(autouse=True)
def _handle_rules_of_every_loaded_folder(request):
    """After each test, every ``file:`` container a load finished under its ``tmp_path``, and every
    finished container it made in Azurite, keeps the filehandle rules of FMT §2.2
    (``clfsload.clfs.fh_rules``), which no canonical comparison sees.

    The spread of the directories over the 48 dmids may be one off per id (a
    source changed between a run and its resume leaves counter values
    unused). A container the test itself damaged on purpose does not walk,
    and is left to that test; a test that alters a walkable container marks
    itself ``alters_containers``.
    """
    yield
    if request.node.get_closest_marker("alters_containers"):
        return
    azurite_violations = getattr(request.node, "_handle_violations", [])
    assert azurite_violations == [], "\n".join(azurite_violations[:10])
    tmp = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if tmp is None:
        return
    from clfsload.clfs.container import Container, FolderSource
    from clfsload.clfs.fh_rules import handle_rule_violations
    from clfsload.errors import FormatError

    for folder in _loaded_folders(str(tmp)):
        container = Container(FolderSource(folder))
        try:
            if not container.finished:
                continue
            violations = handle_rule_violations(container, spread_tolerance=0.05)
        except (FormatError, OSError, ValueError):
            continue  # damaged by the test on purpose; its own assertions cover it
        assert violations == [], "%s: %s" % (folder, "\n".join(violations[:10]))
