"""One load across a Dask cluster: a ``distributed.LocalCluster`` of 4 worker processes and Azurite.

* every golden tree loaded through the cluster (``load(..., client=...)``)
  is canonical-equal to the original tool's container;
* workers SIGKILLed at seeded points of TRANSFER and RECONCILE (their nanny
  starts them again, under new addresses), also inside batches of a huge
  directory and inside ranges of a huge file's segments: the load completes,
  the container is canonical-equal to the golden one and holds no stray blob;
* the driver SIGKILLed mid-TRANSFER (``--dask`` on the command line), then
  the same command: canonical-equal to a clean load, no stray blob;
* the SAS never reaches the scheduler (tasks, logs, events) nor a worker's log;
* a worker that cannot read SOURCE, or no scheduler at the address: one
  clear line, exit 1, and no state written for the latter.
"""

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest
from distributed import Client, LocalCluster

import clfsload
from clfsload import crashpoints
from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.container import Container, FolderSource
from clfsload.execute.dask_worker import SourceCheck, listing_digest
from clfsload.targets import open_target

from _load import REPO, TargetSource, assert_handle_rules, assert_matches_golden, cli
from _trees import GOLDEN_RUNS, golden_dir, source_trees  # noqa: F401
from azurite import azurite  # noqa: F401

WORKERS = 4
#: the points a worker reaches (clfsload.crashpoints); tickets are drawn among these
WORKER_POINTS = ("file-segment", "dir-segment", "inode", "link")


class Cluster:
    """The module's LocalCluster, its client and the crash-ticket folder its workers watch."""

    def __init__(self, cluster: LocalCluster, client: Client, tickets: Path):
        self.cluster = cluster
        self.client = client
        self.tickets = tickets

    def counts(self) -> Dict[str, int]:
        """How often each worker point was reached so far, over all workers."""
        return {p: _size(self.tickets / (".count-" + p)) for p in WORKER_POINTS}

    def arm(self, point: str, count: int) -> Path:
        ticket = self.tickets / ("%s@%d" % (point, count))
        ticket.write_text("")
        return ticket

    def all_back(self) -> None:
        """Wait until every worker runs again: a nanny restarts a killed one, or one takes its place.

        Under load (seen in CI) a nanny may give up and close instead of
        restarting its worker; the cluster then starts a replacement.
        """
        from distributed.core import Status

        try:
            self.client.wait_for_workers(WORKERS, timeout=20)
            return
        except Exception:  # noqa: BLE001 - WorkerStartTimeoutError, or TimeoutError on older versions
            pass
        for name, nanny in list(self.cluster.workers.items()):
            if nanny.status in (Status.closing, Status.closed, Status.failed, Status.closing_gracefully):
                self.cluster.worker_spec.pop(name, None)
                self.cluster.workers.pop(name, None)
        self.cluster.scale(WORKERS)
        self.client.wait_for_workers(WORKERS, timeout=90)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    tickets = tmp_path_factory.mktemp("crash-tickets")
    cluster = LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0",
        env={crashpoints.TICKETS_ENV: str(tickets)}, silence_logs=logging.ERROR,
    )
    client = Client(cluster, set_as_default=False)
    try:
        yield Cluster(cluster, client, tickets)
    finally:
        client.close()
        cluster.close()


class Folder:
    """A local folder as the target (shared by the workers: they run on this machine)."""

    def __init__(self, root: Path):
        self.root = root
        self.endpoint = "file:" + str(root)
        root.mkdir(parents=True, exist_ok=True)
        self._made = 0

    def create_container(self) -> str:
        self._made += 1
        return "c%d" % self._made

    def make_sas(self, container: str) -> None:
        return None

    def delete_container(self, container: str) -> None:
        shutil.rmtree(self.root / container, ignore_errors=True)


def _load(az, dask_cluster, tmp_path, tree: Path, golden: str, **kwargs):
    _, preserve, compress = GOLDEN_RUNS[golden]
    container = az.create_container()
    result = clfsload.load(
        str(tmp_path / ("state-" + container)), str(tree), az.endpoint, container, az.make_sas(container), new=True,
        preserve_hardlinks=preserve, compression="LZ4" if compress else "DISABLED", client=dask_cluster.client,
        **kwargs,
    )
    return container, result


def _read_back(az, container):
    if isinstance(az, Folder):
        return FolderSource(str(az.root / container))
    return TargetSource(open_target(az.endpoint, container, az.connection_string))


@pytest.mark.parametrize("golden", sorted(GOLDEN_RUNS))
def test_golden_tree_through_a_dask_cluster(golden, azurite, dask_cluster, source_trees, tmp_path):
    tree = source_trees / GOLDEN_RUNS[golden][0]
    container, result = _load(azurite, dask_cluster, tmp_path, tree, golden)
    assert result.ok, result.message
    assert_matches_golden(golden_dir(golden), _read_back(azurite, container), compressed=GOLDEN_RUNS[golden][2])


