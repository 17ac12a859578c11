"""Published reporting conventions computed from one training's audit record (the `audit` protocol).

Under the audit protocol (mmkgbench.protocol.AUDIT) the model is trained and selected exactly as the
harness does, and at every evaluation test is also ranked, after the selection decision, for this
record only. One record row per (epoch, tie rule, side, metric); `audit.csv` of the run holds them.
From it the rows of the protocols the audit names are derived, each by that protocol's own rule:

* best of each metric over the evaluations, random ties (`reference`: MoMoK's train.py);
* the last evaluation (the model after the final epoch), optimistic ties (`openke`: NATIVE's and
  OpenKE's scripts test the last checkpoint; their Test.h counts only strictly better candidates).

So the inflation of the published conventions over the harness protocol costs no second training,
and the derived rows equal what running those protocols directly gives (tests/test_protocol_audit.py).
Every record and every derived row says it is an audit; nothing here is read by selection.
"""
from __future__ import annotations

import pandas as pd

from mmkgbench.evaluate import tie_metrics
from mmkgbench.protocol import Protocol
from mmkgbench.ties import TIE_POLICIES

AUDIT_COLUMNS = ["run_id", "epoch", "split", "tie", "side", "metric", "value", "use"]
AUDIT_USE = "audit only: never used for checkpoint selection or early stopping"
# The selection text of a derived row ends with this, so no row of an audit can pass for a selection.
DERIVED_NOTE = "derived from audit rankings of test; never used for selection"


def audit_records(per_query: pd.DataFrame, epoch: int, hits_at, split: str = "test") -> list[dict]:
    """The record of one audit evaluation: a dict (epoch, split, tie, side, metric, value, use) per
    tie rule of TIE_POLICIES x side x metric, from the per-query ranks of mmkgbench.evaluate."""
    out = []
    for tie in TIE_POLICIES:
        for side, values in tie_metrics(per_query, tie, hits_at).items():
            out += [{"epoch": epoch, "split": split, "tie": tie, "side": side, "metric": metric, "value": value,
                     "use": AUDIT_USE} for metric, value in values.items()]
    return out


def derived_metrics(audit: pd.DataFrame, protocol: Protocol, split: str = "test") -> tuple[dict, int]:
    """(side -> metric -> value, epoch) of `protocol`'s rule applied to an audit record.

    best_per_metric: side "both" only, each metric its best over the evaluations (MR lowest), and the
    epoch of the best MRR (the first, as the reference protocol's selection keeps the first);
    last_epoch: every side at the last evaluated epoch. Ties under `protocol.tie`.
    """
    if protocol.tie is None or not (protocol.best_per_metric or protocol.last_epoch):
        raise ValueError(f"protocol {protocol.key!r} has no rule for audit records (needs a tie rule and "
                         "best_per_metric or last_epoch)")
    sub = audit[(audit["split"] == split) & (audit["tie"] == protocol.tie)]
    if sub.empty:
        raise ValueError(f"the audit record holds no {split} evaluations under tie rule {protocol.tie!r}")
    if protocol.last_epoch:
        epoch = int(sub["epoch"].max())
        last = sub[sub["epoch"] == epoch]
        return {side: dict(zip(g["metric"], g["value"].astype(float))) for side, g in last.groupby("side")}, epoch
    both = sub[sub["side"] == "both"]
    best = {}
    for metric, g in both.groupby("metric", sort=False):
        best[metric] = float(g["value"].min() if metric == "mr" else g["value"].max())
    mrr = both[both["metric"] == "mrr"].sort_values("epoch", kind="stable")
    epoch = int(mrr["epoch"].iloc[int(mrr["value"].to_numpy().argmax())])
    return {"both": best}, epoch
