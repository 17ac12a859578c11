"""Claims on trainings, so several `run` processes (or machines sharing a results folder) split a grid.

Before a process trains a training group (mmkgbench.resolve.training_id) it takes the group's claim:
the file `<root>/claims/<training_id>.claim`, created with O_CREAT|O_EXCL (exactly one creator wins,
also on NFSv3 and later) and holding JSON {training_id, pid, host, started_at, process_start, token,
heartbeat_s}. While the claim is held a daemon thread touches the file every `heartbeat_interval`
(the timeout / 20, at least 1 s), so the file's mtime is the holder's heartbeat. The claim is removed
when the training ends, however it ends.

A claim is stale, and the next process that wants it takes it over, when
  * it was taken on this host and its pid no longer runs, or runs but started at another time than
    the claim records (the pid was reused; Linux /proc/<pid>/stat field 22), or
  * its heartbeat is older than the timeout, whatever host took it: the only test that works for a
    process on another machine. The timeout is 10 minutes; the environment variable
    MMKGBENCH_CLAIM_TIMEOUT (seconds) changes it. Processes sharing a folder should agree on it, and
    their clocks should agree to well within it.

A stale claim is removed only by the holder of its break lock (`<claim>.break`, also taken with
O_EXCL), which judges the claim again before removing it, so of many processes that find it stale
exactly one removes it and all then race for the claim itself with O_EXCL. Claims save work, they do not guard results: runs are stored atomically
(mmkgbench.results.write_run), so if a claim is ever lost (a race of microseconds, or a holder frozen
for longer than the timeout) a run is trained twice and stored once, never corrupted.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

TIMEOUT_ENV = "MMKGBENCH_CLAIM_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
WAIT_POLL_S = 2.0          # how often a process waiting for another's training looks again


def claims_dir(root) -> Path:
    """The folder of the claims under a results folder."""
    return Path(root) / "claims"


def claim_path(root, training_id: str) -> Path:
    """The claim file of one training."""
    return claims_dir(root) / f"{training_id}.claim"


def claim_timeout() -> float:
    """Seconds without a heartbeat after which a claim is stale: $MMKGBENCH_CLAIM_TIMEOUT, else 600.

    Raises ValueError for a value that is not a number of seconds > 0, rather than guessing.
    """
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:                      # also catches nan
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {raw!r}")
    return value


def heartbeat_interval(timeout: float) -> float:
    """Seconds between two heartbeats of a holder: a twentieth of the timeout, at least 1 s."""
    return max(1.0, timeout / 20)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (pids <= 0 never do: they name groups)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                # it exists, owned by another user
        return True
    except OverflowError:
        return False
    return True


def process_start(pid: int) -> int | None:
    """When the process `pid` started, in clock ticks since boot (Linux /proc/<pid>/stat field 22);
    None where that cannot be read (no such process, no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2, the command name, may hold spaces and parentheses: count the fields after its last ")",
    # which start at field 3.
    try:
        return int(stat[stat.rindex(")") + 1:].split()[22 - 3])
    except (ValueError, IndexError):
        return None


def read_claim(path) -> dict | None:
    """The JSON of a claim file; None when it is absent, empty or half-written."""
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def describe(info: dict | None) -> str:
    """Who a claim's JSON says holds it: "pid N on HOST since T"."""
    if not info:
        return "a process still writing its claim"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('started_at')}"


def stale_reason(info: dict | None, mtime: float, *, timeout: float | None = None,
                 now: float | None = None) -> str | None:
    """Why a claim with this JSON and file mtime is stale; None while its holder counts as alive."""
    timeout = claim_timeout() if timeout is None else timeout
    age = (time.time() if now is None else now) - mtime
    if age > timeout:
        return f"no heartbeat for {age:.0f} s (timeout {timeout:g} s)"
    if info is None:
        return None                        # created and not filled yet (or unreadable): the timeout decides
    if info.get("host") != socket.gethostname():
        return None                        # another machine's pids say nothing here: the heartbeat decides
    pid = info.get("pid")
    if not pid_alive(pid):
        return f"pid {pid} no longer runs"
    recorded, current = info.get("process_start"), process_start(pid)
    if recorded is not None and current is not None and recorded != current:
        return f"pid {pid} now belongs to another process"
    return None


