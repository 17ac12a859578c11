"""What every model in the harness is: a config dataclass plus an `nn.Module` with `score_t`.

The contract (checked for every registry entry by tests/test_models.py):

* `score_t(h, r) -> (B, E)`: scores of all candidate tails for the queries (h, r, ?), h and r int64
  of shape (B,). Higher is better. These are *logits* (no sigmoid): ranking on saturated
  probabilities creates artificial ties (anchors.md §7.2).
* `score_hrt(h, r, t) -> t.shape`: the same scores for given tails, t of shape (B,) or (B, n).
  The default gathers from `score_t`; models override it with a per-triple formula, and the
  conformance test checks that the two agree.
* Head queries never reach a model as such: the runner asks (t, r + R, ?) through reciprocal
  relations, so `num_relations` passed to a model is already 2R.
* Models never choose a device or touch the global RNG: parameters are initialised from the
  `torch.Generator` passed in, on the CPU; the runner moves the module.

Class attributes a model declares (its display name and citation live in mmkgbench.modelinfo, which
`report` reads without importing torch):
    Config          its frozen config dataclass (model hyper-parameters only)
    train_defaults  training settings from the literature (keys of mmkgbench.train.TrainConfig)
    modalities      which feature modalities it reads ("*" = all the data has; () = none)
    version         int, bumped whenever a change alters the model's numbers; part of every run id,
                    so a stored run never outlives the code that produced it
    scoring_fields  config fields that change only how a trained model scores, not how it trains
                    (MoMoK's `decision`): cells that differ only there share one training run
    interpretation_views  figure name -> view: how the report draws the tables `interpretation()`
                    returns (see KGEModel.interpretation_views); stored with each run
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import Tensor, nn

from mmkgbench.parallel import split_run


# The negative-sampling regime of the MMKGC literature (NativE/AdaMF scripts, methods.md §3.2):
# batch 1024, 128 uniform negatives, self-adversarial sigmoid loss with alpha 2.0, Adam lr 1e-4.
NEGATIVE_SAMPLING_DEFAULTS = MappingProxyType(dict(regime="negative", lr=1e-4, batch_size=1024, num_negatives=128,
                                                   loss="softplus", adversarial_temperature=2.0))


@dataclass(frozen=True)
class ModelInputs:
    """What a model may know about the data: sizes, and features of the modalities it reads.

    num_relations counts reciprocal relations (2R). features: modality -> float32 (E, d_m);
    present: modality -> bool (E,). Both only hold the modalities the model asked for. Rows of
    absent entities are already filled by the run's `fill` policy (mmkgbench.features): "zeros" or
    "mean"; under "learned" they hold the mean, and a model builds its tables with
    `mmkgbench.features.FeatureTable`, which swaps in a trainable vector.
    """

    num_entities: int
    num_relations: int
    features: dict[str, Tensor] = field(default_factory=dict)
    present: dict[str, Tensor] = field(default_factory=dict)
    fill: str = "zeros"


class KGEModel(nn.Module):
    """Base class: stores sizes; subclasses define `score_t` (and usually `score_hrt`).

    Constructor of every model: `Model(cfg: Model.Config, inputs: ModelInputs, generator)`.
    """

    Config: type = None
    train_defaults: dict = {}
    modalities: tuple[str, ...] = ()
    version: int = 0               # every registered model declares its own (tests/test_models.py)
    scoring_fields: tuple[str, ...] = ()
    interpretation_views: dict[str, dict] = {}
    """How the report draws the tables of `interpretation()`: figure name -> view, a plain JSON-able
    dict stored with each run (`interpretation.json`) and drawn by `run_bench.py report` for whatever
    model stored it, so a new model (or a grid variant of one) gets its figures without touching the
    report. Keys (checked by mmkgbench.figures.check_view):

        table   name of one of the interpretation() tables        kind   "heatmap" | "bars"
        value   the column drawn (a mean per cell or bar; weighted by the table's `queries` column
                where it has one)
        runs    "clean" (default): the model's clean run of the lowest seed per data set;
                "all": every run of the model on the data set, one group of bars per scenario cell,
                ± one std over seeds (bars only)
        heatmap: index (the row column), columns (list: the column key, grouped by its first entry),
                 labels (a column naming the index values, used when the table has it), max_rows (40)
        bars:    x (the column on the axis, or in the legend when runs = "all")
        optional: where {column: value or [values]} (rows kept), order (values of the first column
                 key / x first, "*" for the rest alphabetically), range [lo, hi], title, value_label

    E.g. {"gates": {"table": "expert_gates", "kind": "heatmap", "index": "relation",
    "columns": ["modality", "expert"], "value": "weight", "where": {"direction": "tail"}}}.
    """

    def __init__(self, cfg, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        self.num_entities = inputs.num_entities
        self.num_relations = inputs.num_relations

    def rescore(self, **changes) -> None:
        """Switch how the trained model scores: `changes` are values of `scoring_fields` (the harness
        scores several ablation rows from one checkpoint this way). Validated by rebuilding the config."""
        bad = sorted(set(changes) - set(self.scoring_fields))
        if bad:
            raise ValueError(f"{type(self).__name__}: {bad} are not scoring fields; it has {list(self.scoring_fields)}")
        self.cfg = dataclasses.replace(self.cfg, **changes)

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Scores for given tails: h, r (B,); t (B,) or (B, n) -> same shape as t."""
        s = self.score_t(h, r)
        if t.dim() == 1:
            return s.gather(1, t[:, None])[:, 0]
        return s.gather(1, t)

    def negative_scores(self, h: Tensor, r: Tensor, t: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
        """Scores of the positives (B,) and of their negative tails (B, k) for the negative-sampling
        regime. Override when entity vectors are costly to compute (MoCME: once per step, not twice)."""
        return self.score_hrt(h, r, t), self.score_hrt(h, r, negatives)

    def penalty(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Regularisation term for a training batch (already weighted); 0 unless a model adds one."""
        return torch.zeros((), device=h.device)

    # Optional hooks (mmkgbench.train):
    #   kvsall_loss(e, r, y) -> scalar: the model's own KvsAll objective, y the smoothed (B, E) target.
    #   mixed_tail_scores(h, r, t_structure, t_modality) -> (scores, intra, cross): tails that take their
    #   structural vector from one entity and their modality vectors from another (MANS's visual
    #   negatives; mmkgbench/samplers/mans.py). Negative sampling itself is mmkgbench.samplers'.
    #   auxiliary_parameters() / auxiliary_loss(e, r, t): an estimator (MoMoK's CLUB network) or a
    #   generator (AdaMF's MAT) trained by its own optimiser, one step after each model step (a None
    #   loss skips the step); auxiliary_lr() its learning rate (None: the run's).
    # And one runner hook (mmkgbench.runner): calibrate(valid_triples, known, seed=...) fits what a
    # trained model scores with on the validation split and its filter (MoSE's fitted ensembles).
    def auxiliary_parameters(self) -> list:
        """Parameters the model's optimiser must not touch (they have their own); none by default."""
        return []

    def auxiliary_lr(self) -> float | None:
        """The auxiliary optimiser's learning rate; None (default): the run's `lr`."""
        return None

    def auxiliary_loss(self, h: Tensor, r: Tensor, t: Tensor | None = None) -> Tensor:
        """The estimator's loss for a batch of queries h, r (B,) (t (B,): their positive tails in the
        negative regime, None under KvsAll), or None for no step this batch; called only for models whose
        `auxiliary_parameters()` is not empty, so reaching this default is a model bug."""
        raise NotImplementedError(f"{type(self).__name__} declares auxiliary parameters but no auxiliary_loss")

    def interpretation(self, triples: Tensor) -> dict:
        """Frames (tables) that explain a trained model, saved with its run; none by default.

        triples: int64 (n, 3) (h, r, t) the harness passes (the training split). Returns name -> pandas
        DataFrame.
        """
        return {}


def init_(tensor: Tensor, kind: str, generator: torch.Generator, **kw) -> Tensor:
    """Initialise `tensor` in place from `generator` (never the global RNG).

    kind: "xavier_normal" | "xavier_uniform" | "normal" (kw std) | "uniform" (kw a, b).
    """
    with torch.no_grad():
        if kind == "xavier_normal":
            return nn.init.xavier_normal_(tensor, generator=generator)
        if kind == "xavier_uniform":
            return nn.init.xavier_uniform_(tensor, generator=generator)
        if kind == "normal":
            return nn.init.normal_(tensor, 0.0, kw.get("std", 1.0), generator=generator)
        if kind == "uniform":
            return nn.init.uniform_(tensor, kw["a"], kw["b"], generator=generator)
    raise ValueError(f"unknown init {kind!r}")


# Distance models (TransE-L1, RotatE, PairRE) have no GEMM form for 1-vs-all scores: they need
# (B, E, d) elementwise work. Chunking over entities so one (B, chunk, d) block is about 1 MB keeps
# it in cache: 10x faster than one big block on a 2-core CPU (docs/performance.md) and memory stays
# bounded. Without autograd the block is updated in place.
CHUNK_ELEMENTS = 2**18


def chunk_step(B: int, d: int) -> int:
    """Entities per (B, chunk, d) block of the distance helpers."""
    return max(1, CHUNK_ELEMENTS // max(1, B * d))


def l1_distance_all(q: Tensor, ent: Tensor, scale: Tensor | None = None) -> Tensor:
    """sum_k |q_bk - scale_bk * ent_ek| for all pairs: q (B, d), ent (E, d), scale (B, d) -> (B, E).
    Without autograd the block loop is split across threads (mmkgbench.parallel: one synchronisation
    per call); with it, it runs in the calling thread, so gradients are summed in one fixed order."""
    B, d = q.shape
    step = chunk_step(B, d)
    inplace = not (torch.is_grad_enabled() and (q.requires_grad or ent.requires_grad))

    def blocks(lo, hi):
        out = []
        for a in range(lo, hi, step):
            sl = slice(a, min(a + step, hi))
            t = ent[None, sl] if scale is None else ent[None, sl] * scale[:, None]
            diff = torch.sub(q[:, None], t)
            out.append((diff.abs_() if inplace else diff.abs()).sum(-1))
        return out

    if not inplace:          # autograd orders its sums by the threads that recorded them: stay in one
        return torch.cat(blocks(0, len(ent)), 1)
    return torch.cat([b for part in split_run(len(ent), blocks, align=step, device=q.device) for b in part], 1)


def modulus_distance_all(q_re: Tensor, q_im: Tensor, t_re: Tensor, t_im: Tensor) -> Tensor:
    """sum_k |q_bk - t_ek| over complex dims for all pairs: q (B, d) and t (E, d) as re/im parts -> (B, E).
    Split across threads without autograd, as `l1_distance_all`."""
    B, d = q_re.shape
    step = chunk_step(B, d)
    grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q_re, q_im, t_re, t_im))

    def blocks(lo, hi):
        out = []
        for a in range(lo, hi, step):
            sl = slice(a, min(a + step, hi))
            if grad:
                # complex abs: its gradient at a zero difference is 0, where sqrt(x^2 + y^2) gives NaN
                diff = torch.complex(q_re[:, None] - t_re[None, sl], q_im[:, None] - t_im[None, sl])
                out.append(diff.abs().sum(-1))
            else:
                dr = torch.sub(q_re[:, None], t_re[None, sl]).square_()
                out.append(dr.add_(torch.sub(q_im[:, None], t_im[None, sl]).square_()).sqrt_().sum(-1))
        return out

    if grad:                 # autograd orders its sums by the threads that recorded them: stay in one
        return torch.cat(blocks(0, len(t_re)), 1)
    return torch.cat([b for part in split_run(len(t_re), blocks, align=step, device=q_re.device) for b in part], 1)
