"""Shared helpers of the benchmark scripts: DB15K-sized inputs and a machine description."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import mmkgbench  # noqa: F401  (first: it sets OpenMP's passive wait policy before torch loads, as run_bench.py does)
import numpy as np
import torch

from mmkgbench.counting import sync  # noqa: F401  (re-exported for the benchmark scripts)
from mmkgbench.data import MMKG
from mmkgbench.loaders import load_momok

SHARED = Path(os.environ.get("MMKGBENCH_SHARED_DATASETS",
                             Path(__file__).resolve().parents[2] / "shared" / "datasets"))
# DB15K as published (entities, relations, train, valid, test): the fallback when the real files are absent.
DB15K_SIZES = (12842, 279, 79222, 9904, 9902)


def db15k(seed: int = 0) -> tuple[MMKG, str]:
    """The real DB15K triples when ../shared/datasets is there, else random triples of the same sizes."""
    folder = SHARED / "DB15K"
    if (folder / "train.txt").is_file():
        return load_momok(folder, name="DB15K"), f"DB15K triples from {folder}"
    E, R, n_tr, n_va, n_te = DB15K_SIZES
    rng = np.random.default_rng(seed)
    split = lambda n: np.stack([rng.integers(E, size=n), rng.integers(R, size=n), rng.integers(E, size=n)], 1)  # noqa: E731
    data = MMKG("DB15K-random", tuple(map(str, range(E))), tuple(map(str, range(R))), split(n_tr), split(n_va),
                split(n_te))
    return data, "random triples with DB15K's sizes (real DB15K not found)"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
            f"{gpu}, Python {platform.python_version()}")
