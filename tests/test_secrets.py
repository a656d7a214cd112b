"""No credential in any byte a load writes, whatever the credential and however the run ends.

Each test runs the real command line (``python -m clfsload``) with a
recognisable credential, then greps everything the run wrote for it:

* stdout and stderr of the process (worker processes share them);
* every file in STATE_DIR: ``state.db`` and its ``-wal``/``-shm``,
  ``output.txt``, ``problems.txt``, ``lock``;
* every blob in the container, raw and, for CLFS objects, unwrapped from
  their LZ4 envelope (the uploaded ``output.txt`` and ``problems.txt``
  included), read back from Azurite with the account key, or from the
  local folder.

A SAS is looked for whole and by its signature: as it appears in the token
(percent-encoded), decoded, encoded again (``quote``/``quote_plus``) and as
the raw HMAC bytes. A key is looked for as base64, percent-encoded and as
its decoded bytes; a connection string whole and by its key. Any ``sig=``
followed by something other than ``REDACTED`` fails too, which catches a
SAS the loader signs itself from an account key.

Azurite's development account key is public and fixed; it is still the
credential under test, and must not show. For the local-folder target a
made-up SAS checks the redaction of argv.
"""

import base64
import datetime as dt
import os
import re
import urllib.parse
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import pytest

from clfsload._native import envelope

from _inject import inject_cli
from _load import cli
from _load import local_args as _local_args
from azurite import azurite  # noqa: F401

#: A made-up SAS whose signature nothing else could contain.
FAKE_SIG = "SECRETSECRET" + base64.b64encode(b"-recognisable-signature-\xfb\xff-0123456789").decode()
FAKE_SAS = "sv=2021-08-06&sr=c&sp=racwdl&se=2099-01-01T00%3A00%3A00Z&sig=" + urllib.parse.quote(FAKE_SIG, safe="")
FAKE_KEY = base64.b64encode(b"SecretAccountKeyRecognisable-0123456789-abcdefghijklmnopqrstuvw").decode()


# --- what a secret looks like -------------------------------------------------------------


class Secret:
    """The forms of one credential to look for: text forms (case-insensitive) and binary forms."""

    def __init__(self, label: str):
        self.label = label
        self.texts: List[bytes] = []
        self.binaries: List[bytes] = []

    def add_text(self, *forms: str) -> "Secret":
        for form in forms:
            if form and form.encode() not in self.texts:
                self.texts.append(form.encode())
        return self

    @classmethod
    def sas(cls, token: str) -> "Secret":
        token = token.lstrip("?")
        raw = re.search(r"(?:^|&)sig=([^&]+)", token).group(1)
        sig = urllib.parse.unquote(raw)
        secret = cls("SAS").add_text(token, raw, sig, urllib.parse.quote(sig, safe=""), urllib.parse.quote_plus(sig),
                                     urllib.parse.quote(sig))
        secret.binaries.append(base64.b64decode(sig))
        return secret

    @classmethod
    def key(cls, key: str) -> "Secret":
        secret = cls("account key").add_text(key, urllib.parse.quote(key, safe=""), urllib.parse.quote_plus(key))
        secret.binaries.append(base64.b64decode(key))
        return secret

    @classmethod
    def connection_string(cls, text: str, key: str) -> "Secret":
        secret = cls.key(key)
        secret.label = "connection string"
        return secret.add_text(text)


_UNREDACTED_SIG = re.compile(rb"sig=(?!REDACTED)[A-Za-z0-9%+/=]{12,}", re.IGNORECASE)
_SHARED_KEY = re.compile(rb"SharedKey(?:Lite)? [^:\s]+:[A-Za-z0-9+/=]{20,}")