@pytest.mark.parametrize("golden", ["basic", "hardlinks-preserve"])
def test_directories_in_batches_through_a_dask_cluster(golden, azurite, dask_cluster, source_trees, tmp_path,
                                                       monkeypatch, caplog):
    """Directories split into batches of 2 entries, spread over the workers: still the golden container."""
    monkeypatch.setenv("CLFSLOAD_BATCH_ENTRIES", "2")
    caplog.set_level(logging.INFO, logger="clfsload")
    container, result = _load(azurite, dask_cluster, tmp_path, source_trees / GOLDEN_RUNS[golden][0], golden)
    assert result.ok, result.message
    assert "batches" in caplog.text
    assert_matches_golden(golden_dir(golden), _read_back(azurite, container), compressed=GOLDEN_RUNS[golden][2])


#: (golden, seed, entries per batch, segments per range, target): one huge directory (whole, then
#: in batches of 500), many segments (whole files, then files in ranges of 1 segment), hard links
#: reconciled on workers. The huge directory goes to a local folder: read back from Azurite (a GET
#: scans every blob of the account) it would take a minute more.
KILL_RUNS = [("bigdir", 1, 0, 0, "folder"), ("bigdir", 5, 500, 0, "folder"), ("boundaries", 2, 0, 0, "azurite"),
             ("boundaries", 6, 0, 1, "azurite"), ("hardlinks-preserve", 3, 0, 0, "azurite"),
             ("basic-preserve", 4, 0, 0, "azurite")]


@pytest.mark.parametrize("golden,seed,batch,per_range,target", KILL_RUNS)
def test_workers_killed_mid_load_still_give_the_golden_container(golden, seed, batch, per_range, target, azurite,
                                                                  dask_cluster, source_trees, tmp_path, caplog,
                                                                  monkeypatch):
    """Two workers SIGKILLed at seeded points: Dask reruns their units, the container is the golden one."""
    if batch:
        monkeypatch.setenv("CLFSLOAD_BATCH_ENTRIES", str(batch))
    if per_range:
        monkeypatch.setenv("CLFSLOAD_RANGE_SEGMENTS", str(per_range))
    if target == "folder":
        azurite = Folder(tmp_path / "out")
    tree = source_trees / GOLDEN_RUNS[golden][0]
    dask_cluster.all_back()
    before = dask_cluster.counts()
    clean, result = _load(azurite, dask_cluster, tmp_path, tree, golden)  # how many points this tree has
    assert result.ok, result.message
    after = dask_cluster.counts()
    azurite.delete_container(clean)  # every blob kept slows Azurite's later puts
    reached = {p: after[p] - before[p] for p in WORKER_POINTS if after[p] > before[p]}
    if GOLDEN_RUNS[golden][1] and "hardlinks" in golden:  # RECONCILE's hard-linked objects run on the workers too
        assert "link" in reached, reached
    rng = random.Random(seed)
    draws = [(p, rng.randint(1, n)) for p, n in rng.sample(sorted(reached.items()), min(2, len(reached)))]
    if per_range and "file-segment" not in dict(draws):  # a kill inside a range of a huge file
        draws[0] = ("file-segment", rng.randint(1, reached["file-segment"]))
    tickets = [dask_cluster.arm(point, after[point] + n) for point, n in draws]
    caplog.set_level(logging.INFO, logger="clfsload")
    container, result = _load(azurite, dask_cluster, tmp_path, tree, golden)
    assert result.ok, result.message
    assert [t for t in tickets if t.exists()] == [], "a drawn kill did not happen: %s" % draws
    assert "worker was lost while it ran" in caplog.text
    if per_range:
        assert "ranges of up to %d segments" % per_range in caplog.text
    assert_matches_golden(golden_dir(golden), _read_back(azurite, container), compressed=GOLDEN_RUNS[golden][2])


def _tree(root: Path, dirs: int, files: int) -> Path:
    for d in range(dirs):
        sub = root / ("d%03d" % d)
        sub.mkdir(parents=True)
        for f in range(files):
            (sub / ("f%03d.txt" % f)).write_bytes(b"%d/%d\n" % (d, f) * (f + 1))
    (root / "d000" / "two-segments.bin").write_bytes(os.urandom((8 << 20) + 20000))
    return root


def _canonical(az, container):
    ours = Container(_read_back(az, container))
    assert ours.finished and not ours.tmp_names
    assert ours.strays() == []
    assert_handle_rules(ours)
    return canonical_form(ours)


