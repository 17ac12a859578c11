"""The audit protocol: one training gives the harness rows and, from test ranked at every evaluation
for audit only, the rows of the reference and openke conventions. Selection never reads the audit."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import mmkgbench.runner as run_mod
from mmkgbench.conventions import AUDIT_USE, DERIVED_NOTE, derived_metrics
from mmkgbench.evaluate import EvalConfig
from mmkgbench.grid import grid_from_dict
from mmkgbench.models import MODELS
from mmkgbench.model import ModelInputs
from mmkgbench.protocol import AUDIT, OPENKE, PROTOCOL, REFERENCE
from mmkgbench.ranking import KnownAnswers
from mmkgbench.results import AUDIT_FILE, check_run, load_audit, load_per_query, load_rows, runs_dir
from mmkgbench.runner import run_grid
from mmkgbench.train import TrainConfig, train

GRID = {"models": ["tucker", "transe"], "datasets": ["synthetic_tiny"], "seeds": [0],
        "train": {"max_epochs": 6, "eval_every": 2, "batch_size": 64, "num_negatives": 8, "lr": 1e-2},
        "overrides": {"transe": {"dim": 8}, "tucker": {"entity_dim": 8, "relation_dim": 4}}}
KEYS = ["model", "split", "side", "metric"]


def quiet(*_):
    pass


def run(tmp_path, name, **spec):
    root = tmp_path / name
    out = run_grid(grid_from_dict({**GRID, **spec}), root, device=torch.device("cpu"), progress=False, log=quiet)
    assert not out["failed"]
    return root, load_rows(root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The audit grid, and the protocols it stands in for, run directly on the same seeds."""
    tmp = tmp_path_factory.mktemp("audit")
    return {"audit": run(tmp, "audit", protocol="audit"),
            # the harness trained as the audit trains: never stopping early
            "harness": run(tmp, "harness", train={**GRID["train"], "patience": 100}),
            "reference": run(tmp, "reference", protocol="reference"),
            "openke": run(tmp, "openke", protocol="openke")}


def values(rows, protocol):
    sel = rows[rows["protocol"] == protocol]
    return sel.set_index(KEYS)["value"].sort_index()


def test_audit_harness_rows_equal_a_harness_run_without_early_stopping(runs):
    (root_a, audit), (root_h, harness) = runs["audit"], runs["harness"]
    a, h = audit[audit["source"] == "bench"], harness
    assert set(a["protocol"]) == {PROTOCOL} and set(h["protocol"]) == {PROTOCOL}
    pd.testing.assert_series_equal(values(a, PROTOCOL), values(h, PROTOCOL))
    for model in GRID["models"]:
        ra, rh = (r[r["model"] == model] for r in (a, h))
        assert ra["best_epoch"].iloc[0] == rh["best_epoch"].iloc[0] and ra["epochs"].iloc[0] == 6
        qa, qh = (load_per_query(root, r["run_id"].iloc[0]) for root, r in ((root_a, ra), (root_h, rh)))
        assert (qa.drop(columns="run_id").to_numpy() == qh.drop(columns="run_id").to_numpy()).all()


@pytest.mark.parametrize("view", [REFERENCE, OPENKE], ids=lambda p: p.key)
def test_derived_rows_equal_running_that_protocol_directly(runs, view):
    audit, direct = runs["audit"][1], runs[view.key][1]
    derived = audit[audit["protocol"] == view.version]
    assert set(derived["source"]) == {"audit"} and derived["selection"].str.endswith(DERIVED_NOTE).all()
    pd.testing.assert_series_equal(values(derived, view.version), values(direct, view.version))
    # the epoch each row stands for: the best test MRR's (reference) or the last (openke)
    for model in GRID["models"]:
        d, r = (x[x["model"] == model]["best_epoch"].iloc[0] for x in (derived, direct))
        assert d == r


def test_the_reference_rows_inflate_and_every_audit_record_says_audit_only(runs):
    root, rows = runs["audit"]
    rec = load_audit(root)
    assert set(rec["use"]) == {AUDIT_USE} and set(rec["split"]) == {"test"}
    assert sorted(rec["epoch"].unique()) == [2, 4, 6]
    h = values(rows, PROTOCOL).xs(("test", "both", "mrr"), level=["split", "side", "metric"])
    ref = values(rows, REFERENCE.version).xs(("test", "both", "mrr"), level=["split", "side", "metric"])
    assert (ref >= h - 0.05).all()       # best over evaluations (random ties) against one realistic checkpoint
    for rid in rows["run_id"].unique():
        assert check_run(runs_dir(root) / rid) == []