def leaks(written: Dict[str, bytes], secrets: Iterable[Secret]) -> List[Tuple[str, str]]:
    """(where, what) for every form of every secret found in the written bytes."""
    found = []
    for where, data in written.items():
        low = data.lower()
        for secret in secrets:
            for form in secret.texts:
                if form.lower() in low:
                    found.append((where, "%s text %r" % (secret.label, form[:12])))
            for form in secret.binaries:
                if form in data:
                    found.append((where, "%s bytes" % secret.label))
        for match in _UNREDACTED_SIG.finditer(data):
            found.append((where, "unredacted %r" % match.group(0)[:12]))
        for match in _SHARED_KEY.finditer(data):
            found.append((where, "authorization header %r" % match.group(0)[:14]))
    return found


def test_the_detector_finds_every_form():
    """The grep above finds a secret in each form it claims to look for (else a clean result proves nothing)."""
    sas = Secret.sas(FAKE_SAS)
    sig = urllib.parse.unquote(FAKE_SAS.split("sig=")[1])
    planted = {
        "token": b"x " + FAKE_SAS.encode() + b" y",
        "encoded": b"...%s..." % urllib.parse.quote(sig, safe="").lower().encode(),
        "decoded": b"signature " + sig.encode(),
        "plus": urllib.parse.quote_plus(sig).encode(),
        "raw bytes": b"\0\1" + base64.b64decode(sig) + b"\2",
        "in a CLFS blob": b"",
        "derived sig": b"GET /c?sv=1&sig=AbCdEfGhIjKlMnOp HTTP/1.1",
        "header": b"Authorization: SharedKey devstoreaccount1:QUJDREVGR0hJSktMTU5PUFFSU1RVVldY",
        "key bytes": base64.b64decode(FAKE_KEY),
    }
    wrapped: Dict[str, bytes] = {}
    _with_unwrapped("blob", envelope.wrap(b"log: " + sig.encode() * 50, True), wrapped)
    planted["in a CLFS blob"] = wrapped["blob (unwrapped)"]
    assert sig.encode() not in wrapped["blob"]  # compressed: only the unwrapped form shows it
    found = {where for where, _ in leaks(planted, [sas, Secret.key(FAKE_KEY)])}
    assert found == set(planted)
    assert leaks({"clean": b"sig=REDACTED&sv=REDACTED AccountKey=REDACTED"}, [sas]) == []


# --- what a run wrote ------------------------------------------------------------------------


def process_output(done, tag: str = "") -> Dict[str, bytes]:
    return {"stdout" + tag: done.stdout.encode(), "stderr" + tag: done.stderr.encode()}


def _with_unwrapped(label: str, data: bytes, out: Dict[str, bytes]) -> None:
    out[label] = data
    try:
        out[label + " (unwrapped)"] = envelope.unwrap(data)
    except Exception:
        pass  # not a CLFS object: a log text


def folder_files(folder: Path, label: str) -> Dict[str, bytes]:
    """Every file under ``folder`` (CLFS blobs also unwrapped)."""
    out: Dict[str, bytes] = {}
    if folder.exists():
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                _with_unwrapped("%s/%s" % (label, path.relative_to(folder)), path.read_bytes(), out)
    return out


def state_files(state: Path) -> Dict[str, bytes]:
    found = folder_files(state, "STATE_DIR")
    if state.exists():
        names = {p.name for p in state.iterdir()}
        assert {"state.db", "output.txt", "lock"} <= names, names
    return found


def container_blobs(az, container: str) -> Dict[str, bytes]:
    """Every blob of an Azurite container, read with the account key."""
    from azure.core.exceptions import ResourceNotFoundError

    out: Dict[str, bytes] = {}
    with az.service_client() as svc:
        client = svc.get_container_client(container)
        try:
            names = [b.name for b in client.list_blobs()]
        except ResourceNotFoundError:
            return out
        for name in names:
            _with_unwrapped("blob " + name, client.download_blob(name).readall(), out)
    return out


def assert_private(state: Path) -> None:
    if state.exists():
        assert os.stat(state).st_mode & 0o777 == 0o700


