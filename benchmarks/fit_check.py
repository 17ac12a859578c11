"""Does a model fit its own training triples? Train MRR beside valid MRR during one training.

    python3 benchmarks/fit_check.py tucker MKG-W --epochs 16 --every 4 [--threads 2] [--sample 2665]

A diagnostic for docs/evidence.md: when valid MRR stalls, a train MRR far above it means the model
memorises (overfits); a train MRR as low as valid means it has not fitted the graph at all (it
underfits or is stuck). A fixed random sample of train triples (as many as valid has, by default) is
ranked, filtered against train + valid, at every evaluation through the training loop's audit hook,
which the loop never reads (selection stays on valid). Prints one JSON line per evaluation. The
benchmark must be in the cache (`run_bench.py data fetch NAME`); the model's literature defaults are
used, as a grid would.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmkgbench.datasets import load_benchmark  # noqa: E402
from mmkgbench.evaluate import EvalConfig, evaluate  # noqa: E402
from mmkgbench.models import ModelInputs, get_model  # noqa: E402
from mmkgbench.ranking import KnownAnswers  # noqa: E402
from mmkgbench.train import TrainConfig, train  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("dataset")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample", type=int, default=0, help="train triples ranked (0 = as many as valid)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)                 # dropout draws from the global RNG, as in the runner
    data = load_benchmark(args.dataset)
    E, R = data.num_entities, data.num_relations
    cls = get_model(args.model)
    if cls.modalities:
        raise SystemExit(f"{args.model} reads modality features; this check runs structure-only models")
    model = cls(cls.Config(), ModelInputs(E, 2 * R), torch.Generator().manual_seed(args.seed))
    n = args.sample or len(data.valid)
    sample = data.train[np.random.default_rng(args.seed).choice(len(data.train), min(n, len(data.train)), replace=False)]
    known = KnownAnswers(np.concatenate([data.train, data.valid]), R)
    cfg = TrainConfig(**{**dict(cls.train_defaults), "max_epochs": args.epochs, "eval_every": args.every,
                         "patience": args.epochs, "threads": args.threads})
    t0 = time.perf_counter()

    def audit(epoch):
        m = evaluate(model, sample, known, num_relations=R, cfg=EvalConfig(compile="off")).metrics["both"]
        return [{"epoch": epoch, "train_mrr": m["mrr"], "train_hits@10": m["hits@10"]}]

    result = train(model, data.train, R, E, cfg, valid_triples=data.valid, known_valid=known,
                   eval_cfg=EvalConfig(compile="off"), seed=args.seed, audit=audit)
    fitted = {rec["epoch"]: rec for rec in result.audit}
    for row in result.history:
        if row["epoch"] in fitted:
            print(json.dumps({**fitted[row["epoch"]], "valid_mrr": row["valid_mrr"], "loss": row["loss"]}))
    print(json.dumps({"model": args.model, "dataset": args.dataset, "sample": len(sample),
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
