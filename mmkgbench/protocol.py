"""What an evaluation protocol means, in one place: which split is watched during training, whether a
checkpoint is selected on it, which filters rank each split, the tie rule, and what the stored rows say.

Four protocols (methods.md §6, §1.8):

* `harness` (the benchmark's): every `eval_every` epochs the model is ranked on **valid** (filtered
  with train ∪ valid, or ∪ test with `eval.filter_valid_with_test`), the best checkpoint is kept,
  early stopping after `patience` evaluations, and **test is evaluated once**, filtered with
  train ∪ valid ∪ test, under the grid's tie rule (realistic by default).
* `reference` (an audit of MoMoK's public code, `train.py:L147-L166`): test is ranked every
  `eval_every` epochs with random tie-breaking, training never stops early, validation is never
  used, and the stored test rows hold the **best value of each metric over those evaluations**,
  which no single model produced. Its numbers are never tested for significance.
* `openke` (NATIVE's and OpenKE's scripts, e.g. zjukg/NATIVE `run_adv_wgan_gp.py`: train for the
  given epochs, save, test; `mmkgc/base/Test.h` counts only candidates scoring strictly better than
  the target, so ties count in the target's favour): no checkpoint is selected, the **last epoch's**
  model is ranked on test once with **optimistic ties**. Never tested for significance.
* `audit`: one training yields the harness rows and both published conventions. It trains and
  selects exactly as the harness does, but without early stopping (the reference and openke
  protocols train for every epoch), and at every evaluation, after the selection decision, it also
  ranks test for the audit record (`audit.csv`). From that record the rows of `reference` and
  `openke` are derived (source "audit"); the selected checkpoint's rows are written as harness rows.
  The audit numbers are never read by selection (tests/test_protocol_audit.py).

The runner (mmkgbench.runner), the resolver (mmkgbench.resolve) and the report all read this object;
none of them tests for a protocol's name. The module imports nothing heavy, so `report` uses it too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Bump a version when what a protocol does or what its rows hold changes: it is part of every run id.
# harness-v2: per-query ranks gained rank_rand (random tie-breaking), EvalConfig gained `tie`.
PROTOCOL = "harness-v2"


@dataclass(frozen=True)
class Protocol:
    key: str                    # the name a grid uses: protocol = "..."
    version: str                # recorded in every row and in the run id
    watched: str                # split ranked during training: "valid" (selection) or "test" (audit)
    stored_splits: tuple        # splits whose rows and per-query ranks are stored
    early_stopping: bool        # False: patience is raised to max_epochs
    tie: str | None             # a tie rule the protocol imposes, or None for the grid's eval.tie
    best_per_metric: bool       # stored test rows = best of each metric over the watched evaluations
    tested: bool                # whether per-query significance tests may use its runs
    selection: str | None       # the selection text of its rows; None = the training loop's own rule
    description: str            # one line for table notes
    last_epoch: bool = False    # no checkpoint is selected: the stored rows come from the last epoch
    audits: tuple = ()          # keys of protocols whose rows are derived from audit rankings of test
    rows_as: str | None = None  # the version the selected checkpoint's rows carry; None = this one's

    def configure(self, train_cfg, eval_cfg):
        """(TrainConfig, EvalConfig) as this protocol runs them; an error when they cannot be.

        The reference protocol never stops early and breaks ties at random, as MoMoK's train.py does.
        """
        if self.last_epoch:             # nothing is watched: the model of the last epoch is ranked once
            train_cfg = dataclasses.replace(train_cfg, eval_every=0)
        elif self.watched == "test" and train_cfg.eval_every <= 0:
            raise ValueError(f"the {self.key} protocol evaluates test every eval_every epochs; eval_every must be > 0")
        if not self.early_stopping:
            train_cfg = dataclasses.replace(train_cfg, patience=max(train_cfg.patience, train_cfg.max_epochs))
        if self.audits and train_cfg.eval_every <= 0:
            raise ValueError(f"the {self.key} protocol ranks test at every evaluation; eval_every must be > 0")
        if self.tie is not None:
            eval_cfg = dataclasses.replace(eval_cfg, tie=self.tie)
        return train_cfg, eval_cfg

    @property
    def row_version(self) -> str:
        """The protocol version in the rows of the stored checkpoint (the audit's are harness rows)."""
        return self.rows_as or self.version

    def expected_rows(self, hits_at) -> set[tuple[str, str, str, str]]:
        """Every (protocol version, split, side, metric) a complete run of this protocol stores.

        Best-of-each-metric rows exist for side "both" only (the reference code reports no other);
        rows derived by an audit follow the rule of the protocol they are derived for.
        """
        metrics = ["mrr", "mr", *(f"hits@{k}" for k in hits_at)]
        sides = ("both",) if self.best_per_metric else ("head", "tail", "both")
        out = {(self.row_version, sp, side, m) for sp in self.stored_splits for side in sides for m in metrics}
        for key in self.audits:
            view = PROTOCOLS[key]
            out |= {row for row in view.expected_rows(hits_at) if row[1] == "test"}
        return out

    def filters(self, eval_cfg) -> dict[str, str]:
        """split -> the known answers that rank it (recorded in the config and in every row).

        Test is always filtered with every split. Valid, where it is stored, is filtered without test
        answers unless `filter_valid_with_test` (LibKGE's policy), so selection never sees a test answer.
        """
        out = {}
        for split in self.stored_splits:
            if split == "valid":
                out[split] = "train+valid+test" if eval_cfg.filter_valid_with_test else "train+valid"
            else:
                out[split] = "train+valid+test"
        return out

    def filter_splits(self, split: str, eval_cfg) -> tuple[str, ...]:
        """The splits whose triples make up the filter of `split` (the runner builds it from these)."""
        return tuple(self.filters(eval_cfg).get(split, "train+valid+test").split("+"))


HARNESS = Protocol(key="harness", version=PROTOCOL, watched="valid", stored_splits=("valid", "test"),
                   early_stopping=True, tie=None, best_per_metric=False, tested=True, selection=None,
                   description="checkpoint selected on valid, test evaluated once")
REFERENCE = Protocol(key="reference", version="reference-v1", watched="test", stored_splits=("test",),
                     early_stopping=False, tie="random", best_per_metric=True, tested=False,
                     selection="best value of each metric over test evaluations (reference code; not a single model)",
                     description="best value of each metric over test evaluations, random ties")

OPENKE = Protocol(key="openke", version="openke-v1", watched="test", stored_splits=("test",),
                  early_stopping=False, tie="optimistic", best_per_metric=False, tested=False,
                  selection="last epoch, no selection, optimistic ties (NATIVE/OpenKE scripts)",
                  description="the last epoch's model ranked once, ties in the target's favour", last_epoch=True)
AUDIT = Protocol(key="audit", version="audit-v1", watched="valid", stored_splits=("valid", "test"),
                 early_stopping=False, tie=None, best_per_metric=False, tested=True,
                 selection="best valid checkpoint, no early stopping (test also ranked at every evaluation, "
                           "for audit only)",
                 description="harness selection without early stopping, with reference and openke rows "
                             "derived from audit rankings of test",
                 audits=("reference", "openke"), rows_as=PROTOCOL)

PROTOCOLS: dict[str, Protocol] = {"harness": HARNESS, "reference": REFERENCE, "openke": OPENKE, "audit": AUDIT}
BY_VERSION: dict[str, Protocol] = {p.version: p for p in PROTOCOLS.values()}


def get_protocol(key: str) -> Protocol:
    """The protocol a grid names; an unknown name lists the valid ones."""
    if key not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {key!r}")
    return PROTOCOLS[key]


def family(version: str) -> str:
    """The protocol key of a version string stored in rows ("harness-v2" -> "harness"), also for
    versions older than this code knows ("harness-v1")."""
    if version in BY_VERSION:
        return BY_VERSION[version].key
    return str(version).rsplit("-v", 1)[0]


def is_tested(version: str) -> bool:
    """Whether runs recorded under this protocol version may be tested per query (harness: yes)."""
    p = BY_VERSION.get(version) or PROTOCOLS.get(family(version))
    return bool(p and p.tested)