def tree(root: Path, bad_link: bool = True) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a\n")
    (root / "sub" / "b.txt").write_bytes(b"b\n" * 100)
    os.symlink("a.txt", root / "link")
    if bad_link:
        os.symlink("x" * 1024, root / "too-long")  # a problem: problems.txt is written and uploaded
    return root


def azure_args(az, state: Path, source: Path, container: str, credential_arg: str, *extra: str, new=True):
    return (["--new"] if new else []) + [str(state), str(source), az.endpoint, container, credential_arg, *extra]


DEBUG = ("--log_level", "debug")


# --- loads into Azurite with each kind of credential --------------------------------------------


@pytest.mark.parametrize("kind", ["sas-argv", "sas-env", "account-key-env", "connection-string-env"])
def test_a_load_and_its_resume_write_no_secret(kind, azurite, tmp_path):
    container = azurite.create_container()
    sas = azurite.make_sas(container)
    env, arg = {}, "-"
    if kind == "sas-argv":
        arg, secrets = sas, [Secret.sas(sas)]
    elif kind == "sas-env":
        env["CLFSLOAD_SAS_TOKEN"], secrets = sas, [Secret.sas(sas)]
    elif kind == "account-key-env":
        env["CLFSLOAD_ACCOUNT_KEY"], secrets = azurite.account_key, [Secret.key(azurite.account_key)]
    else:
        env["CLFSLOAD_CONNECTION_STRING"] = azurite.connection_string
        secrets = [Secret.connection_string(azurite.connection_string, azurite.account_key)]
    source, state = tree(tmp_path / "tree"), tmp_path / "state"
    options = [*DEBUG, "--azcopy", "--publish_with_errors"]
    first = cli(*azure_args(azurite, state, source, container, arg, *options), env=env)
    # One problem (the too-long symlink), published anyway: the log and problems.txt are uploaded.
    assert first.returncode == 1 and "exceeds the CLFS limit" in first.stdout, first.stdout + first.stderr
    written = {**process_output(first)}
    if kind == "sas-argv":  # the resume gets the credential again (and retries the problem)
        again = cli(*azure_args(azurite, state, source, container, arg, *options, new=False), env=env)
        assert again.returncode == 1, again.stdout + again.stderr
        written.update(process_output(again, " (resume)"))
    written.update({**state_files(state), **container_blobs(azurite, container)})
    assert {"blob output.txt", "blob problems.txt"} <= set(written)
    assert b"begin phase transfer" in written["blob output.txt"]
    assert leaks(written, secrets) == []
    assert_private(state)


# --- failures -------------------------------------------------------------------------------------


def _wrong_key(key: str) -> str:
    return base64.b64encode(b"WrongKeyRecognisable-" + base64.b64decode(key)[21:]).decode()


FAILURES = ["expired-sas", "sas-without-write", "policy-without-write", "forged-signature", "wrong-key-env",
            "wrong-key-connection-string-env"]


