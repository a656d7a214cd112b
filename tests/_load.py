"""Helpers for end-to-end tests: run the real command line, compare containers."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

from clfsload._native import envelope
from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.container import BlobSource, Container, FolderSource
from clfsload.clfs.fh_rules import handle_rule_violations
from clfsload.read import readback

REPO = Path(__file__).resolve().parents[1]

#: Fields that differ between the golden machine and this one (inode numbers,
#: ctimes) and the compress-or-raw choice of tiny blobs, which depends on the
#: random bytes of the owner's filehandle (FMT §16 items 3, 4 and 13).
GOLDEN_MASK = frozenset({"fileid", "ctime", "compression"})


def cli(*args: str, env: Optional[dict] = None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m clfsload ARGS`` from the repository; capture its output."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    try:
        return subprocess.run(
            [sys.executable, "-m", "clfsload", *args],
            cwd=str(REPO),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
    except subprocess.TimeoutExpired:
        # The default message quotes the whole command line, a SAS with it.
        raise AssertionError("clfsload did not finish in %d s" % timeout) from None


def local_args(state, source, out, *extra: str, new: bool = True, container: str = "c",
               credential: str = "-") -> List[str]:
    """The arguments of a load into the local folder ``out`` (made if missing).

    ``[--new] STATE SOURCE file:OUT CONTAINER CREDENTIAL EXTRA...``, each as a string.
    """
    Path(out).mkdir(parents=True, exist_ok=True)
    return (["--new"] if new else []) + [str(state), str(source), "file:" + str(out), container, credential, *extra]


def load_local(state, source, out, *extra: str, new: bool = True, container: str = "c", credential: str = "-",
               runner: Optional[Callable[..., subprocess.CompletedProcess]] = None,
               **kwargs) -> subprocess.CompletedProcess:
    """Run a load into the local folder ``out`` through ``runner`` (default :func:`cli`, given ``kwargs``)."""
    args = local_args(state, source, out, *extra, new=new, container=container, credential=credential)
    return (runner or cli)(*args, **kwargs)


def compression_follows_the_rule(source: BlobSource, names: Iterable[str]) -> List[str]:
    """Blobs whose compress-or-raw choice is not the §6.2 decision for their own body."""
    wrong = []
    for name in names:
        payload = source.read(name)
        body = envelope.unwrap(payload)
        if envelope.payload_mode(payload) != envelope.payload_mode(envelope.wrap(body, True)):
            wrong.append(name)
    return wrong


def assert_handle_rules(container: Container, spread_tolerance: Optional[float] = None) -> None:
    """The FMT §2.2 filehandle rules hold (dmids, seqs, the directory spread): what the canonical diff cannot see.

    ``spread_tolerance`` None asks for the reference's exact spread of the
    directories over the 48 dmids; a fraction allows that much off even
    (a tree changed between runs leaves reserved counter values unused).
    """
    violations = handle_rule_violations(container, spread_tolerance=spread_tolerance)
    assert violations == [], "\n".join(violations[:20])


def assert_matches_golden(golden: Path, ours: BlobSource, compressed: bool = True) -> Container:
    """Our container is finished, clean, canonical-equal to a golden one, and keeps the handle rules."""
    container = Container(ours)
    assert container.finished, "the root was not published"
    assert not container.tmp_names, container.tmp_names
    assert not container.strays(), container.strays()[:5]
    expected = canonical_form(Container(FolderSource(str(golden))), mask=GOLDEN_MASK)
    differences = diff_canonical(expected, canonical_form(container, mask=GOLDEN_MASK))
    assert differences == [], "\n".join(map(str, differences[:20]))
    assert_handle_rules(container)
    clfs = [n.blob for n in container.clfs_names]
    if compressed:
        assert compression_follows_the_rule(ours, clfs) == []
    else:
        assert all(envelope.payload_mode(ours.read(n)) == 0 for n in clfs)
    return container


class TargetSource(readback.TargetSource):
    """readback's container source (:class:`clfsload.read.readback.TargetSource`), for checks that walk often.

    Two differences, both for the tests: each blob is read once and kept
    (checks walk a container several times, and Azurite takes ~12 ms per GET
    once it holds a few thousand blobs), and ``names`` is sorted whatever
    the target's listing order. The listing is taken once, as in readback:
    make a new one to see later changes.
    """

    def __init__(self, target) -> None:
        super().__init__(target)
        self._read: Dict[str, bytes] = {}

    def names(self) -> List[str]:
        """Every blob name, sorted; listed once."""
        return sorted(super().names())

    def read(self, name: str) -> bytes:
        """The payload of blob ``name``, fetched on first use."""
        data = self._read.get(name)
        if data is None:
            data = self._read[name] = super().read(name)
        return data
