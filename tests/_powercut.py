"""The power-cut campaign: cut the power under the loader at seeded points, remount, resume, compare.

Shared by ``tests/test_powercut_campaign.py`` (a fixed number of cuts in CI)
and ``tests/soak/powercut_campaign.py`` (as many as asked for). It is the
kill campaign (:mod:`_campaign`: its tree, source changes, crash points and
final checks) with a power loss in place of the kill: the state dir and, for
a ``file:`` load, the target folder live on a :class:`PowerCutFS`
(``bench/fusefs``), which keeps only what was fsynced (file data at an fsync
of the file, names at an fsync of their folder).

One *campaign* starts a load with ``--new`` and reruns it without ``--new``
until it completes. Each run but the last is armed with one cut, drawn at
random: a crash point of :mod:`clfsload.crashpoints` (the process that
reaches it SIGKILLs the loader's whole group), or ``writes``, the power
going at the N-th write-like operation on the file system
(``fs.arm(writes=N)``; the loader's group is SIGKILLed as soon as the
campaign sees it). Either way ``fs.cut()`` follows at once: the file system
comes back (``fs.mount()``) with only its durable image, torn at a seeded
byte where a file had unsynced writes. The same command is then resumed.

* A cut before the state was durable: the resume refuses the state dir
  ("start a transfer with --new" or "stopped while it was being created");
  the campaign then checks the container holds no blob (the loader writes
  none before its state is durable), removes the state dir and starts again
  with ``--new``, as the message tells a user to. The same refusal once a
  resume was accepted is a failure.
* After each cut: a root visible under its final name publishes a complete
  tree.
* Every campaign ends with a run that succeeds (exit 0), then a cut right
  after it (``after-success``), and then, with no rerun: the container is
  canonical-equal to a clean load of the final source, holds no stray blob,
  no ``tmp`` root and no partial temp file, the handle rules hold, and
  ``clfsload verify --state STATE`` passes.

Targets: ``file`` (state and target on the file system) and ``azurite``
(state on it, blobs in Azurite, where an acknowledged Put is durable).
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Tuple

from clfsload.clfs.container import FolderSource
from clfsload.targets import open_target

from _campaign import (POINTS, REPO, _draw, build_tree, check_container, check_final, check_published_is_complete,
                       check_published_source, group_gone, mutate, read_counts, run_loader, start_loader)
from _load import TargetSource
from bench.fusefs.powercut import PowerCutFS

#: the cut points: the crash points, and the power going at the N-th write
CUT_POINTS = POINTS + ("writes",)
#: the cut made right after a run that succeeded (every campaign ends with one)
AFTER_SUCCESS = "after-success"
#: what a resume says when the state dir did not survive (see the module docstring)
NO_STATE = ("start a transfer with --new", "stopped while it was being created", "holds no clfsload state")
RUN_TIMEOUT = 300.0


@dataclass
class Azure:
    """Where the ``azurite`` campaigns load: an endpoint, its connection string (to read back),
    a maker of empty containers and of a SAS for one (the loader's credential)."""

    endpoint: str
    connection_string: str
    new_container: Callable[[], str]
    make_sas: Callable[[str], str]


@dataclass
class PowerCutReport:
    """What the campaigns did, per target kind."""

    tried: Dict[str, Counter] = field(default_factory=dict)
    survived: Dict[str, Counter] = field(default_factory=dict)
    runs: int = 0
    campaigns: int = 0
    mutations: int = 0
    restarts: int = 0  # cuts that lost the state before it was durable: started again with --new
    failures: List[str] = field(default_factory=list)

    def cuts(self, kind: str) -> int:
        """Cuts tried against ``kind``."""
        return sum(self.tried.get(kind, Counter()).values())

    def line(self) -> str:
        """Cuts survived/tried by point, per target."""
        parts = []
        for kind in sorted(self.tried):
            tried, survived = self.tried[kind], self.survived.get(kind, Counter())
            points = ", ".join("%s %d/%d" % (p, survived[p], tried[p]) for p in sorted(tried))
            parts.append("%s: %d/%d cuts survived (%s)" % (kind, sum(survived.values()), sum(tried.values()), points))
        return ("power-cut campaign: %s; %d runs over %d campaigns, %d source changes, %d restarts with --new"
                % ("; ".join(parts), self.runs, self.campaigns, self.mutations, self.restarts))


class _Load:
    """One campaign's file system, paths and loader arguments."""

    def __init__(self, work: Path, kind: str, rng: random.Random, preserve: bool, azure: Optional[Azure]):
        self.work, self.kind = work, kind
        store = work / "disk"
        (store / "out").mkdir(parents=True)  # durable: the file system starts with it
        if kind == "file" and rng.random() < 0.5:
            (store / "out" / "c").mkdir()  # made by the user beforehand (else by --new)
        self.fs = PowerCutFS(store, seed=rng.randrange(1 << 30), tear=True)
        self.fs.mount()
        mount = self.fs.mountpoint
        self.state = mount / "state"
        if kind == "file":
            self.account, self.container, self.credential = "file:" + str(mount / "out"), "c", "-"
        else:
            assert azure is not None
            self.account, self.container = azure.endpoint, azure.new_container()
            self.credential = azure.make_sas(self.container)
        self.azure = azure
        self.preserve = preserve
        self.log_dir = work / "log"

    def args(self, source: Path, new: bool, processes: int = 1, threads: int = 4) -> List[str]:
        """The loader's command line (``--new`` or a resume)."""
        common = [str(self.state), str(source), self.account, self.container, self.credential,
                  "--processes", str(processes), "--worker_thread_count", str(threads)]
        return ["--new", *common, "--preserve_hardlinks", "1" if self.preserve else "0"] if new else common

    def container_source(self):
        """The campaign's container as the checks read it (listed now)."""
        if self.kind == "file":
            return FolderSource(str(self.fs.mountpoint / "out" / "c"))
        assert self.azure is not None
        return TargetSource(open_target(self.azure.endpoint, self.container, self.azure.connection_string))

    def check_published(self) -> Optional[str]:
        """If the final root is visible, the tree it publishes must be complete; a failure or None."""
        if self.kind == "file":
            return check_published_is_complete(self.fs.mountpoint / "out" / "c")
        return check_published_source(self.container_source())

    def blobs(self) -> List[str]:
        """Blob names in the container now (temp files left out)."""
        if self.kind == "file":
            folder = self.fs.mountpoint / "out" / "c"
            return [n for n in os.listdir(folder) if not n.startswith(".clfsload-")] if folder.is_dir() else []
        assert self.azure is not None
        with open_target(self.azure.endpoint, self.container, self.azure.connection_string) as target:
            return list(target.list_names())

    def power_cut(self) -> None:
        """Power loss now, then the file system back with only its durable image (its state dir noted in ``cuts.txt``)."""
        self.fs.cut()
        self.fs.mount()
        listing = sorted((n, os.path.getsize(self.state / n)) for n in os.listdir(self.state)) if self.state.is_dir() else None
        with open(self.work / "cuts.txt", "a") as f:
            f.write("after a cut, the state dir holds: %s\n" % (listing,))


def run_until_cut(load: _Load, args: List[str], crash: Optional[str]) -> Tuple[int, str, bool]:
    """Run the loader (armed with ``crash``, or the file system's arm); returns (status, output, power cut).

    When the armed write cuts the power, the loader's group is SIGKILLed at
    once: nothing it does after that moment becomes durable anyway.
    """
    out_path = load.work / "run-output.txt"
    fs = load.fs
    with open(out_path, "wb") as out:
        proc = start_loader(args, crash, load.log_dir, stdout=out)
        deadline = time.monotonic() + RUN_TIMEOUT
        cut = False
        while proc.poll() is None:
            try:
                cut = fs.stats()["cut"]
            except (OSError, ValueError, KeyError):
                cut = False
            if cut or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the machine stops: every process of the loader with it
        except ProcessLookupError:
            pass
        proc.wait()
        group_gone(proc.pid)
    timed_out = not cut and time.monotonic() > deadline
    output = out_path.read_text(errors="replace")
    if timed_out:
        return -999, output, False
    return proc.returncode, output, cut or fs.stats()["cut"]


_calibrated: Dict[Tuple[Path, str, bool], Counter] = {}


def calibrate(base: Path, kind: str, preserve: bool, azure: Optional[Azure]) -> Counter:
    """Crash points a clean load of :func:`build_tree` reaches, and its writes on the file system (``writes``)."""
    key = (base, kind, preserve)
    if key not in _calibrated:
        work = base / ("calibrate-%s-%d" % (kind, preserve))
        source = build_tree(work / "source")
        load = _Load(work, kind, random.Random(0), preserve, azure)
        try:
            code, output, _ = run_loader(load.args(source, new=True), None, log_dir=load.log_dir)
            if code != 0:
                raise AssertionError("the calibration load failed:\n" + output[-3000:])
            counts = read_counts(load.log_dir)
            counts["writes"] = load.fs.stats()["writes"]
        finally:
            load.fs.unmount()
        _calibrated[key] = counts
        shutil.rmtree(work)
    return _calibrated[key]


def campaign(work: Path, rng: random.Random, report: PowerCutReport, kind: str, cuts: int, preserve: bool,
             azure: Optional[Azure] = None) -> None:
    """One campaign of up to ``cuts`` armed runs, then a run to success and a cut after it."""
    left = Counter(calibrate(work.parent, kind, preserve, azure))  # cut points still ahead, roughly
    source = build_tree(work / "source")
    tried = report.tried.setdefault(kind, Counter())
    survived = report.survived.setdefault(kind, Counter())
    made: List[str] = []  # the cuts of this campaign
    failures_before = len(report.failures)
    load = _Load(work, kind, rng, preserve, azure)
    points = CUT_POINTS if kind == "file" else tuple(p for p in CUT_POINTS if p != "put-partial")
    shape = {"processes": rng.choice([1, 1, 2]), "threads": rng.choice([1, 4])}
    new, accepted, mutated = True, False, False

    def fail(what: str) -> None:
        report.failures.append("%s campaign in %s: %s" % (kind, work, what))

    try:
        armed_runs = 0
        while True:
            drawn = _draw(rng, left, mutated, SimpleNamespace(by_point=tried), points) if armed_runs < cuts else None
            crash = None
            if drawn is not None:
                point, count = drawn
                if point == "writes":
                    load.fs.arm(writes=count)
                else:
                    crash = "%s@%d" % (point, count)
            before = load.fs.stats()["writes"]
            code, output, cut = run_until_cut(load, load.args(source, new, **shape), crash)
            with open(work / "cuts.txt", "a") as f:
                f.write("run %s armed with %s: exit %d, power cut %s, fs %s\n%s\n"
                        % ("--new" if new else "resume", crash or "writes@%d" % count if drawn else "nothing", code, cut,
                           load.fs.stats(), output[-1500:]))
            left.subtract(read_counts(load.log_dir))
            left["writes"] -= load.fs.stats()["writes"] - before
            report.runs += 1
            if code == -999:
                return fail("a run timed out (%s)" % (crash or "writes"))
            if cut or code == -signal.SIGKILL:
                if drawn is None:
                    return fail("an unarmed run was killed (exit %d):\n%s" % (code, output[-2000:]))
                armed_runs += 1
                tried[point] += 1
                made.append(point)
                load.power_cut()
                published = load.check_published()
                if published:
                    return fail("cut at %s: %s" % (crash or "writes@%d" % count, published))
                if not new:
                    accepted = True
                new = False
                if accepted and rng.random() < 0.5 and mutate(rng, load.state):
                    report.mutations += 1
                    mutated = True
                continue
            if code == 0:
                break
            if not new and not accepted and any(m in output for m in NO_STATE):
                # The cut came before the state was durable: nothing may be in the container yet.
                blobs = load.blobs()
                if blobs:
                    return fail("the state was lost but the container holds %d blobs, e.g. %s" % (len(blobs), blobs[:3]))
                shutil.rmtree(load.state, ignore_errors=True)
                report.restarts += 1
                new = True
                continue
            return fail("a run armed with %s exited %d:\n%s" % (crash or "writes", code, output[-2500:]))
        # The run succeeded: the power goes right after, and the load must be whole as it is.
        tried[AFTER_SUCCESS] += 1
        made.append(AFTER_SUCCESS)
        load.power_cut()
        reference = work / "clean"
        reference.mkdir()
        code, output, _ = run_loader(["--new", str(work / "clean-state"), str(source), "file:" + str(reference), "c",
                                      "-", "--preserve_hardlinks", "1" if preserve else "0"], None)
        if code != 0:
            return fail("the clean reference load exited %d:\n%s" % (code, output[-2000:]))
        folder = load.fs.mountpoint / "out" / "c"
        if kind == "file" and not folder.is_dir():
            problems = ["the container folder %s is gone" % folder]
        elif kind == "file":
            problems = check_final(folder, reference / "c")
        else:
            problems = check_container(load.container_source(), FolderSource(str(reference / "c")))
        for problem in problems:
            fail("after the cut that followed success: %s" % problem)
        credential = [] if kind == "file" else ["--credential", load.credential]
        verify = subprocess.run([sys.executable, "-m", "clfsload", "verify", load.account, load.container, str(source),
                                 "--state", str(load.state), *credential], capture_output=True, text=True,
                                timeout=RUN_TIMEOUT, cwd=str(REPO))
        if verify.returncode != 0:
            fail("verify --state exited %d: %s" % (verify.returncode, (verify.stdout + verify.stderr)[-2000:]))
    finally:
        load.fs.unmount()
        report.campaigns += 1
        if len(report.failures) == failures_before:
            survived.update(made)


def run_powercut_campaigns(base: Path, seed: int, cuts: Dict[str, int], azure: Optional[Azure] = None,
                           per_campaign: Tuple[int, int] = (3, 6)) -> PowerCutReport:
    """Campaigns until ``cuts[kind]`` cuts were tried per target kind (``file``, ``azurite``), or a failure.

    Every campaign's folder is removed when clean; a failing one is kept.
    """
    rng = random.Random(seed)
    report = PowerCutReport()
    index = 0
    for kind in sorted(cuts):
        while report.cuts(kind) < cuts[kind] and not report.failures:
            work = base / ("powercut-%s-%03d" % (kind, index))
            work.mkdir(parents=True)
            campaign(work, rng, report, kind, rng.randint(*per_campaign), preserve=index % 2 == 1, azure=azure)
            if not report.failures:
                shutil.rmtree(work)
            index += 1
    return report
