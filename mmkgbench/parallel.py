"""Split a loop of small CPU tensor operations across threads: one synchronisation per loop, not per operation.

Some of our fast paths are loops over cache-sized blocks (the masked core contraction of TuckER and
MoMoK: 128 blocks of 8 queries per decision; the 1-vs-all distances of TransE, RotatE and PairRE:
thousands of blocks of a few entities). Left to torch, every operation in such a loop is an OpenMP
parallel region of its own, ending in a barrier where the calling thread waits for the others. On
an idle machine that costs little. On a shared one it is a collapse: when the second thread's core
is busy with another process, each of thousands of barriers waits for the scheduler to give it a
time slice, and OpenMP's waiting threads spin, taking CPU from the thread they wait for. Measured
on 2 cores, one MoMoK decision's forward and backward pass took 0.55 s alone and 6.5-22 s beside a
second process doing the same (docs/performance.md).

`split_run(n, fn, align)` instead partitions range(n) into one contiguous part per thread (torch's
intra-op thread count of the caller, i.e. `TrainConfig.threads` inside a run) and runs fn(lo, hi)
for each part in its own worker thread, with torch's intra-op parallelism at one thread there. The
block loop inside a part runs without any barrier; the caller waits once, at the end. Beside a
second process doing the same, the decision above took 1.06-1.13 s: its fair share.

Results do not depend on the split: parts are aligned to the loop's block size, so each block is
the one the sequential loop would have computed, and callers give each part disjoint outputs (or
disjoint columns of a shared output, as the contraction's weight gradient does), never partial sums
that would have to be added in another order. Grad mode and inference mode are thread-local in
torch: the caller's are set in each worker. CUDA tensors and single-threaded callers run inline.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()
_worker = threading.local()


def _one_thread() -> None:
    """torch at one intra-op thread in this OS thread (OpenMP and MKL keep that per thread). torch
    initialises a thread's count lazily, from the process-wide value, at its first query: query
    first, or that late initialisation would undo the setting."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _init_worker() -> None:
    _one_thread()
    _worker.active = True


def pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of `threads` workers, created on first use and kept."""
    with _lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="mmkgbench-split",
                                                 initializer=_init_worker)
        return _pools[threads]


def parts(n: int, threads: int, align: int = 1) -> list[tuple[int, int]]:
    """range(n) as up to `threads` contiguous (lo, hi) parts of nearly equal size, each boundary a
    multiple of `align`; empty parts are left out."""
    blocks = -(-n // max(1, align))
    bounds = [min(n, (i * blocks // threads) * align) for i in range(threads + 1)]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def split_run(n: int, fn, *, align: int = 1, device: torch.device | str = "cpu") -> list:
    """[fn(lo, hi) for each part of range(n)], the parts run in parallel worker threads (module
    docstring); results in part order. Inline, as one part, on CUDA, with one thread, inside a worker."""
    threads = torch.get_num_threads()
    if torch.device(device).type != "cpu" or threads <= 1 or getattr(_worker, "active", False) or n <= align:
        return [fn(0, n)]
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def task(bounds):
        _one_thread()                     # a run's torch.set_num_threads in the caller must not leak in
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return fn(*bounds)

    return list(pool(threads).map(task, parts(n, threads, align)))
