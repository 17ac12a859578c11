"""Claims on trainings (mmkgbench.claims): exclusive, released, stale ones taken over, heartbeats; and two
`run` processes on one results folder splitting a grid without training any run twice."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mmkgbench.claims import (TIMEOUT_ENV, claim, claim_holder, claim_path, claim_timeout, claims_dir,
                              process_start, stale_reason, take_claim)
from mmkgbench.grid import load_grid
from mmkgbench.results import is_done, runs_dir
from mmkgbench.runner import GridPlan, run_grid

REPO = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    """The pid of a process that has run and been reaped (so it no longer exists)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_claim(path: Path, *, pid: int, host: str, age: float = 0.0, **extra) -> Path:
    """A claim file as another process would have left it, its heartbeat `age` seconds old."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host, "started_at": "2000-01-01T00:00:00+00:00",
                                "token": "theirs", **extra}))
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_claim_is_exclusive_and_released(tmp_path):
    with claim(tmp_path, "t1") as held:
        assert held is not None and claim_path(tmp_path, "t1").is_file()
        info = json.loads(claim_path(tmp_path, "t1").read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with claim(tmp_path, "t1") as again:   # a live holder (this very process) keeps it
            assert again is None
        assert claim_holder(tmp_path, "t1").startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")
        with claim(tmp_path, "t2") as other:   # other trainings are free
            assert other is not None
    assert not claim_path(tmp_path, "t1").exists() and claim_holder(tmp_path, "t1") is None
    assert list(claims_dir(tmp_path).iterdir()) == []


def test_claim_is_released_on_an_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with claim(tmp_path, "t") as held:
            assert held is not None
            raise RuntimeError("training broke")
    assert not claim_path(tmp_path, "t").exists()
    assert take_claim(tmp_path, "t") is not None


def test_claim_of_a_dead_pid_on_this_host_is_taken_over(tmp_path):
    pid = dead_pid()
    write_claim(claim_path(tmp_path, "t"), pid=pid, host=socket.gethostname())
    with claim(tmp_path, "t") as held:
        assert held is not None and f"pid {pid} no longer runs" in held.replaced
        assert json.loads(claim_path(tmp_path, "t").read_text())["pid"] == os.getpid()
    assert not claim_path(tmp_path, "t").exists()


@pytest.mark.skipif(process_start(os.getpid()) is None, reason="no /proc/<pid>/stat here")
def test_claim_of_a_reused_pid_is_stale(tmp_path):
    # This process is alive, but it is not the process that wrote the claim: it started at another time.
    path = write_claim(claim_path(tmp_path, "t"), pid=os.getpid(), host=socket.gethostname(),
                       process_start=process_start(os.getpid()) - 1)
    assert "another process" in stale_reason(json.loads(path.read_text()), path.stat().st_mtime)
    with claim(tmp_path, "t") as held:
        assert held is not None


def test_claim_of_another_host_is_stale_only_without_heartbeat(tmp_path):
    # A pid on another machine says nothing here (this one may well be alive here): only the heartbeat counts.
    path = write_claim(claim_path(tmp_path, "t"), pid=os.getpid(), host="elsewhere.invalid", age=5)
    assert take_claim(tmp_path, "t") is None
    assert claim_holder(tmp_path, "t") == f"pid {os.getpid()} on elsewhere.invalid since 2000-01-01T00:00:00+00:00"
    write_claim(path, pid=dead_pid(), host="elsewhere.invalid", age=5)
    assert take_claim(tmp_path, "t") is None
    write_claim(path, pid=os.getpid(), host="elsewhere.invalid", age=claim_timeout() + 60)
    with claim(tmp_path, "t") as held:
        assert held is not None and "no heartbeat" in held.replaced


def test_an_empty_claim_being_written_is_held_until_the_timeout(tmp_path):
    path = claim_path(tmp_path, "t")
    path.parent.mkdir(parents=True)
    path.touch()                               # created, not filled yet
    assert take_claim(tmp_path, "t") is None
    then = time.time() - claim_timeout() - 60
    os.utime(path, (then, then))
    with claim(tmp_path, "t") as held:
        assert held is not None


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert claim_timeout() == 600
    monkeypatch.setenv(TIMEOUT_ENV, "30")
    assert claim_timeout() == 30
    for bad in ("soon", "0", "-5", "nan"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=TIMEOUT_ENV):
            claim_timeout()


def test_heartbeat_refreshes_the_claim(tmp_path, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "2")      # a heartbeat every second (the least)
    with claim(tmp_path, "t") as held:
        path = claim_path(tmp_path, "t")
        then = time.time() - 1000
        os.utime(path, (then, then))
        deadline = time.time() + 5
        while path.stat().st_mtime < time.time() - 100 and time.time() < deadline:
            time.sleep(0.1)
        assert path.stat().st_mtime > time.time() - 5
        assert stale_reason(json.loads(path.read_text()), path.stat().st_mtime) is None
        assert held is not None


def test_one_of_many_concurrent_takers_gets_a_stale_claim(tmp_path):
    write_claim(claim_path(tmp_path, "t"), pid=dead_pid(), host=socket.gethostname())
    start, got = threading.Barrier(8), []

    def taker():
        start.wait()
        got.append(take_claim(tmp_path, "t"))

    threads = [threading.Thread(target=taker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held = [c for c in got if c is not None]
    assert len(held) == 1
    assert json.loads(claim_path(tmp_path, "t").read_text())["token"] == held[0].info["token"]
    held[0].release()
    assert list(claims_dir(tmp_path).iterdir()) == []


GRID = """name = "claims-test"
models = {models}
datasets = ["synthetic_tiny"]
seeds = [0, 1]