def test_driver_killed_mid_transfer_resumes_with_the_same_command(azurite, dask_cluster, tmp_path):
    """kill -9 of the driver while the cluster runs its units; the same command finishes the load."""
    dask_cluster.all_back()
    tree = _tree(tmp_path / "tree", 30, 15)
    address = dask_cluster.cluster.scheduler_address
    reference = azurite.create_container()
    done = cli("--new", str(tmp_path / "ref-state"), str(tree), azurite.endpoint, reference, azurite.make_sas(reference),
               "--dask", address)
    assert done.returncode == 0, done.stdout + done.stderr
    container = azurite.create_container()
    args = [str(tmp_path / "state"), str(tree), azurite.endpoint, container, azurite.make_sas(container), "--dask", address]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    driver = subprocess.Popen([sys.executable, "-m", "clfsload", "--new", *args], cwd=str(REPO), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    target = open_target(azurite.endpoint, container, azurite.connection_string)
    kill_at = random.Random(7).randint(100, 300)  # blobs stored when the driver dies (of ~490)
    deadline = time.monotonic() + 120
    while driver.poll() is None and time.monotonic() < deadline:
        if sum(1 for _ in target.list_names()) >= kill_at:
            driver.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    driver.wait(30)
    assert driver.returncode == -signal.SIGKILL, "the load ended before the kill: %s" % driver.stdout.read()[-2000:]
    done = cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert diff_canonical(_canonical(azurite, reference), _canonical(azurite, container)) == []


class _SchedulerWatch(threading.Thread):
    """Snapshots of everything the scheduler holds, taken while a load runs."""

    def __init__(self, client: Client):
        super().__init__(daemon=True)
        self.client = client
        self.snapshots: List[bytes] = []
        self.unit_tasks_seen = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            tasks, blob = self.client.run_on_scheduler(_scheduler_dump)
            self.unit_tasks_seen = max(self.unit_tasks_seen, tasks)
            self.snapshots.append(blob)
            time.sleep(0.02)


def _scheduler_dump(dask_scheduler=None):
    from distributed.protocol.pickle import dumps

    parts = []
    tasks = 0
    for key, ts in list(dask_scheduler.tasks.items()):
        tasks += str(key).startswith("clfsload-")
        parts.append(repr(key).encode())
        parts.append(dumps(ts.run_spec))
    parts.append(repr(list(dask_scheduler.get_logs())).encode())
    parts.append(repr(dask_scheduler.get_events()).encode())
    parts.append(dumps(getattr(dask_scheduler, "worker_plugins", {})))
    return tasks, b"\n".join(parts)


def test_the_sas_never_reaches_the_scheduler_or_a_worker_log(azurite, dask_cluster, tmp_path):
    dask_cluster.all_back()
    tree = _tree(tmp_path / "tree", 30, 10)
    container = azurite.create_container()
    sas = azurite.make_sas(container)
    signature = [f for f in sas.split("&") if f.startswith("sig=")][0].split("=", 1)[1]
    watch = _SchedulerWatch(dask_cluster.client)
    watch.start()
    try:
        result = clfsload.load(str(tmp_path / "state"), str(tree), azurite.endpoint, container, sas, new=True,
                               client=dask_cluster.client)
    finally:
        watch.stop.set()
        watch.join(30)
    assert result.ok, result.message
    assert watch.unit_tasks_seen > 0, "no snapshot caught a unit task: the check saw nothing"
    held = b"\n".join(watch.snapshots)
    held += repr(dask_cluster.client.get_scheduler_logs()).encode()
    held += repr(dask_cluster.client.get_worker_logs()).encode()
    for secret in (signature, signature.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")):
        assert secret.encode() not in held


def test_source_check_names_what_a_worker_sees_differently(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("x")
    real = str(tmp_path / "src")
    st = os.stat(real)
    good = SourceCheck(real, st.st_ino, st.st_dev, listing_digest(real))
    assert good.verify() == ""
    (tmp_path / "src" / "b").write_text("y")
    assert "lists other names" in good.verify()
    assert "another directory" in SourceCheck(real, st.st_ino + 1, st.st_dev).verify()
    assert "cannot read source" in SourceCheck(str(tmp_path / "gone"), 1, 1).verify()


def test_a_worker_that_cannot_read_the_source_stops_the_load(azurite, tmp_path):
    """A worker process of another user (no access to the source) refuses to join: one line, exit 1."""
    if os.geteuid() != 0:
        pytest.fail("this test starts a worker as user nobody and needs root (CI runs as root)")
    tree = _tree(tmp_path / "tree", 2, 2)
    os.chmod(tmp_path, 0o700)
    with LocalCluster(n_workers=0, processes=True, dashboard_address=":0", silence_logs=logging.ERROR) as cluster:
        worker = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-m",
             "distributed.cli.dask_worker", cluster.scheduler_address, "--nthreads", "1", "--no-nanny",
             "--local-directory", "/tmp"],
            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            container = azurite.create_container()
            done = cli("--new", str(tmp_path / "state"), str(tree), azurite.endpoint, container,
                       azurite.make_sas(container), "--dask", cluster.scheduler_address,
                       env={"CLFSLOAD_DASK_WAIT": "60"})
        finally:
            worker.terminate()
            worker.wait(30)
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if " ERR " in line]
    assert len(errors) == 1 and "cannot take part" in errors[0] and "cannot read source" in errors[0], done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_no_scheduler_at_the_address_stops_before_any_state(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "out").mkdir()
    done = cli("--new", str(tmp_path / "state"), str(tmp_path / "src"), "file:" + str(tmp_path / "out"), "c", "-",
               "--dask", "tcp://127.0.0.1:9", env={"CLFSLOAD_DASK_TIMEOUT": "2"})
    assert done.returncode == 1
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "state").exists()
