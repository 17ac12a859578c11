#!/usr/bin/env python
"""The GPU check's timings: one training epoch and one filtered test evaluation of every registered
model on DB15K-sized inputs, bf16 autocast off and on, with peak GPU memory; then the projected wall
time of grids at those speeds. Run by benchmarks/gpu_check.sh (which runs the CUDA tests first).

    python benchmarks/gpu_check.py [--out DIR] [--models ...] [--budget 330] [--grids paper-main ...]

Inputs: the real DB15K triples (random ones of the same sizes when ../shared/datasets is absent) and
random features of the published shapes (image 12842 x 4096, text 12842 x 768), through MoMoK's
preprocessing for MoMoK (as in benchmarks/bench_mmkgc.py). Every model runs with its registered
defaults (`run_bench.py list`), which are the literature settings the grids use.

Per model and precision: two epochs (the first pays for warm-up: cuBLAS handles, kernel caches), of
which the second is reported; two evaluations of the 9,902 test triples in both directions against
all entities (the first may compile the fused counting kernel), of which the second is reported;
peak memory = torch.cuda.max_memory_allocated over both. A model whose first epoch exceeds a fifth
of the remaining budget reports that epoch (marked "1st"). Measurements stop when `--budget` seconds
are spent; what was not measured is listed as such.

Projection (an upper bound: no early stopping): for each run of a grid, max_epochs x epoch time +
(max_epochs / eval_every) valid evaluations + one test evaluation, with the epoch time scaled from
DB15K by the data set's train triples (x its entities / DB15K's for KvsAll models, which score every
entity) and evaluation time by queries x entities. Data-set sizes come from mmkgbench.catalog.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import DB15K_SIZES, db15k, machine, sync  # noqa: E402
from mmkgbench.catalog import CATALOG  # noqa: E402
from mmkgbench.evaluate import EvalConfig, evaluate  # noqa: E402
from mmkgbench.features import momok_preprocess  # noqa: E402
from mmkgbench.grid import load_grid  # noqa: E402
from mmkgbench.model import ModelInputs  # noqa: E402
from mmkgbench.models import MODELS  # noqa: E402
from mmkgbench.ranking import KnownAnswers  # noqa: E402
from mmkgbench.train import TrainConfig, train  # noqa: E402

PUBLISHED_SHAPES = {"image": 4096, "text": 768}     # MoMoK's DB15K img_features.pth / text_features.pth
PREPROCESSED = {"momok"}                             # models whose grids load features with transform "momok"
GRIDS = ("paper-main", "momok-ablation-db15k", "momok-ablation-mkgw")


def measure(name: str, base, raw: dict, known: KnownAnswers, device, amp: bool, deadline: float) -> dict:
    """One model at one precision: {"epoch_s", "first_only", "eval_s", "peak_gb"}."""
    cls = MODELS[name]
    E = base.num_entities
    data = base
    if cls.modalities:
        data = base.replace(features=raw, present={m: np.ones(E, bool) for m in raw})
        if name in PREPROCESSED:
            data = momok_preprocess(data, dataset="DB15K")
    wanted = data.modalities if cls.modalities == ("*",) else tuple(cls.modalities)
    inputs = ModelInputs(E, 2 * data.num_relations, {m: torch.from_numpy(np.array(data.features[m])) for m in wanted},
                         {m: torch.from_numpy(np.array(data.present[m])) for m in wanted}, "zeros")
    cuda = device.type == "cuda"          # the CPU path exists for tests/test_gpu_check.py only
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    model = cls(cls.Config(), inputs, torch.Generator().manual_seed(0)).to(device)
    cfg = TrainConfig(**{**cls.train_defaults, "max_epochs": 1, "eval_every": 0, "amp": amp})
    first = train(model, data.train, data.num_relations, E, cfg, device=device, seed=0).seconds
    out = {"epoch_s": first, "first_only": True}
    if first < (deadline - time.perf_counter()) / 5:
        out = {"epoch_s": train(model, data.train, data.num_relations, E, cfg, device=device, seed=1).seconds,
               "first_only": False}
    times = []
    for _ in range(2):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and cuda):
            evaluate(model, data.test, known, num_relations=data.num_relations, cfg=EvalConfig(), device=device)
        sync(device)
        times.append(time.perf_counter() - t0)
    out["eval_s"] = times[-1]
    out["peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else float("nan")
    del model
    return out


def sizes(spec) -> tuple[int, int, int, int] | None:
    """(entities, train, valid, test) of a grid's data-set entry, from the catalog; None if unknown."""
    name = spec.get("benchmark") if isinstance(spec, dict) else spec
    for b in CATALOG.values():
        if b.name == name:
            return b.entities, b.train, b.valid, b.test
    return None