@pytest.mark.parametrize("kind", FAILURES)
def test_a_refused_credential_is_named_and_not_shown(kind, azurite, tmp_path):
    container = azurite.create_container()
    env, arg = {}, "-"
    if kind == "expired-sas":
        arg = azurite.make_sas(container, expiry=dt.timedelta(hours=-1))
        secrets, words = [Secret.sas(arg)], ["expired"]
    elif kind == "sas-without-write":
        arg = azurite.make_sas(container, permission="racdl")
        secrets, words = [Secret.sas(arg)], ["'w' (write) permission"]
    elif kind == "policy-without-write":  # the token does not say: the server refuses (403)
        azurite.set_access_policy(container, "nowrite", "racdl")
        arg = azurite.make_sas(container, policy_id="nowrite")
        secrets, words = [Secret.sas(arg)], ["write"]
    elif kind == "forged-signature":  # the server refuses a signature that is not its own (403)
        good = azurite.make_sas(container)
        arg = good.split("sig=")[0] + "sig=" + urllib.parse.quote(FAKE_SIG, safe="")
        secrets, words = [Secret.sas(arg), Secret.sas(good)], ["rejected"]
    elif kind == "wrong-key-env":
        env["CLFSLOAD_ACCOUNT_KEY"] = _wrong_key(azurite.account_key)
        secrets, words = [Secret.key(env["CLFSLOAD_ACCOUNT_KEY"]), Secret.key(azurite.account_key)], ["rejected"]
    else:
        wrong = _wrong_key(azurite.account_key)
        env["CLFSLOAD_CONNECTION_STRING"] = azurite.connection_string.replace(azurite.account_key, wrong)
        secrets = [Secret.connection_string(env["CLFSLOAD_CONNECTION_STRING"], wrong), Secret.key(azurite.account_key)]
        words = ["rejected"]
    state = tmp_path / "state"
    done = cli(*azure_args(azurite, state, tree(tmp_path / "tree"), container, arg, *DEBUG), env=env)
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if " ERR " in line]
    assert len(errors) == 1 and all(w in errors[0] for w in words), done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    written = {**process_output(done), **state_files(state), **container_blobs(azurite, container)}
    assert leaks(written, secrets) == []


MID_RUN_403 = """
import os
from azure.storage.blob import BlobServiceClient
ROOT = %(root)r
done = []
def after_scan(path):
    if path == ROOT and not done:
        done.append(1)
        # The stored access policy the SAS refers to goes away: every later request gets 403.
        with BlobServiceClient.from_connection_string(%(cs)r) as svc:
            svc.get_container_client(%(container)r).set_container_access_policy(signed_identifiers={})
"""


def test_a_403_in_the_middle_of_a_run_and_the_resume_write_no_secret(azurite, tmp_path):
    container = azurite.create_container()
    azurite.set_access_policy(container, "p1", "racwdl")
    revoked = azurite.make_sas(container, policy_id="p1")
    source, state = tree(tmp_path / "tree", bad_link=False), tmp_path / "state"
    hook = MID_RUN_403 % {"root": os.fsencode(str(source)), "cs": azurite.connection_string, "container": container}
    first = inject_cli(hook, *azure_args(azurite, state, source, container, revoked, *DEBUG), hook_dir=tmp_path / "h")
    assert first.returncode == 1, first.stdout + first.stderr
    errors = [line for line in first.stdout.splitlines() if " ERR " in line]
    assert len(errors) == 1 and ("rejected" in errors[0] or "permission" in errors[0]), first.stdout
    assert "Traceback" not in first.stdout + first.stderr
    # A new SAS resumes the same transfer.
    fresh = azurite.make_sas(container)
    again = cli(*azure_args(azurite, state, source, container, fresh, *DEBUG, new=False))
    assert again.returncode == 0, again.stdout + again.stderr
    written = {**process_output(first), **process_output(again, " (resume)"), **state_files(state),
               **container_blobs(azurite, container)}
    assert "blob output.txt" in written
    assert leaks(written, [Secret.sas(revoked), Secret.sas(fresh)]) == []
    assert_private(state)


# --- the local-folder target ---------------------------------------------------------------------


def local_args(state: Path, source: Path, out: Path, credential_arg: str = "-", *extra: str):
    return _local_args(state, source, out, *extra, credential=credential_arg)


def test_a_sas_given_to_a_local_target_is_refused_without_showing_it(tmp_path):
    state, out = tmp_path / "state", tmp_path / "out"
    done = cli(*local_args(state, tree(tmp_path / "tree"), out, FAKE_SAS, *DEBUG))
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if " ERR " in line]
    assert len(errors) == 1 and "takes no credential; pass '-'" in errors[0], done.stdout
    assert not state.exists()
    written = {**process_output(done), **folder_files(out, "target")}
    assert leaks(written, [Secret.sas(FAKE_SAS)]) == []