def claim_holder(root, training_id: str) -> str | None:
    """Who holds the claim on `training_id` ("pid N on HOST since T"); None when nobody does."""
    path = claim_path(root, training_id)
    if not path.exists():
        return None
    return describe(read_claim(path))


class Claim:
    """A claim this process holds. Its heartbeat runs from a daemon thread until `release()`.

    path: the claim file; info: its JSON; replaced: why the stale claim this one replaced was stale
    (with who held it), None when there was none.
    """

    def __init__(self, path: Path, info: dict, timeout: float, replaced: str | None = None):
        self.path, self.info, self.timeout, self.replaced = Path(path), info, timeout, replaced
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"claim heartbeat {self.path.stem[:12]}",
                                        daemon=True)
        self._thread.start()

    def _beat(self):
        while not self._stop.wait(heartbeat_interval(self.timeout)):
            self.refresh()

    def refresh(self) -> bool:
        """Touch the claim file now (the heartbeat); returns False when it is gone."""
        try:
            os.utime(self.path)
        except OSError:
            return False
        return True

    def release(self) -> bool:
        """Stop the heartbeat and remove the claim if it is still this one; returns whether it was."""
        self._stop.set()
        self._thread.join(timeout=10)
        token = self.info["token"]
        # Only our own claim is removed: had ours been taken over as stale (this process frozen for
        # longer than the timeout), the file is now another process's live claim.
        return _remove_if(self.path, lambda info, mtime: info is not None and info.get("token") == token, wait_s=5.0)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


BREAK_STALE_S = 30.0       # a break lock this old was left by a process that died while holding it


def _remove_if(path: Path, judge, *, wait_s: float = 0.0) -> bool:
    """Remove the claim file `path` if `judge(info, mtime)` holds for it; returns whether this call did.

    Removing is serialised by a break lock, `<claim>.break`, created with O_CREAT|O_EXCL: only its
    holder judges and removes the claim, so of many processes that find one stale claim at once
    exactly one removes it, and none removes the fresh claim a winner created after it (which a
    rename-aside-and-judge scheme cannot rule out: while the file is aside, a third process can
    create a new claim). A process that finds the break lock taken leaves the removal to its holder
    (it retries for up to `wait_s` seconds first); a break lock older than BREAK_STALE_S, whose holder
    died within the milliseconds it holds it, is removed.
    """
    lock = path.with_name(path.name + ".break")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > BREAK_STALE_S:
                    lock.unlink(missing_ok=True)
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
    try:
        os.close(fd)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return False
        if not judge(read_claim(path), mtime):
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        lock.unlink(missing_ok=True)


def take_claim(root, training_id: str, *, timeout: float | None = None) -> Claim | None:
    """Claim `training_id` under `root` for this process; returns the held Claim (its heartbeat
    running), or None when a live holder has it. A stale claim is removed and taken over."""
    timeout = claim_timeout() if timeout is None else timeout
    path = claim_path(root, training_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    replaced = None
    for _ in range(3):                     # a few races with other takers, then leave it to them
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:      # released just now: try again
                continue
            info = read_claim(path)
            reason = stale_reason(info, mtime, timeout=timeout)
            if reason is None:
                return None
            if _remove_if(path, lambda i, m: stale_reason(i, m, timeout=timeout) is not None):
                replaced = f"{describe(info)}: {reason}"
            continue
        info = {"training_id": training_id, "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "process_start": process_start(os.getpid()), "token": uuid.uuid4().hex,
                "heartbeat_s": heartbeat_interval(timeout)}
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(info, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            path.unlink(missing_ok=True)   # a claim nobody will fill or release would block the training
            raise
        return Claim(path, info, timeout, replaced)
    return None


@contextlib.contextmanager
def claim(root, training_id: str, *, timeout: float | None = None):
    """`with claim(root, tid) as held:` yields the Claim when this process took it, None when another
    live process holds it; a claim taken is released on leaving the block, also on an exception."""
    held = take_claim(root, training_id, timeout=timeout)
    try:
        yield held
    finally:
        if held is not None:
            held.release()
