"""Azurite, Microsoft's Azure Storage emulator, for the tests.

The session fixture :func:`azurite` starts ``azurite-blob`` on 127.0.0.1 (a
free port chosen by Azurite itself, ``--blobPort 0``) with its data in a
temporary folder, waits until it answers HTTP, yields an :class:`Azurite`
handle and stops the process group afterwards.

The binary is looked up at ``<repo>/.ci/node/node_modules/.bin/azurite-blob``
(installed by ``bash .ci/install-azurite``) and then on PATH. If it is
missing the fixture fails: the Azure tests are part of the suite, not
optional.

Use it from a test module with ``from azurite import azurite  # noqa: F401``
(the tests folder is on ``sys.path`` under pytest's default import mode).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Union

import pytest

# Starting and stopping the process is the benchmarks' code (bench/ is on the pytest pythonpath).
from bench._common import AzuriteFailed, AzuriteProcess, wait_answering

REPO = Path(__file__).resolve().parents[1]
LOCAL_BINARY = REPO / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"
INSTALL_HINT = (
    "azurite-blob not found; run `bash .ci/run`, or `bash .ci/install-azurite` "
    "(npm install --prefix .ci/node azurite@3.35.0), or put azurite-blob on PATH"
)

#: The emulator's fixed development account (public, documented by Microsoft).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_START_TIMEOUT_S = 60.0


def find_azurite() -> Optional[str]:
    """Path of the azurite-blob launcher: the repository's copy first, then PATH."""
    if LOCAL_BINARY.exists() and os.access(LOCAL_BINARY, os.X_OK):
        return str(LOCAL_BINARY)
    return shutil.which("azurite-blob")


@dataclass
class Azurite:
    """A running Azurite blob service and helpers to prepare containers in it."""

    endpoint: str
    port: int
    location: Path
    account_name: str = ACCOUNT_NAME
    account_key: str = ACCOUNT_KEY
    _made: List[str] = field(default_factory=list, repr=False)

    @property
    def connection_string(self) -> str:
        """A connection string with the dev account key and this endpoint."""
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
                f"AccountKey={self.account_key};BlobEndpoint={self.endpoint};")

    def service_client(self):  # noqa: ANN201 - azure.storage.blob.BlobServiceClient
        """A BlobServiceClient with the account key (for test set-up, not under test)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.endpoint, credential={"account_name": self.account_name,
                                                            "account_key": self.account_key})

    def create_container(self, name: Optional[str] = None) -> str:
        """Create a container (a fresh unique name by default) and return its name."""
        name = name or f"t{uuid.uuid4().hex[:16]}"
        with self.service_client() as svc:
            svc.create_container(name)
        self._made.append(name)
        return name

    def delete_container(self, name: str) -> None:
        """Delete a container if it exists."""
        from azure.core.exceptions import ResourceNotFoundError

        with self.service_client() as svc:
            try:
                svc.delete_container(name)
            except ResourceNotFoundError:
                pass

    def make_sas(self, container: str, permission: str = "racwdl",
                 expiry: Union[dt.datetime, dt.timedelta, None] = None,
                 start: Optional[dt.datetime] = None, policy_id: Optional[str] = None) -> str:
        """A container SAS signed with the dev key.

        *expiry*: a datetime, or a timedelta from now (default one hour; a
        negative one gives an expired token). With *policy_id* the token
        refers to a stored access policy and carries no permissions or expiry.
        """
        from azure.storage.blob import generate_container_sas

        if policy_id is not None:
            return generate_container_sas(self.account_name, container, account_key=self.account_key,
                                          policy_id=policy_id)
        now = dt.datetime.now(dt.timezone.utc)
        if expiry is None:
            expiry = dt.timedelta(hours=1)
        if isinstance(expiry, dt.timedelta):
            expiry = now + expiry
        return generate_container_sas(self.account_name, container, account_key=self.account_key,
                                      permission=permission, expiry=expiry, start=start)

    def delete_made_since(self, mark: int) -> None:
        """Delete the containers this handle created after the ``mark``-th one.

        Azurite's Put Blob scans every blob of the account, so each blob left
        behind slows every later test; conftest calls this after each test.
        """
        for name in self._made[mark:]:
            try:
                self.delete_container(name)
            except Exception:  # noqa: BLE001 - cleanup must not fail a test
                pass
        del self._made[mark:]

    def set_access_policy(self, container: str, policy_id: str, permission: str,
                          expiry: Optional[dt.timedelta] = None) -> None:
        """Store an access policy on *container* (what a SAS with ``si=`` refers to)."""
        from azure.storage.blob import AccessPolicy

        now = dt.datetime.now(dt.timezone.utc)
        policy = AccessPolicy(permission=permission, expiry=now + (expiry or dt.timedelta(hours=1)),
                              start=now - dt.timedelta(minutes=5))
        with self.service_client() as svc:
            svc.get_container_client(container).set_container_access_policy(signed_identifiers={policy_id: policy})


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A running Azurite blob service for the whole test session."""
    binary = find_azurite()
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    # Azurite keeps blob data in files: put them in memory (tmpfs) when there is one.
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        location = Path(tempfile.mkdtemp(prefix="clfsload-azurite-", dir=shm))
    else:
        location = tmp_path_factory.mktemp("azurite")
    process = AzuriteProcess(binary, location)
    try:
        try:
            base = process.wait_listening(_START_TIMEOUT_S)
            endpoint = f"{base}/{ACCOUNT_NAME}"
            wait_answering(endpoint + "?comp=list", 30.0)
        except AzuriteFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        yield Azurite(endpoint=endpoint, port=int(base.rsplit(":", 1)[1]), location=location)
    finally:
        process.stop()
        if str(location).startswith(shm):
            shutil.rmtree(location, ignore_errors=True)