def project(grid_name: str, timings: dict, amp: bool) -> tuple[float, list[str]]:
    """Projected seconds of every run of a grid at the measured speeds, and what could not be
    projected (models not measured, data sets of unknown size). timings: (model, amp) -> measure()."""
    E0, n_tr0, n_te0 = DB15K_SIZES[0], DB15K_SIZES[2], DB15K_SIZES[4]      # what was measured
    grid = load_grid(grid_name)
    total, missing = 0.0, set()
    for cell in grid.cells:
        name = cell.base or cell.model
        t = timings.get((name, amp))
        size = sizes(cell.dataset_spec)
        if t is None or size is None:
            missing.add(name if t is None else f"{name} on {cell.dataset_spec}")
            continue
        E, n_tr, n_va, n_te = size
        cls = MODELS[name]
        tcfg = TrainConfig(**{**cls.train_defaults, **dict(cell.train_overrides)})
        epoch = t["epoch_s"] * n_tr / n_tr0 * (E / E0 if tcfg.regime == "kvsall" else 1.0)
        per_query = t["eval_s"] / (2 * n_te0 * E0)
        evals = math.ceil(tcfg.max_epochs / tcfg.eval_every) if tcfg.eval_every > 0 else 0
        total += tcfg.max_epochs * epoch + evals * per_query * 2 * n_va * E + per_query * 2 * n_te * E
    return total, sorted(missing)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--budget", type=float, default=330.0, help="seconds of measuring before it stops")
    ap.add_argument("--grids", nargs="*", default=list(GRIDS))
    ap.add_argument("--out", default=None, help="folder for gpu_check.md (default: print only)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device (a CPU build of torch, or no GPU)", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    deadline = time.perf_counter() + args.budget
    base, source = db15k()
    R = base.num_relations
    known = KnownAnswers(np.concatenate([base.train, base.valid, base.test]), R).to(device)
    rng = np.random.default_rng(0)
    raw = {m: rng.standard_normal((base.num_entities, d), dtype=np.float32) for m, d in PUBLISHED_SHAPES.items()}
    timings, lines, skipped = {}, [], []

    def render(final: bool) -> str:
        """The Markdown so far; written after every measurement, so a run cut short keeps its rows."""
        report = ["# GPU check", "", f"Machine: {machine()}", f"Inputs: {source}; random features "
                  f"{PUBLISHED_SHAPES}; each model at its registered defaults.", "",
                  "| model | precision | s / epoch | s / test eval (19,804 queries) | peak GPU GiB | note |",
                  "|---|---|---|---|---|---|", *lines, ""]
        if not final:
            report.append("(incomplete: the check was still measuring)")
        if skipped:
            report.append(f"Not measured (budget of {args.budget:g} s spent): {', '.join(skipped)}.")
        report += ["", "Projected wall time at these speeds (upper bound: every epoch, no early stopping):", "",
                   "| grid | fp32 hours | bf16 hours | not projected |", "|---|---|---|---|"]
        for g in args.grids:
            (h32, miss32), (h16, miss16) = project(g, timings, False), project(g, timings, True)
            report.append(f"| {g} | {h32 / 3600:.2f} | {h16 / 3600:.2f} | "
                          f"{', '.join(sorted(set(miss32) | set(miss16)))} |")
        text = "\n".join(report) + "\n"
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "gpu_check.md").write_text(text)
        return text

    for name in args.models:
        for amp in (False, True):
            label = "bf16" if amp else "fp32"
            if time.perf_counter() > deadline:
                skipped.append(f"{name} ({label})")
                continue
            try:
                t = measure(name, base, raw, known, device, amp, deadline)
            except torch.cuda.OutOfMemoryError as err:
                lines.append(f"| {name} | {label} | out of memory | | | {str(err).splitlines()[0][:80]} |")
                torch.cuda.empty_cache()
                continue
            timings[(name, amp)] = t
            lines.append(f"| {name} | {label} | {t['epoch_s']:.2f}{' (1st)' if t['first_only'] else ''} "
                         f"| {t['eval_s']:.2f} | {t['peak_gb']:.2f} | |")
            print(lines[-1], flush=True)
            render(final=False)
    print(render(final=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
