"""What the benchmarks share: the repository paths, a fresh Azurite per measurement, a latency proxy.

The benchmarks import the installed package (``pip install -e .``) and this
module (``bench/`` is the script's own folder, first on ``sys.path``), never
the test helpers: ``python bench/<script>.py --help`` works from a fresh
checkout with the package installed.
"""

import compileall
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: where ``bash .ci/install-azurite`` puts the emulator
LOCAL_AZURITE = REPO / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"
NO_AZURITE = "azurite-blob not found: run bash .ci/install-azurite"

#: The emulator's fixed development account (public, documented by Microsoft).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

def compile_checkout(checkout: Path = REPO) -> None:
    """Compile the bytecode of ``checkout``'s package, as pip does when it installs one.

    A load run from a checkout with PYTHONDONTWRITEBYTECODE set would
    compile every module in every process (about 0.16 s of CPU each), which
    is no part of what a load costs a user.
    """
    compileall.compile_dir(str(Path(checkout) / "clfsload"), quiet=1)


_LISTENING = re.compile(r"listens on (https?://[^\s:]+):(\d+)")


def find_azurite() -> Optional[str]:
    """Path of the azurite-blob launcher: the repository's copy first, then PATH."""
    if LOCAL_AZURITE.exists() and os.access(LOCAL_AZURITE, os.X_OK):
        return str(LOCAL_AZURITE)
    return shutil.which("azurite-blob")


@dataclass
class Azurite:
    """A running Azurite blob service: its endpoint, containers and SAS tokens signed with the dev key."""

    endpoint: str

    def _service(self):  # noqa: ANN202 - azure.storage.blob.BlobServiceClient
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.endpoint, credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY})

    def create_container(self) -> str:
        """A new container with a fresh unique name."""
        name = "b%s" % uuid.uuid4().hex[:16]
        with self._service() as svc:
            svc.create_container(name)
        return name

    def make_sas(self, container: str) -> str:
        """A container SAS with every right, valid for a day."""
        import datetime as dt

        from azure.storage.blob import generate_container_sas

        expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        return generate_container_sas(ACCOUNT_NAME, container, account_key=ACCOUNT_KEY, permission="racwdl",
                                      expiry=expiry)


class AzuriteFailed(RuntimeError):
    """Azurite did not start or does not answer; the message says what it printed."""


class AzuriteProcess:
    """azurite-blob in its own process group, listening on a free loopback port.

    Also the test suite's (tests/azurite.py), which turns :class:`AzuriteFailed` into a failed session.
    """

    def __init__(self, binary: str, location: Path) -> None:
        self.lines: List[str] = []
        self.url: Optional[str] = None
        self._found = threading.Event()
        self.proc = subprocess.Popen(
            [binary, "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", str(location),
             "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="azurite-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            match = _LISTENING.search(line)
            if match and self.url is None:
                self.url = "%s:%s" % (match.group(1), match.group(2))
                self._found.set()
        self._found.set()

    def wait_listening(self, timeout: float) -> str:
        """The base URL Azurite listens on; AzuriteFailed (the process stopped) if it does not start."""
        self._found.wait(timeout)
        if self.url is None:
            self.stop()
            raise AzuriteFailed("azurite-blob did not start within %.0f s:\n%s" % (timeout, "\n".join(self.lines[-20:])))
        return self.url

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL it if it lingers."""
        if self.proc.poll() is None:
            for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.proc.wait()
        try:  # children that outlived the leader (none expected): same group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._reader.join(5)


def wait_answering(url: str, timeout: float) -> None:
    """Poll ``url`` until any HTTP answer comes back; AzuriteFailed after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # an HTTP error status still means the server answers
        except OSError:
            if time.monotonic() > deadline:
                raise AzuriteFailed("azurite-blob at %s does not answer" % url)
            time.sleep(0.1)


def start_azurite(binary: str, base: Path, tag: str) -> Tuple[AzuriteProcess, Azurite]:
    """A fresh Azurite in ``base/azurite-TAG``; returns (process, handle).

    Azurite slows down as it fills, so each measurement gets a fresh,
    identically started instance of the same Azurite.
    """
    process = AzuriteProcess(binary, base / ("azurite-" + tag))
    try:
        url = process.wait_listening(60)
        endpoint = "%s/%s" % (url, ACCOUNT_NAME)
        wait_answering(endpoint + "?comp=list", 30)
    except AzuriteFailed as exc:
        process.stop()
        sys.exit(str(exc))
    return process, Azurite(endpoint)


def start_latency_proxy(upstream: str, latency: float) -> Tuple[subprocess.Popen, str]:
    """bench/_latency_proxy.py in a child process in front of ``upstream``; returns (process, endpoint)."""
    proc = subprocess.Popen([sys.executable, str(HERE / "_latency_proxy.py"), upstream, str(latency)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().strip()
    if not endpoint:
        sys.exit("the latency proxy did not start")
    return proc, endpoint
