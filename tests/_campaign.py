"""The kill -9 campaign: kill the loader at seeded points, change the source, resume, compare.

Shared by ``tests/test_crash_campaign.py`` (a fixed number of kill points in
CI) and ``tests/soak/kill_campaign.py`` (as many as asked for).

One *campaign* starts a load with ``--new``, then reruns it without ``--new``
until it completes. Each run but the last is armed with a crash point drawn
at random (:mod:`clfsload.crashpoints`): the process that reaches the point
kills the loader's whole process group, or only the driver, with SIGKILL.
Between runs the source may change inside directories whose unit is still
pending, so the resumed run writes fewer segments or entries than the
killed one did, which is what leaves blobs behind for the sweep to find.

After every killed run: if the root is visible under its final name, the
tree it publishes is already complete (the strict walk finds every object).
After a killed driver alone: no process of the loader is left. At the end:
the container is canonical-equal to a clean load of the final source, holds
no stray blob, no ``tmp`` root and no partial temp file.
"""

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.fh_rules import handle_rule_violations
from clfsload.clfs.container import Container, FolderSource

REPO = Path(__file__).resolve().parents[1]
SEGMENT = 8 << 20
FIRST = 16384
#: huge-file ranges of 2 segments (CLFSLOAD_RANGE_SEGMENTS): big/three-segments-in-ranges.bin goes in two
RANGE_SEGMENTS = 2

#: every crash point of clfsload.crashpoints; a run arms one, drawn uniformly
POINTS = ("init", "commit", "phase", "file-segment", "dir-segment", "inode", "put-partial", "link", "sweep",
          "finalize")
#: the sweep has work only after the source changed; this many deletions are drawn from
SWEEP_DRAW = 3


@dataclass
class CampaignReport:
    """What the campaigns did."""

    runs: int = 0
    kills: int = 0
    driver_only_kills: int = 0
    mutations: int = 0
    completed_campaigns: int = 0
    by_point: Dict[str, int] = field(default_factory=dict)
    failures: List[str] = field(default_factory=list)

    def line(self) -> str:
        points = ", ".join("%s %d" % kv for kv in sorted(self.by_point.items()))
        return (
            "kill campaign: %d kills survived (%d of the driver alone) in %d runs over %d campaigns, "
            "%d source changes between runs; kills by point: %s"
            % (self.kills, self.driver_only_kills, self.runs, self.completed_campaigns, self.mutations, points)
        )


