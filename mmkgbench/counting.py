"""The counting kernels behind filtered ranks, and the choice between them by measurement.

A filtered rank needs two counts per query over its (B, E) block of scores: how many candidates
score above the target (> s*) and how many at least as high (>= s*). Three kernels compute them,
all exactly (so the choice never changes a rank; tests/test_ranking.py checks each against
`mmkgbench.ranking.ranks`):

* "compare": two comparisons and two integer sums, the textbook form. On the CPU it is the
  slowest: each comparison writes a (B, E) bool temporary and torch's bool sums convert it
  (46 ms for 128 x 100,000 scores on 2 cores, more than the score product itself).
* "sign": in place, d = sign(s - s*) (as s - s* clamped to +-STEP, the smallest difference there
  can be, which keeps NaN as NaN), then sum(d) = #(>) - #(<); clamped again at 0, sum(d) = #(>);
  #(>=) = E - #(<). Three in-place passes and two reductions, no temporaries: 4-6x faster than
  "compare" on the CPU (16-22 % of a d = 256 score product). Exact because IEEE subtraction of two
  different floats never gives 0 and keeps the sign, *provided the difference is not subnormal*
  (a flush-to-zero mode would turn it into a tie): |s*| >= TINY rules that out (the smallest
  nonzero |s - s*| is then >= 2^-124). Rows with a target nearer 0 are counted by "compare", and
  so is a block with E >= 2^24 (float sums are exact below that); a NaN score (NaN sign) is
  counted as neither, as "compare" does, by comparing the signs themselves.
* "compiled": "compare" fused by torch.compile into one pass over the block (one read, no
  temporaries): the floor on the CPU, 3-4x faster than "sign", but compiled once per process
  (2.4 s with a warm inductor cache on 2 cores, about 16 s cold) and needs a C++ compiler.

`CountingKernels.count` with mode "auto" decides by measurement, per process: until the kernel is
compiled it uses "sign" and adds up the time it spends counting; once that exceeds the cost of
compiling (COMPILE_SECONDS before it is known, the measured compile time after), it compiles (ski
rental: never more than twice the better choice's cost). Once compiled, the first block of each
size class (device, log2 of its entries) is counted by both kernels, timed, and the faster is kept
for that class. "on" and "off" force "compiled" and "sign". docs/performance.md has the figures.
"""
from __future__ import annotations

import math
import time

import torch
from torch import Tensor

# Smallest |target score| for which the "sign" kernel is exact even with flush-to-zero arithmetic.
TINY = 1e-30
# The smallest nonzero |s - s*| when |s*| >= TINY (half an ulp of 2^-100), a normal float32.
STEP = 2.0 ** -124
# float32 sums of +-STEP and 0 are exact below 2^24 entries per row.
EXACT_SUM = 2 ** 24
# What compiling the fused kernel is assumed to cost before it has been measured in this process:
# between the 2.4 s (warm cache) and 16 s (cold) measured on 2 CPU cores.
COMPILE_SECONDS = 5.0
# Scores per column slice of the "sign" kernel on the CPU: 8 MB of float32, a cache-sized share.
CACHE_ENTRIES = 2 ** 21


def count_compare(scores: Tensor, s_target: Tensor) -> tuple[Tensor, Tensor]:
    """(#scores > s*, #scores >= s*) per row, int32: scores (B, E), s_target (B, 1) -> (B,), (B,)."""
    return (scores > s_target).sum(1, dtype=torch.int32), (scores >= s_target).sum(1, dtype=torch.int32)