[scenarios]
clean = [0.0]

[train]
max_epochs = 3
eval_every = 1
"""


def test_run_grid_waits_for_a_live_claim_and_takes_it_when_its_holder_dies(tmp_path):
    toml = tmp_path / "grid.toml"
    toml.write_text(GRID.format(models='["distmult"]').replace("seeds = [0, 1]", "seeds = [0]"))
    grid = load_grid(toml)
    (_, _, rid, tid, _), = GridPlan(grid).runs
    results = tmp_path / "results"
    # A live holder on this host, which dies (and is reaped: a zombie still counts as alive) once
    # run_grid has said it waits for it.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    write_claim(claim_path(results, tid), pid=holder.pid, host=socket.gethostname(),
                process_start=process_start(holder.pid))
    lines = []

    def log(line):
        lines.append(line)
        if "waiting for" in line:
            holder.kill()
            holder.wait()

    try:
        out = run_grid(grid, results, progress=False, log=log)
    finally:
        holder.kill()
        holder.wait()
    text = "\n".join(lines)
    assert f"claimed by pid {holder.pid} on {socket.gethostname()}" in text and "deferred" in text
    assert "waiting for distmult" in text and f"pid {holder.pid} no longer runs" in text
    assert out["done"] == [rid] and out["by_others"] == [] and out["trainings"] == 1 and is_done(results, rid)
    assert list(claims_dir(results).iterdir()) == []


def test_two_processes_split_a_grid(tmp_path):
    toml = tmp_path / "grid.toml"
    toml.write_text(GRID.format(models='["transe", "distmult", "complex", "rotate"]'))
    expected = GridPlan(load_grid(toml)).run_ids
    assert len(expected) == 8
    results = tmp_path / "results"
    cmd = [sys.executable, "run_bench.py", "--results", str(results), "run", "--grid", str(toml),
           "--no-report", "--no-progress"]
    # One thread each: two processes share a few cores (and torch's threads would fight over them).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text
    # Each run is stored once, and nothing of the claims or of a half-written run is left.
    assert {d.name for d in runs_dir(results).iterdir()} == expected
    assert list(claims_dir(results).iterdir()) == []
    # No run was trained twice, and both processes trained some: they split the grid.
    trained = [re.findall(r": running \((\w+)", text) for text in outputs]
    assert sorted(trained[0] + trained[1]) == sorted(expected), outputs
    assert all(trained), outputs
    summaries = [int(re.search(r"^(\d+) run\(s\) done", text, re.M).group(1)) for text in outputs]
    assert summaries == [len(t) for t in trained]
