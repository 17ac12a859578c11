"""Shared fixtures: a seeded tiny synthetic MMKG (no files), where the real data live, an isolated cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmkgbench.synthetic import synthetic_mmkg


def tiny_mmkg(seed: int = 0):
    """12 entities, 3 relations, a few dozen triples, image (d=4) and text (d=3) features."""
    return synthetic_mmkg(num_entities=12, num_relations=3, num_triples=150, latent_dim=4, num_types=2,
                          fanout=4, modalities={"image": 4, "text": 3}, valid_frac=0.15, test_frac=0.15,
                          seed=seed, name="tiny")


@pytest.fixture(scope="session")
def tiny():
    return tiny_mmkg()


# The real benchmarks, read-only, beside the repository (CI) or wherever MMKGBENCH_SHARED_DATASETS points.
SHARED = Path(os.environ.get("MMKGBENCH_SHARED_DATASETS")
              or Path(__file__).resolve().parents[2] / "shared" / "datasets").expanduser()
needs_shared = pytest.mark.skipif(not (SHARED / "MKG-Y" / "train.txt").is_file(),
                                  reason=f"real data not found at {SHARED}")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty $MMKGBENCH_HOME, so no test reads or writes the user's cache."""
    monkeypatch.setenv("MMKGBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def train_run(model: str, dataset: str, train: dict, overrides: dict, seed: int = 0,
              scenario: tuple | None = None):
    """Train one registered model through the harness (build, seed, select on valid): its
    mmkgbench.train.TrainResult. scenario: (name, level) applied to the data first (e.g.
    ("missing", 1.0): no entity has features), with the run's seed."""
    import numpy as np
    import torch

    from mmkgbench.datasets import load_dataset
    from mmkgbench.ranking import KnownAnswers
    from mmkgbench.runner import build_model, sampler_inputs
    from mmkgbench.grid import grid_from_dict
    from mmkgbench.resolve import resolve
    from mmkgbench.train import TrainConfig
    from mmkgbench.train import train as fit
    data = load_dataset(dataset)
    if scenario is not None:
        from mmkgbench.scenarios import apply_steps
        data = apply_steps(data, [(scenario[0], scenario[1], {})], seed)
    known = KnownAnswers(np.concatenate([data.train, data.valid]), data.num_relations)
    cell = grid_from_dict({"models": [model], "datasets": [dataset], "seeds": [seed], "train": train,
                           "overrides": {model: overrides}}).cells[0]
    config = resolve(cell, data)
    torch.manual_seed(seed)
    net = build_model(cell, config, data)
    return fit(net, data.train, data.num_relations, data.num_entities, TrainConfig(**config["train"]),
               valid_triples=data.valid, known_valid=known, seed=seed, sampler_inputs=sampler_inputs(config, data))


def best_valid_mrr(model: str, dataset: str, train: dict, overrides: dict, seed: int = 0,
                   scenario: tuple | None = None) -> float:
    """The best validation MRR of `train_run`: the shared body of the learning tests."""
    return train_run(model, dataset, train, overrides, seed, scenario).best_valid["mrr"]


def learning_job(job: tuple) -> float:
    """best_valid_mrr(*job) at one thread, in whichever process runs it (a worker of best_valid_mrrs)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return best_valid_mrr(*job)
    finally:
        torch.set_num_threads(before)


def best_valid_mrrs(jobs: dict, workers: int = 2) -> dict:
    """Many learning-test trainings at once: jobs key -> (model, dataset, train, overrides, seed) ->
    key -> best validation MRR. Each runs at 1 thread, which gives the same numbers in every process
    (the learning tests' measurements were taken so), in `workers` spawned processes (at most the CPU
    count), so two cores train two models at a time; pass the longest jobs first."""
    import concurrent.futures
    import multiprocessing
    n = max(1, min(workers, os.cpu_count() or 1, len(jobs)))
    if n == 1:
        return {key: learning_job(job) for key, job in jobs.items()}
    with concurrent.futures.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(learning_job, job) for key, job in jobs.items()}
        return {key: f.result() for key, f in futures.items()}
