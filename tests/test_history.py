"""Dry-run time estimates from the speeds of earlier loads (clfsload.driver.history)."""

import json

from clfsload.driver import history

from _load import cli


def test_record_keeps_meaningful_phases_only(tmp_path):
    path = str(tmp_path / "h" / "history.json")
    assert not history.record("local", 1000, 10**6, 1.0, path)  # too short to mean anything
    assert history.record("local", 10000, 4 * 10**7, 10.0, path)
    runs = json.loads(open(path).read())
    assert runs == [{"kind": "local", "when": runs[0]["when"], "objects_per_second": 1000.0,
                     "bytes_per_second": 4e6, "mean_file_bytes": 4000.0}]
    for _ in range(history.KEEP + 5):
        history.record("azure", 10, 10, 6.0, path)
    assert len(json.loads(open(path).read())) == history.KEEP


def test_estimate_uses_runs_of_the_same_kind_and_similar_files(tmp_path):
    path = str(tmp_path / "history.json")
    assert history.estimate("local", 100, 100, path) is None
    history.record("local", 10000, 10**7, 10.0, path)  # 1000 obj/s, 1 MB/s, 1 KB files
    history.record("local", 100, 10**10, 10.0, path)  # 10 obj/s, 1 GB/s, 100 MB files
    history.record("azure", 100, 10**5, 10.0, path)
    small = history.estimate("local", 5000, 5 * 10**6, path)  # 1 KB files: the first run only
    assert small.runs == 1 and small.seconds == 5.0
    big = history.estimate("local", 10, 10**9, path)  # 100 MB files: the second
    assert big.runs == 1 and big.seconds == 1.0
    odd = history.estimate("local", 10, 10**5, path)  # 10 KB files: no close run, all of that kind
    assert odd.runs == 2
    assert history.describe(small) == "about 0:00:05 (from 1 earlier run at 1000 objects/s, 1.0 MB/s)"


def test_dry_run_prints_the_estimate(tmp_path):
    hist = tmp_path / "history.json"
    history.record("local", 1000, 10**6, 10.0, str(hist))  # 100 obj/s, 0.1 MB/s
    src = tmp_path / "src"
    src.mkdir()
    for i in range(49):
        (src / ("f%d" % i)).write_bytes(b"z" * 1000)
    (tmp_path / "out").mkdir()
    done = cli("--new", str(tmp_path / "state"), str(src), "file:" + str(tmp_path / "out"), "c", "-", "--dry_run",
               env={"CLFSLOAD_HISTORY": str(hist)})
    assert done.returncode == 0, done.stdout
    # 50 objects at 100 obj/s, 49,000 bytes at 0.1 MB/s: the byte limit wins, half a second
    assert "dry run: estimated transfer time about 0:00:00 (from 1 earlier run at 100 objects/s, 0.1 MB/s)" in done.stdout


def test_dry_run_counting_reports_unreadable_entries_and_goes_on(tmp_path, monkeypatch, caplog):
    import logging
    import os

    from clfsload.driver import dryrun

    for d in ("ok", "locked", "ok2"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f").write_bytes(b"x" * 10)
    real_scandir = os.scandir

    def scandir(path):
        if os.fsdecode(path).endswith("/locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(dryrun.os, "scandir", scandir)
    with caplog.at_level(logging.WARNING):
        objects, size, unreadable = dryrun.count_tree(str(tmp_path), False, logging.getLogger("t"))
    # root + 3 directories + the 2 readable files; the locked one is reported, not fatal
    assert (objects, size, unreadable) == (6, 20, 1)
    assert any("locked" in r.getMessage() and "permission denied" in r.getMessage() for r in caplog.records)
