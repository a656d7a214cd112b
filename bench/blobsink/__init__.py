"""A Blob-protocol sink for the benchmarks: answers the loader's and ``verify``'s calls after a set delay.

Not a test double for correctness (the Azure tests run on Azurite): a fast
stand-in for a storage account a WAN round trip away, so that what a
benchmark measures is the client, never the server.

What it speaks (:mod:`.server` lists the calls): Create / Get Properties /
Delete Container, List Blobs (``prefix``, ``marker``, ``maxresults``), Put
Blob (with ``If-Match`` / ``If-None-Match``), Get Blob with ``x-ms-range`` or
``Range``, Delete Blob. Any other call is answered ``400 UnsupportedBySink``
and logged on stderr. Every request is authorised as the service does it
(:mod:`.auth`): a service SAS (signature, times, permission letters) or a
SharedKey signature; a wrong key gets ``403 AuthenticationFailed``. Blobs are
kept in memory. Each answer is written after ``--delay-ms`` by an event-loop
timer (no CPU spent waiting); ``--mbps`` caps request plus answer bodies.

It runs in a process of its own, one event loop (uvloop when installed) and
httptools' C parser: it uses one core at most. ``python -m bench.blobsink
--selftest`` measures that core's rate with the bare client of
:mod:`.loadgen` (4 KiB Put Blobs with a SAS, keep-alive connections).

Start it:

* ``python -m bench.blobsink --port 0 --delay-ms 20`` (from the repository
  root) prints one JSON line ``{"url", "endpoint", "account", "key",
  "pid"}`` and serves until killed; ``endpoint`` is the path-style account
  URL to give the loader as ACCOUNT, with the key or a SAS signed with it;
* from Python: ``with BlobSink(delay=0.02) as sink:`` (the same process,
  started and stopped for you), then ``sink.endpoint``, ``sink.key``,
  ``sink.create_container()``, ``sink.make_sas(container)``,
  ``sink.stats()``, ``sink.cpu_seconds()``.

Needs ``httptools`` (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["BlobSink", "DEFAULT_ACCOUNT"]

#: The account name the sink serves unless told otherwise.
DEFAULT_ACCOUNT = "sinkaccount"
_ROOT = Path(__file__).resolve().parents[2]


class BlobSink:
    """``python -m bench.blobsink`` in a child process; a context manager.

    *delay* in seconds, *mbps* megabits per second (0: no cap), *key* the
    account key in base64 (default: a random one), *keep_data*: False keeps
    only blob lengths.
    """

    def __init__(self, delay: float = 0.0, *, mbps: float = 0.0, account: str = DEFAULT_ACCOUNT,
                 key: Optional[str] = None, keep_data: bool = True) -> None:
        self.account = account
        self.delay = delay
        self.key = key or base64.b64encode(os.urandom(64)).decode()
        args = [sys.executable, "-m", "bench.blobsink", "--port", "0", "--delay-ms", repr(delay * 1000),
                "--account", account, "--mbps", repr(mbps)]
        if not keep_data:
            args.append("--no-data")
        env = dict(os.environ, BLOBSINK_KEY=self.key)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(args, cwd=str(_ROOT), env=env, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError("the blob sink did not start (exit status %s)" % self.proc.returncode)
        info: Dict[str, Any] = json.loads(line)
        self.url: str = info["url"]
        self.endpoint: str = info["endpoint"]
        self.pid: int = info["pid"]

    def __enter__(self) -> "BlobSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connection_string(self) -> str:
        """A connection string with the account key and this endpoint."""
        return ("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;"
                % (self.account, self.key, self.endpoint))

    def create_container(self, name: Optional[str] = None) -> str:
        """Create a container (a fresh unique name by default) through the SDK with the key; return its name."""
        from azure.storage.blob import BlobServiceClient

        name = name or "s%s" % uuid.uuid4().hex[:16]
        with BlobServiceClient(self.endpoint, credential={"account_name": self.account,
                                                          "account_key": self.key}) as svc:
            svc.create_container(name)
        return name

    def make_sas(self, container: str, permission: str = "racwdl", hours: float = 4.0,
                 key: Optional[str] = None) -> str:
        """A container SAS signed with the sink's key (or *key*, to make a bad one)."""
        from azure.storage.blob import generate_container_sas

        expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours)
        return generate_container_sas(self.account, container, account_key=key or self.key,
                                      permission=permission, expiry=expiry)

    def stats(self) -> Dict[str, int]:
        """The sink's counters (requests, puts, unsupported, peak_in_flight, ...)."""
        with urllib.request.urlopen(self.url + "/_sink/stats", timeout=10) as resp:
            return json.loads(resp.read())

    def cpu_seconds(self) -> float:
        """User + system CPU the sink process used so far."""
        with open("/proc/%d/stat" % self.pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Stop the sink process."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def selftest_rows(sink: BlobSink, seconds: float = 3.0, connections: int = 64, clients: int = 1) -> List[str]:
    """Measure *sink* with the bare client; lines to print (see :mod:`.loadgen`)."""
    from .loadgen import measure

    return measure(sink, seconds=seconds, connections=connections, clients=clients)