@pytest.mark.parametrize("variable", ["CLFSLOAD_SAS_TOKEN", "CLFSLOAD_ACCOUNT_KEY", "CLFSLOAD_CONNECTION_STRING"])
def test_a_credential_in_the_environment_is_ignored_by_a_local_load(variable, tmp_path):
    value = {"CLFSLOAD_SAS_TOKEN": FAKE_SAS, "CLFSLOAD_ACCOUNT_KEY": FAKE_KEY,
             "CLFSLOAD_CONNECTION_STRING": "AccountName=someaccount;AccountKey=%s;EndpointSuffix=core.windows.net"
                                           % FAKE_KEY}[variable]
    state, out = tmp_path / "state", tmp_path / "out"
    done = cli(*local_args(state, tree(tmp_path / "tree"), out, "-", *DEBUG, "--publish_with_errors"),
               env={variable: value})
    assert done.returncode == 1 and "exceeds the CLFS limit" in done.stdout, done.stdout + done.stderr
    assert "a file: target takes no credential; $%s ignored" % variable in done.stdout
    written = {**process_output(done), **state_files(state), **folder_files(out, "target")}
    assert {"target/c/output.txt", "target/c/problems.txt"} <= set(written)
    assert leaks(written, [Secret.sas(FAKE_SAS), Secret.key(FAKE_KEY).add_text(value)]) == []
    assert_private(state)


SWAPPED = "looks like a credential (a SAS token or an account key); the arguments are STATE_DIR SOURCE ACCOUNT " \
          "CONTAINER SAS, in that order"


@pytest.mark.parametrize("mistake", ["sas-twice", "sas-as-an-option-value", "key-as-an-extra-word",
                                     "sas-as-local-container", "key-as-azure-container", "sas-as-account",
                                     "sas-as-source"])
def test_a_usage_error_does_not_echo_a_credential(mistake, tmp_path):
    state, source, out = tmp_path / "state", tree(tmp_path / "tree"), tmp_path / "out"
    out.mkdir()
    base = [str(state), str(source), "file:" + str(out), "c"]
    azure = "http://127.0.0.1:10000/devstoreaccount1"
    args, expect = {
        "sas-twice": (["--new", *base, FAKE_SAS, FAKE_SAS], "unrecognized arguments"),
        "sas-as-an-option-value": (["--new", *base, "-", "--max_errors", FAKE_SAS], "argument --max_errors"),
        "key-as-an-extra-word": (["--new", *base, "-", FAKE_KEY], "unrecognized arguments"),
        # Swapped arguments: a file: target would make a folder named after the SAS, Azure quote the key.
        "sas-as-local-container": (["--new", *base[:3], FAKE_SAS, "c"], "CONTAINER " + SWAPPED),
        "key-as-azure-container": (["--new", *base[:2], azure, FAKE_KEY, "c"], "CONTAINER " + SWAPPED),
        "sas-as-account": (["--new", *base[:2], FAKE_SAS, "c", "-"], "ACCOUNT " + SWAPPED),
        "sas-as-source": (["--new", base[0], FAKE_SAS, *base[2:], "-"], "SOURCE " + SWAPPED),
    }[mistake]
    done = cli(*args)
    assert done.returncode == 2
    assert expect in done.stderr and "usage: CLFSLoad.py" in done.stderr
    assert not state.exists() and os.listdir(out) == []
    assert leaks(process_output(done), [Secret.sas(FAKE_SAS), Secret.key(FAKE_KEY)]) == []


def test_the_files_in_the_state_dir_are_private(tmp_path):
    state, out = tmp_path / "state", tmp_path / "out"
    done = cli(*local_args(state, tree(tmp_path / "tree"), out))
    assert done.returncode == 1 and (state / "problems.txt").exists()
    assert os.stat(state).st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in state.iterdir()}
    assert modes["output.txt"] == 0o600 and modes["lock"] == 0o600
    assert {name: mode for name, mode in modes.items() if mode & 0o077} == {}
