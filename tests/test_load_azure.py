"""End-to-end loads into Azure Blob storage, played by Azurite on loopback.

The golden trees go through ``python -m clfsload`` with each kind of
credential, and come back canonical-equal to the original tool's containers.
The failures a user meets with Azure (missing container, a SAS without a
permission, an expired one) stop the run at once with one clear line, exit
code 1, and no secret in anything printed.
"""

import datetime as dt
import os
import random

import pytest

from clfsload.clfs.constants import Btype
from clfsload.clfs.container import Container, parse_blob_name
from clfsload.clfs.decode import decode_payload
from clfsload.clfs.objects import final_root_name
from clfsload.targets import open_target

from _load import TargetSource, assert_matches_golden, cli
from _trees import GOLDEN_RUNS, golden_dir, source_trees  # noqa: F401
from azurite import azurite  # noqa: F401


def azure_load(az, state, source, container, credential_arg, *extra, new=True, env=None, timeout=300):
    args = (["--new"] if new else []) + [str(state), str(source), az.endpoint, container, credential_arg, *extra]
    return cli(*args, env=env, timeout=timeout)


def read_back(az, container):
    return TargetSource(open_target(az.endpoint, container, az.connection_string))


@pytest.mark.parametrize("golden", sorted(GOLDEN_RUNS))
def test_golden_tree_through_azurite(golden, azurite, source_trees, tmp_path):
    tree, preserve, compress = GOLDEN_RUNS[golden]
    container = azurite.create_container()
    extra = ["--preserve_hardlinks", "1" if preserve else "0", "--compression", "LZ4" if compress else "DISABLED"]
    done = azure_load(azurite, tmp_path / "state", source_trees / tree, container, azurite.make_sas(container), *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_matches_golden(golden_dir(golden), read_back(azurite, container), compressed=compress)


@pytest.mark.parametrize("kind", ["sas-file", "sas-env", "account-key-env", "connection-string-env"])
def test_every_credential_kind_loads(kind, azurite, source_trees, tmp_path):
    container = azurite.create_container()
    sas = azurite.make_sas(container)
    env, arg, extra = {}, "-", []
    if kind == "sas-file":
        (tmp_path / "sas").write_text("?" + sas + "\n")
        extra = ["--sas_token_file", str(tmp_path / "sas")]
    elif kind == "sas-env":
        env["CLFSLOAD_SAS_TOKEN"] = sas
    elif kind == "account-key-env":
        env["CLFSLOAD_ACCOUNT_KEY"] = azurite.account_key
    else:
        env["CLFSLOAD_CONNECTION_STRING"] = azurite.connection_string
    done = azure_load(azurite, tmp_path / "state", source_trees / "special", container, arg, *extra, env=env)
    assert done.returncode == 0, done.stdout
    for secret in (sas.split("sig=")[1][:20], azurite.account_key[:20]):
        assert secret not in done.stdout + done.stderr
    assert Container(read_back(azurite, container)).finished


def _error_line(done):
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if " ERR " in line]
    assert len(errors) == 1, done.stdout
    return errors[0]


def test_missing_container_stops_at_once(azurite, tmp_path):
    (tmp_path / "tree").mkdir()
    sas = azurite.make_sas("nosuchcontainer")
    line = _error_line(azure_load(azurite, tmp_path / "state", tmp_path / "tree", "nosuchcontainer", sas))
    assert "nosuchcontainer" in line and "does not exist" in line
    assert sas.split("sig=")[1][:10] not in line
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("permission, missing", [("racdl", "write"), ("racwd", "list"), ("rcwl", "delete")])
def test_sas_without_a_permission_names_it(permission, missing, azurite, tmp_path):
    (tmp_path / "tree").mkdir()
    container = azurite.create_container()
    sas = azurite.make_sas(container, permission=permission)
    line = _error_line(azure_load(azurite, tmp_path / "state", tmp_path / "tree", container, sas))
    assert "SAS" in line and missing in line.lower()
    assert sas.split("sig=")[1][:10] not in line


def test_expired_sas_is_named(azurite, tmp_path):
    (tmp_path / "tree").mkdir()
    container = azurite.create_container()
    sas = azurite.make_sas(container, expiry=dt.timedelta(hours=-1))
    line = _error_line(azure_load(azurite, tmp_path / "state", tmp_path / "tree", container, sas))
    assert "expired" in line.lower()


def test_non_empty_container_with_new(azurite, tmp_path):
    (tmp_path / "tree").mkdir()
    container = azurite.create_container()
    with azurite.service_client() as svc:
        svc.get_blob_client(container, "existing.txt").upload_blob(b"x")
    line = _error_line(azure_load(azurite, tmp_path / "state", tmp_path / "tree", container, azurite.make_sas(container)))
    assert "is not empty" in line


def test_resume_after_a_new_sas(azurite, source_trees, tmp_path):
    container = azurite.create_container()
    done = azure_load(azurite, tmp_path / "state", source_trees / "basic", container, azurite.make_sas(container))
    assert done.returncode == 0
    # The SAS is not stored: a resume takes a fresh one.
    again = azure_load(azurite, tmp_path / "state", source_trees / "basic", container, azurite.make_sas(container), new=False)
    assert again.returncode == 0 and "already completed" in again.stdout
    with open(tmp_path / "state" / "state.db", "rb") as f:
        assert b"sig=" not in f.read()


def test_thousands_of_files(azurite, tmp_path):
    # 3,000 files in 30 directories: enough to keep every worker and many
    # uploads busy. The 20,000-file load lives in bench/load_small_files.py;
    # here it would cost CI ten minutes, because Azurite slows down as a
    # container fills (about 60-200 PUT/s).
    dirs, per_dir = 30, 100
    tree = tmp_path / "tree"
    for d in range(dirs):
        sub = tree / ("dir%03d" % d)
        sub.mkdir(parents=True)
        for f in range(per_dir):
            (sub / ("file%03d-%03d.txt" % (d, f))).write_bytes(os.urandom(16) * (64 + (d * 100 + f) % 448))
    container = azurite.create_container()
    done = azure_load(azurite, tmp_path / "state", tree, container, azurite.make_sas(container), timeout=900)
    assert done.returncode == 0, done.stdout[-2000:]
    # Check the listing, and decode a sample of inodes against the files they hold.
    target = open_target(azurite.endpoint, container, azurite.connection_string)
    names = sorted(target.list_names())
    parsed = [parse_blob_name(n) for n in names]
    inodes = [p for p in parsed if p is not None and p.btype == Btype.REG]
    assert len(inodes) == dirs * per_dir and len([p for p in parsed if p is not None and p.btype == Btype.DIR]) == dirs + 1
    assert final_root_name() in names and not [n for n in names if n.startswith("tmp")]
    assert "output.txt" in names
    files = {p.name.encode(): p for p in tree.rglob("*.txt")}
    for blob in random.Random(7).sample(inodes, 50):
        obj = decode_payload(target.get(blob.blob), blob.blob)
        assert obj.data == files[obj.name].read_bytes()
    target.close()