def count_sign(scores: Tensor, s_target: Tensor) -> tuple[Tensor, Tensor]:
    """The same counts as `count_compare`, through d = sign(s - s*) * STEP; **overwrites** `scores` with d
    (see the module docstring for why it is exact). Rows whose target is nearer 0 than TINY are
    counted by comparison first, from a copy of just those rows."""
    E = scores.shape[1]
    if scores.dtype != torch.float32 or E >= EXACT_SUM:
        return count_compare(scores, s_target)
    near_zero = s_target[:, 0].abs() < TINY
    some = bool(near_zero.any())
    if some:
        rows = near_zero.nonzero()[:, 0]
        exact = count_compare(scores[rows], s_target[rows])
    # d = s - s* clamped to [-STEP, STEP]: every nonzero difference is at least STEP in size (|s*| >= TINY),
    # so d is exactly -STEP, 0 or STEP, and NaN where the score was NaN (torch.sign would give 0 there).
    # On the CPU, column slices of about CACHE_ENTRIES scores: the passes over a slice then run in
    # cache and only the first reads memory (a 128 x 10^6 block is 512 MB).
    width = E if scores.device.type != "cpu" else max(1, CACHE_ENTRIES // max(1, scores.shape[0]))
    total = above = nan = None
    for c in range(0, E, width):
        d = scores[:, c:c + width].sub_(s_target).clamp_(-STEP, STEP)
        t = d.sum(1)                                        # STEP (#(>) - #(<)), NaN if a score was NaN
        if bool(torch.isfinite(t).all()):
            a = d.clamp_(min=0).sum(1)                      # STEP #(>)
        else:                                               # NaN scores count as neither, as compared
            a = (d > 0).sum(1).float() * STEP
            t = a - (d < 0).sum(1).float() * STEP
            nan = (d != d).sum(1, dtype=torch.int32) if nan is None else nan.add_((d != d).sum(1, dtype=torch.int32))
        total, above = (t, a) if total is None else (total.add_(t), above.add_(a))
    gt = (above / STEP).to(torch.int32)
    ge = E - ((above - total) / STEP).to(torch.int32)       # E - #(<) - #NaN
    if nan is not None:
        ge -= nan
    if some:
        gt[rows], ge[rows] = exact
    return gt, ge


class CountingKernels:
    """Per-process choice of counting kernel (module docstring). `count(scores, s_target, mode)`
    returns (gt, ge) int32 and may overwrite `scores`. State: whether the fused kernel is compiled
    (or failed to compile), its measured compile time, the time spent counting with "sign" so far,
    and the measured choice per size class. `stats()` reports them (docs, benchmarks)."""

    def __init__(self):
        self.compiled = None
        self.failed: str | None = None
        self.compile_seconds: float | None = None
        self.rent = 0.0
        self.choice: dict[tuple, str] = {}
        self.timings: dict[tuple, dict[str, float]] = {}

    def stats(self) -> dict:
        return {"compiled": self.compiled is not None, "compile_failed": self.failed,
                "compile_seconds": self.compile_seconds, "sign_seconds_before_compiling": self.rent,
                "choice": {f"{d}:2^{b}": k for (d, b), k in self.choice.items()},
                "timings": {f"{d}:2^{b}": t for (d, b), t in self.timings.items()}}

    def compile(self, device) -> bool:
        """Compile the fused kernel once (timed, on a small block of `device`); False if it cannot be."""
        if self.compiled is None and self.failed is None:
            fn = torch.compile(count_compare, dynamic=True)
            t0 = time.perf_counter()
            try:
                probe = torch.randn(3, 17, device=device)
                fn(probe, probe[:, :1])
                sync(device)
            except Exception as err:            # no C++ compiler, unsupported platform: eager only
                self.failed = f"{type(err).__name__}: {err}"[:300]
                return False
            self.compile_seconds = time.perf_counter() - t0
            self.compiled = fn
        return self.compiled is not None

    def count(self, scores: Tensor, s_target: Tensor, mode: str = "auto") -> tuple[Tensor, Tensor]:
        if mode == "off" or (mode == "auto" and self.failed is not None):
            return count_sign(scores, s_target)
        if mode == "on":
            return self.compiled(scores, s_target) if self.compile(scores.device) else count_sign(scores, s_target)
        if self.compiled is None:
            t0 = time.perf_counter()
            out = count_sign(scores, s_target)
            sync(scores.device)
            self.rent += time.perf_counter() - t0
            if self.rent >= (self.compile_seconds or COMPILE_SECONDS):
                self.compile(scores.device)
            return out
        key = (scores.device.type, int(math.log2(max(scores.numel(), 1))))
        kernel = self.choice.get(key)
        if kernel == "compiled":
            return self.compiled(scores, s_target)
        if kernel == "sign":
            return count_sign(scores, s_target)
        # First block of this size class: time both (the fused kernel first: it leaves scores intact).
        sync(scores.device)
        t0 = time.perf_counter()
        fused = self.compiled(scores, s_target)
        sync(scores.device)
        t1 = time.perf_counter()
        signed = count_sign(scores, s_target)
        sync(scores.device)
        t2 = time.perf_counter()
        if not (torch.equal(fused[0], signed[0]) and torch.equal(fused[1], signed[1])):
            raise RuntimeError("counting kernels disagree; please report this with the scores that caused it")
        self.timings[key] = {"compiled": t1 - t0, "sign": t2 - t1}
        self.choice[key] = "compiled" if t1 - t0 <= t2 - t1 else "sign"
        return fused


def sync(device) -> None:
    """Wait for queued CUDA work, so that a timing covers it (no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# One chooser per process: what it measures holds for the process's device and load.
KERNEL_CHOICE = CountingKernels()