def build_tree(root: Path) -> Path:
    """A small tree with every shape the campaign must cut through."""
    root.mkdir(parents=True)
    big = root / "big"
    big.mkdir()
    # Two data segments plus the inode's first 16 KiB: a multi-segment file.
    (big / "two-segments.bin").write_bytes(bytes(range(256)) * ((FIRST + SEGMENT + 4096) // 256))
    # Three data segments: over RANGE_SEGMENTS, so loaded in two ranges (two units) and closed by the driver.
    (big / "three-segments-in-ranges.bin").write_bytes(bytes(range(255, -1, -1)) * ((FIRST + 2 * SEGMENT + 512) // 256))
    (big / "small.txt").write_bytes(b"small\n")
    many = root / "many"
    many.mkdir()
    for i in range(400):  # ~400 entries overflow the directory's first segment
        (many / ("entry-with-a-long-name-%04d.txt" % i)).write_bytes(b"%d\n" % i)
    nested = root / "a" / "b" / "c"
    nested.mkdir(parents=True)
    for d in (root / "a", root / "a" / "b", nested):
        for i in range(5):
            (d / ("f%d" % i)).write_bytes(os.urandom(100 + 700 * i))
    os.symlink("../big/small.txt", root / "a" / "link-to-small")
    os.mkfifo(root / "a" / "fifo")
    links = root / "links"
    links.mkdir()
    (links / "one").write_bytes(b"hard-linked content\n" * 50)
    os.link(links / "one", links / "two")
    os.link(links / "one", root / "a" / "b" / "three")
    (links / "big-linked").write_bytes(os.urandom(FIRST + 1000))
    os.link(links / "big-linked", root / "big" / "big-linked-too")
    return root


def _pending_dirs(state: Path) -> List[bytes]:
    """Paths of the directory units still pending in a stopped run's state."""
    try:
        db = sqlite3.connect("file:%s?mode=ro" % (state / "state.db"), uri=True)
    except sqlite3.Error:
        return []
    try:
        return [bytes(r[0]) for r in db.execute("SELECT path FROM units WHERE state = 0")]
    except sqlite3.Error:
        return []
    finally:
        db.close()


def mutate(rng: random.Random, state: Path) -> Optional[str]:
    """Change the source inside one pending directory; returns what was done, or None."""
    pending = [Path(os.fsdecode(p)) for p in _pending_dirs(state)]
    pending = [p for p in pending if p.is_dir()]
    if not pending:
        return None
    where = rng.choice(sorted(pending))
    files = sorted(p for p in where.iterdir() if p.is_file() and not p.is_symlink() and p.stat().st_nlink == 1)
    choice = rng.randrange(4)
    if choice == 0 and files:
        victim = max(files, key=lambda p: p.stat().st_size)
        with open(victim, "r+b") as f:
            f.truncate(rng.choice([0, 100, FIRST + 10]))
        return "truncated %s" % victim
    if choice == 1 and files:
        gone = rng.sample(files, min(len(files), rng.randint(1, 60)))
        for p in gone:
            p.unlink()
        return "deleted %d files in %s" % (len(gone), where)
    if choice == 2 and files:
        victim = rng.choice(files)
        victim.unlink()
        victim.mkdir()
        (victim / "now-a-directory").write_bytes(b"x")
        return "replaced %s by a directory" % victim
    for i in range(rng.randint(1, 30)):
        (where / ("added-%d-%d" % (rng.randrange(10**6), i))).write_bytes(b"new %d\n" % i)
    return "added files in %s" % where


def start_loader(args: List[str], crash: Optional[str], log_dir: Optional[Path] = None,
                 stdout=subprocess.PIPE) -> subprocess.Popen:
    """Start the loader as its own process group (the campaigns' environment); output to ``stdout``.

    With ``log_dir`` every crash point reached is logged there (one file per process).
    """
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("CLFSLOAD_TEST_CRASH", None)
    env.pop("CLFSLOAD_TEST_CRASH_LOG", None)
    env["CLFSLOAD_RANGE_SEGMENTS"] = str(RANGE_SEGMENTS)
    if crash:
        env["CLFSLOAD_TEST_CRASH"] = crash
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        env["CLFSLOAD_TEST_CRASH_LOG"] = str(log_dir)
    return subprocess.Popen([sys.executable, "-m", "clfsload", *args], cwd=str(REPO), env=env,
                            stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True)


def run_loader(args: List[str], crash: Optional[str], timeout: float = 300,
               log_dir: Optional[Path] = None) -> Tuple[int, str, int]:
    """Run the loader as its own process group; returns (exit status, output, group id).

    With ``log_dir`` every crash point reached is logged there (one file per process).
    """
    proc = start_loader(args, crash, log_dir)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return -999, out.decode(errors="replace"), proc.pid
    return proc.returncode, out.decode(errors="replace"), proc.pid


def read_counts(log_dir: Path) -> Counter:
    """Crash points reached, summed over the processes that logged to ``log_dir``; empties it."""
    counts: Counter = Counter()
    for entry in log_dir.iterdir():
        counts.update(entry.read_text().split())
        entry.unlink()
    return counts


_calibrated: Dict[Tuple[Path, bool], Counter] = {}


def calibrate(base: Path, preserve: bool) -> Counter:
    """How many of each crash point a clean load of :func:`build_tree` reaches."""
    key = (base, preserve)
    if key not in _calibrated:
        work = base / ("calibrate-%d" % preserve)
        source = build_tree(work / "source")
        (work / "out").mkdir()
        code, output, _ = run_loader(["--new", str(work / "state"), str(source), "file:" + str(work / "out"), "c", "-",
                                      "--preserve_hardlinks", "1" if preserve else "0"], None, log_dir=work / "log")
        if code != 0:
            raise AssertionError("the calibration load failed:\n" + output[-3000:])
        _calibrated[key] = read_counts(work / "log")
        shutil.rmtree(work)
    return _calibrated[key]


def group_gone(pgid: int, wait: float = 15.0) -> bool:
    """True once no process of group ``pgid`` is left (waits up to ``wait`` seconds)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _run_and_watch(args: List[str], crash: Optional[str], report: CampaignReport,
                   log_dir: Optional[Path] = None) -> Tuple[int, str]:
    """:func:`run_loader`; after a driver-only kill, check that the whole group dies out."""
    code, output, pgid = run_loader(args, crash, log_dir=log_dir)
    if code == -999:
        report.failures.append("run timed out (%s)" % crash)
    if crash and crash.endswith(":driver") and code == -signal.SIGKILL and not group_gone(pgid):
        report.failures.append("processes of the loader outlived its killed driver (%s)" % crash)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return code, output


def check_published_is_complete(folder: Path) -> Optional[str]:
    """If the final root is visible, the tree must walk completely; returns a failure or None."""
    if not folder.is_dir():
        return None
    return check_published_source(FolderSource(str(folder)))


def check_published_source(source) -> Optional[str]:
    """:func:`check_published_is_complete` for any container source (a folder's, or a target's)."""
    container = Container(source, strict=True)
    if not container.finished:
        return None
    try:
        container.walk()
    except Exception as exc:  # noqa: BLE001 - any failure to walk is the finding
        return "the root was published before the tree was complete: %s" % exc
    return None


def check_final(folder: Path, reference: Path) -> List[str]:
    """The campaign's container against a clean load of the same source."""
    problems = []
    temp = [n for n in os.listdir(folder) if n.startswith(".clfsload-")]
    if temp:
        problems.append("partial temp files left: %s" % temp[:3])
    return problems + check_container(FolderSource(str(folder)), FolderSource(str(reference)))


def check_container(source, reference) -> List[str]:
    """A campaign's container (any container source) against a clean load's: published, no strays,
    no ``tmp`` root, canonical-equal, the handle rules."""
    problems = []
    ours = Container(source)
    if not ours.finished:
        return problems + ["the root is not published"]
    strays = ours.strays()
    if strays:
        problems.append("%d stray blobs, e.g. %s" % (len(strays), strays[:3]))
    if ours.tmp_names:
        problems.append("tmp names left: %s" % ours.tmp_names)
    expected = canonical_form(Container(reference))
    diff = diff_canonical(expected, canonical_form(ours))
    if diff:
        problems.append("not canonical-equal to a clean run: %s" % [str(d) for d in diff[:5]])
    # The handle rules (FMT §2.2); the spread within one of even per dmid, since
    # the source changes between runs and leaves reserved counter values unused.
    problems.extend("handle rule: %s" % v for v in handle_rule_violations(ours, spread_tolerance=0.05))
    return problems


def _draw(rng: random.Random, left: Counter, mutated: bool, report: CampaignReport,
          points: Tuple[str, ...] = POINTS) -> Optional[Tuple[str, int]]:
    """A crash point (of ``points``) and count inside the work left, or None when nothing is left to cut.

    Half the draws take the point with the fewest kills so far (``report.by_point``),
    so every point is covered after a few campaigns whatever the timing.
    """
    choices = sorted(p for p in points if left[p] > 0 and p != "sweep")
    if mutated and "sweep" in points:
        choices.append("sweep")
    if not choices:
        return None
    if rng.random() < 0.5:
        fewest = min(report.by_point.get(p, 0) for p in choices)
        point = rng.choice([p for p in choices if report.by_point.get(p, 0) == fewest])
    else:
        point = rng.choice(choices)
    return point, rng.randint(1, SWEEP_DRAW if point == "sweep" else left[point])


def campaign(work: Path, rng: random.Random, report: CampaignReport, kills: int, preserve: bool) -> None:
    """One campaign of up to ``kills`` armed runs, then a plain resume; appends findings to ``report``."""
    left = Counter(calibrate(work.parent, preserve))  # crash points still ahead, roughly
    source = build_tree(work / "source")
    state, out, log_dir = work / "state", work / "out", work / "log"
    out.mkdir()
    common = [str(state), str(source), "file:" + str(out), "c", "-",
              "--processes", str(rng.choice([1, 1, 2])), "--worker_thread_count", str(rng.choice([1, 4]))]
    first = ["--new", *common, "--preserve_hardlinks", "1" if preserve else "0"]
    args = first
    done = False
    mutated = False
    for _ in range(kills):
        drawn = _draw(rng, left, mutated, report)
        if drawn is None:
            break
        point, count = drawn
        crash = "%s@%d" % (point, count)
        if rng.random() < 0.15:
            crash += ":driver"
        code, output = _run_and_watch(args, crash, report, log_dir)
        left.subtract(read_counts(log_dir))
        report.runs += 1
        if code == -signal.SIGKILL:
            report.kills += 1
            report.by_point[point] = report.by_point.get(point, 0) + 1
            if crash.endswith(":driver"):
                report.driver_only_kills += 1
            failure = check_published_is_complete(out / "c")
            if failure:
                report.failures.append("%s: %s" % (crash, failure))
        elif code == 0:
            done = True
            break
        else:
            report.failures.append("run armed with %s exited %d:\n%s" % (crash, code, output[-2000:]))
            return
        if args is first and not (state / "state.db").exists():
            continue  # killed before the state existed: start again with --new
        args = common
        if rng.random() < 0.5 and mutate(rng, state):
            report.mutations += 1
            mutated = True
    if not done:
        code, output = _run_and_watch(args, None, report)
        report.runs += 1
        if code != 0:
            report.failures.append("the final resume exited %d:\n%s" % (code, output[-3000:]))
            return
    reference = work / "clean"
    reference.mkdir()
    code, output, _ = run_loader(["--new", str(work / "clean-state"), str(source), "file:" + str(reference), "c", "-",
                               "--preserve_hardlinks", "1" if preserve else "0"], None)
    if code != 0:
        report.failures.append("the clean reference load exited %d:\n%s" % (code, output[-2000:]))
        return
    for problem in check_final(out / "c", reference / "c"):
        report.failures.append("campaign in %s: %s" % (work, problem))
    report.completed_campaigns += 1


def run_campaigns(base: Path, seed: int, kill_points: int, per_campaign: Tuple[int, int] = (4, 9)) -> CampaignReport:
    """Campaigns until ``kill_points`` kills were survived; every campaign's folder is removed when clean."""
    rng = random.Random(seed)
    report = CampaignReport()
    index = 0
    while report.kills < kill_points and not report.failures:
        work = base / ("campaign-%03d" % index)
        work.mkdir(parents=True)
        campaign(work, rng, report, rng.randint(*per_campaign), preserve=index % 2 == 1)
        if not report.failures:
            shutil.rmtree(work)
        index += 1
    return report