def test_selection_never_reads_the_audit(tmp_path, monkeypatch, runs):
    """Audit records replaced by adversarial numbers (a test MRR that peaks at the first evaluation and
    is awful at the selected one) change no harness row, no checkpoint and no per-query rank."""
    def adversarial(per_query, epoch, hits_at, split="test"):
        return [{"epoch": epoch, "split": split, "tie": tie, "side": side, "metric": m,
                 "value": (1.0 if epoch == 2 else 0.0) if m != "mr" else float(epoch), "use": AUDIT_USE}
                for tie in ("random", "optimistic", "realistic") for side in ("both", "head", "tail")
                for m in ("mrr", "mr", "hits@1", "hits@3", "hits@10")]
    monkeypatch.setattr(run_mod, "audit_records", adversarial)
    root, rows = run(tmp_path, "adversarial", protocol="audit")
    (root_a, audit) = runs["audit"]
    pd.testing.assert_series_equal(values(rows, PROTOCOL), values(audit[audit["source"] == "bench"], PROTOCOL))
    for model in GRID["models"]:
        ours, theirs = (r[(r["model"] == model) & (r["protocol"] == PROTOCOL)] for r in (rows, audit))
        assert ours["best_epoch"].iloc[0] == theirs["best_epoch"].iloc[0]
        qa, qb = load_per_query(root, ours["run_id"].iloc[0]), load_per_query(root_a, theirs["run_id"].iloc[0])
        assert (qa["rank_real"].to_numpy() == qb["rank_real"].to_numpy()).all()
        # ...while the derived rows do follow the (adversarial) audit: the reference takes epoch 2
        ref = rows[(rows["model"] == model) & (rows["protocol"] == REFERENCE.version)]
        assert set(ref["best_epoch"]) == {2} and ref.set_index("metric")["value"]["mrr"] == 1.0


def test_the_training_loop_calls_the_audit_after_each_selection_and_never_reads_it(tiny):
    """Same seed with and without an audit hook: identical history, checkpoint and weights, although
    the hook returns numbers that would change every decision if they were read."""
    R, E = tiny.num_relations, tiny.num_entities
    known = KnownAnswers(np.concatenate([tiny.train, tiny.valid]), R)
    cfg = TrainConfig(regime="negative", max_epochs=6, eval_every=2, patience=100, batch_size=64,
                      num_negatives=8, lr=1e-2)
    cls = MODELS["transe"]

    def fit(audit):
        model = cls(cls.Config(dim=8), ModelInputs(num_entities=E, num_relations=2 * R, features={}, present={},
                                                    fill="zeros"), torch.Generator().manual_seed(3))
        torch.manual_seed(0)
        res = train(model, tiny.train, R, E, cfg, valid_triples=tiny.valid, known_valid=known,
                    eval_cfg=EvalConfig(), seed=0, audit=audit)
        return res, model.state_dict()

    calls = []

    def audit(epoch):
        calls.append(epoch)
        return [{"epoch": epoch, "valid_mrr": 1.0 / epoch, "mrr": -1.0}]

    (plain, w0), (audited, w1) = fit(None), fit(audit)
    assert calls == [2, 4, 6] and [r["epoch"] for r in audited.audit] == [2, 4, 6] and plain.audit == []
    assert audited.history == [{**row, "seconds": a["seconds"]} for row, a in zip(plain.history, audited.history)]
    assert audited.best_epoch == plain.best_epoch and audited.best_valid == plain.best_valid
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


def test_derived_metrics_rules():
    rec = pd.DataFrame([{"epoch": e, "split": "test", "tie": t, "side": s, "metric": m, "value": v}
                        for e, mrr, mr in ((2, 0.3, 50.0), (4, 0.5, 60.0), (6, 0.4, 40.0))
                        for t in ("random", "optimistic") for s in ("both", "head", "tail")
                        for m, v in (("mrr", mrr + (t == "optimistic") * 0.01), ("mr", mr))])
    best, epoch = derived_metrics(rec, REFERENCE)
    assert best == {"both": {"mrr": 0.5, "mr": 40.0}} and epoch == 4      # MR from another epoch than MRR
    last, epoch = derived_metrics(rec, OPENKE)
    assert epoch == 6 and set(last) == {"both", "head", "tail"} and last["both"]["mrr"] == pytest.approx(0.41)
    with pytest.raises(ValueError, match="no rule for audit records"):
        derived_metrics(rec, AUDIT)
    with pytest.raises(ValueError, match="no test evaluations under tie rule 'random'"):
        derived_metrics(rec[rec["tie"] == "optimistic"], REFERENCE)


def test_a_damaged_audit_run_is_not_valid(runs, tmp_path):
    import shutil
    root, rows = runs["audit"]
    rid = rows["run_id"].iloc[0]
    copy = tmp_path / "runs" / rid
    shutil.copytree(runs_dir(root) / rid, copy)
    (copy / AUDIT_FILE).unlink()
    assert any("no audit.csv" in p for p in check_run(copy))
    shutil.copy(runs_dir(root) / rid / AUDIT_FILE, copy / AUDIT_FILE)
    r = pd.read_csv(copy / "rows.csv")
    r[r["protocol"] != OPENKE.version].to_csv(copy / "rows.csv", index=False)
    assert any("lacks" in p and "openke-v1" in p for p in check_run(copy))


def test_the_audit_protocol_needs_evaluations():
    from mmkgbench.grid import GridError
    from mmkgbench.resolve import resolve
    from tests.conftest import tiny_mmkg
    grid = grid_from_dict({**GRID, "protocol": "audit", "train": {**GRID["train"], "eval_every": 0}})
    with pytest.raises(GridError, match="ranks test at every evaluation; eval_every must be > 0"):
        resolve(grid.cells[0], tiny_mmkg())
    cfg, _ = OPENKE.configure(TrainConfig(eval_every=5), EvalConfig())
    assert cfg.eval_every == 0 and AUDIT.configure(TrainConfig(patience=3, max_epochs=50), EvalConfig())[0].patience == 50
