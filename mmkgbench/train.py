"""One training loop for every model, with two regimes and model selection on the validation split.

Regimes (a model declares its default in `train_defaults["regime"]`; a run may override it):

* "kvsall" (1-N scoring; Dettmers et al. 2018, TuckER, MoMoK): a batch is a set of unique
  (e, r) queries from train, reciprocal relations included; the target is the multi-hot vector of
  all their train answers, smoothed as y <- (1 - ls) y + 1/E (TuckER's form); loss is binary
  cross-entropy with logits, averaged over B x E, or with `loss = "ce"` the cross-entropy of the
  softmax over all E entities against y normalised to sum 1 per query (`mmkgbench.layers.kvsall_cross_entropy`: the
  1-vs-all objective of Lacroix et al. 2018's code base, which MoSE and OTKGE train with; for a
  query with one answer and ls = 0 it is that objective up to the 1/E floor of the target).
* "negative" (negative sampling; Bordes et al. 2013, Sun et al. 2019): each epoch visits every
  train triple once, oriented at random as (h, r, t) or (t, r + R, h), so corrupting the tail of
  the reciprocal triple is corrupting the head of the original (the usual 50/50 head/tail
  corruption). `corruption = "bern"` instead orients each positive by Wang et al.'s (AAAI 2014)
  Bernoulli rule: the head is replaced (the reciprocal orientation chosen) with probability
  tph_r / (tph_r + hpt_r), tph_r the mean number of tails per head of relation r in train and hpt_r
  the mean number of heads per tail, so 1-to-N relations get their heads corrupted, where a random
  tail would too often be a true answer. `num_negatives` tails per positive come from the run's
  negative sampler (`sampler`, a key of mmkgbench.samplers.SAMPLERS, with `sampler_options`): by
  default uniform, not filtered against train (NATIVE's sampler filters; README "Training
  differences"); a sampler may also reweigh the negatives, change how they are scored (MANS) or
  add a term of its own to the loss, with parameters the loop steps by their own Adam (MMRNS). Losses:
  "softplus": -log s(f+) - sum_i w_i log s(-f-_i), halved (NativE/RotatE form);
  "margin":   sum_i w_i max(0, margin - f+ + f-_i).
  w = softmax(alpha f-) (detached, self-adversarial; Sun et al. 2019), uniform when alpha = 0.

Models with an objective of their own: `kvsall_loss(e, r, y)` replaces the BCE on `score_t` (y is
the smoothed (B, E) target); `negative_scores(h, r, t, negatives)` gives the positive and negative
scores in one call (the default calls `score_hrt` twice; a model whose entity vectors are costly
computes them once); and `auxiliary_parameters()` / `auxiliary_loss(e, r, t)` declare
an estimator (or a generator: AdaMF's MAT) trained by its own optimiser in alternation with the model
(one step each per batch; t is the positives' tails in the negative regime, None under KvsAll), at
the model's `auxiliary_lr()` where it names one, else the run's lr.
The loop knows nothing else about any model.

Model selection (the benchmark owns it, house-style §4.4): every `eval_every` epochs the model
is evaluated on valid (filtered), the best `selection_metric` is kept, training stops after
`patience` evaluations without improvement, and the best weights are restored. Test is never seen.
"""
from __future__ import annotations

import copy
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mmkgbench.evaluate import EvalConfig, evaluate
from mmkgbench.layers import kvsall_cross_entropy
from mmkgbench.ranges import check_config
from mmkgbench.ranking import KnownAnswers
from mmkgbench.samplers import build_sampler, sampler_config

REGIMES = ("kvsall", "negative")
CORRUPTIONS = ("uniform", "bern")
LOSSES = ("softplus", "margin", "ce")
OPTIMIZERS = ("adam", "adagrad")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. Defaults here are generic; each model's `train_defaults` overrides them."""

    regime: str = "kvsall"                # "kvsall" | "negative"
    lr: float = 1e-3
    optimizer: str = "adam"               # "adam" | "adagrad"
    weight_decay: float = 0.0
    lr_decay: float = 1.0                 # ExponentialLR gamma per epoch (1.0 = constant, as MoMoK)
    batch_size: int = 1024
    max_epochs: int = 500
    label_smoothing: float = 0.1          # kvsall: TuckER's 0.1
    num_negatives: int = 128              # negative: NativE/AdaMF scripts (methods.md §3.2)
    loss: str = "softplus"                # negative: "softplus" | "margin"; kvsall: "ce", else BCE
    margin: float = 1.0                   # negative + "margin" loss
    adversarial_temperature: float = 0.0  # negative: alpha of self-adversarial weights; 0 = uniform
    eval_every: int = 10                  # epochs between validation evaluations; 0 = never (keep last)
    patience: int = 5                     # evaluations without improvement before stopping
    min_delta: float = 0.0                # improvement needed to count as better
    selection_metric: str = "mrr"         # metric on valid used to pick the checkpoint
    amp: bool = False                     # bf16 autocast on CUDA (ignored on CPU); ranking stays fp32
    # CPU threads of the run (torch.set_num_threads, scoped to the run). Part of the config and so of
    # the run id: on the CPU some kernels (MoMoK's among them) sum in an order that depends on the
    # thread count, so 1 and 2 threads give different numbers for the same seed. 2 = the machine the
    # README's numbers come from; set it to the cores you have (`--set train.threads=16`). On CUDA
    # it sets only the CPU side's threads.
    threads: int = 2
    corruption: str = "uniform"           # negative: "uniform" (50/50 head/tail) | "bern" (Wang et al. 2014)
    # negative: a key of mmkgbench.samplers.SAMPLERS, and its settings as (key, value) pairs (a grid
    # writes a table: sampler_options = { filter = true }); both part of the run id.
    sampler: str = "uniform"
    sampler_options: tuple = ()

    # Fields added after runs were stored, with the value every earlier run implicitly had. At that
    # value a field is left out of the run's config (`resolved_fields`), so the run ids of stored runs
    # stay valid; any other value is recorded and makes a new run id (tests/test_train.py).
    LATER_FIELDS: ClassVar[dict] = {"corruption": "uniform", "sampler": "uniform", "sampler_options": ()}

    ranges: ClassVar[dict] = {
        "regime": REGIMES, "lr": "(0, inf)", "optimizer": OPTIMIZERS, "weight_decay": "[0, inf)",
        "lr_decay": "(0, 1]", "batch_size": "[1, inf)", "max_epochs": "[1, inf)", "label_smoothing": "[0, 1)",
        "num_negatives": "[1, inf)", "loss": LOSSES, "margin": "[0, inf)", "adversarial_temperature": "[0, inf)",
        "eval_every": "[0, inf)", "patience": "[1, inf)", "min_delta": "[0, inf)",
        "selection_metric": None,         # "mrr", "mr" or "hits@k": checked below
        "amp": None, "threads": "[1, 1024]", "corruption": CORRUPTIONS,
        "sampler": None, "sampler_options": None}      # checked against the sampler registry below

    def __post_init__(self):
        options = self.sampler_options
        if isinstance(options, dict):
            options = options.items()
        try:
            options = tuple(sorted((str(k), v) for k, v in options))
        except (TypeError, ValueError):
            raise ValueError(f"TrainConfig: sampler_options must be a table of sampler settings, e.g. "
                             f"{{ filter = true }}; got {self.sampler_options!r}") from None
        object.__setattr__(self, "sampler_options", options)   # one canonical form: sorted pairs
        check_config(self)             # each field against its rule in `ranges` (mmkgbench.ranges)
        try:
            sampler_config(self.sampler, options)
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"TrainConfig: {err.args[0] if err.args else err}") from None
        if self.regime == "kvsall" and (self.sampler != "uniform" or options):
            raise ValueError(f"TrainConfig: sampler {self.sampler!r} draws negatives, which the 'kvsall' regime does "
                             f"not use (it scores all entities); set regime = 'negative', or sampler = 'uniform' "
                             f"with no sampler_options (a model's defaults may name a sampler: MoCME's 'egns')")
        if self.sampler == "self_adversarial" and self.adversarial_temperature > 0:
            raise ValueError("TrainConfig: sampler 'self_adversarial' weighs the negatives with its own temperature "
                             "(sampler_options = { temperature = ... }); set adversarial_temperature = 0, or keep "
                             "the 'uniform' sampler with adversarial_temperature = alpha, which trains the same")
        if self.regime == "negative" and self.loss == "ce":
            raise ValueError("TrainConfig: loss 'ce' (softmax over all entities) needs regime 'kvsall'; "
                             "the negative regime takes 'softplus' or 'margin'")
        if re.fullmatch(r"mrr|mr|hits@[1-9][0-9]*", self.selection_metric) is None:
            raise ValueError(f"TrainConfig: selection_metric must be 'mrr', 'mr' or 'hits@k', got "
                             f"{self.selection_metric!r}")


def resolved_fields(cfg: TrainConfig) -> dict:
    """The training settings as recorded in a run's config (and hashed into its run id): every field,
    except those of `TrainConfig.LATER_FIELDS` still at the value runs had before the field existed."""
    out = asdict(cfg)
    for name, before in TrainConfig.LATER_FIELDS.items():
        if out[name] == before:
            del out[name]
    return out


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the run is abandoned (other runs of a grid go on)."""


@dataclass
class TrainResult:
    best_epoch: int                      # epoch whose weights were restored (0-based count of epochs done)
    best_valid: dict[str, float]         # valid metrics (side "both") of that checkpoint; {} if never evaluated
    epochs: int                          # epochs actually trained
    stopped_early: bool
    seconds: float
    history: list[dict] = field(default_factory=list)   # one dict per epoch: epoch, loss, lr, valid_* when evaluated
    selection: dict = field(default_factory=dict)
    audit: list[dict] = field(default_factory=list)     # what `audit` returned at each evaluation; never selected on


def _kvsall_batches(queries: torch.Tensor, gen: torch.Generator, batch_size: int):
    perm = torch.randperm(len(queries), generator=gen)
    for i in range(0, len(perm), batch_size):
        yield queries[perm[i:i + batch_size]]


def kvsall_batch_loss(model, q: torch.Tensor, answers: KnownAnswers, cfg: TrainConfig) -> torch.Tensor:
    """The loss of one KvsAll batch of queries q (B, 2) (e, r): the model's `kvsall_loss`, else BCE or
    (`loss = "ce"`) cross-entropy on `score_t` against the smoothed targets, plus the model's penalty."""
    e, r = q[:, 0], q[:, 1]
    rows, cols = answers.lookup(e, r)
    y = torch.zeros((len(e), model.num_entities), dtype=torch.float32, device=e.device)
    y[rows, cols] = 1.0
    y = (1.0 - cfg.label_smoothing) * y + 1.0 / model.num_entities
    own = getattr(model, "kvsall_loss", None)
    if own is not None:          # a model whose objective is not one BCE on score_t (MoMoK: one per modality)
        loss = own(e, r, y)
    elif cfg.loss == "ce":
        loss = kvsall_cross_entropy(model.score_t(e, r).float(), y)
    else:
        loss = F.binary_cross_entropy_with_logits(model.score_t(e, r).float(), y)
    return loss + model.penalty(e, r, cols)


def _negative_loss(model, hrt: torch.Tensor, negatives: torch.Tensor, cfg: TrainConfig, sampler) -> torch.Tensor:
    h, r, t = hrt[:, 0], hrt[:, 1], hrt[:, 2]
    pos, neg = sampler.negative_scores(model, h, r, t, negatives)         # (B,), (B, k)
    pos, neg = pos.float(), neg.float()
    if cfg.adversarial_temperature > 0:
        w = torch.softmax(cfg.adversarial_temperature * neg.detach(), dim=1)
    else:
        w = torch.full_like(neg, 1.0 / neg.shape[1])
    w = sampler.weights(neg.detach(), w)       # the sampler's say (EGNS's entropy types, ...)
    extra = sampler.loss(hrt, negatives, w.detach())  # a sampler trained with the model (MMRNS)
    if cfg.loss == "softplus":
        loss = 0.5 * (F.softplus(-pos).mean() + (w * F.softplus(neg)).sum(1).mean())
    else:
        loss = (w * F.relu(cfg.margin - pos[:, None] + neg)).sum(1).mean()
    if extra is not None:
        loss = loss + extra
    return loss + model.penalty(h, r, torch.cat([t[:, None], negatives], 1))


def _optimizer(model, cfg: TrainConfig):
    aux = {id(p) for p in model.auxiliary_parameters()}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in aux]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _sampler_optimizer(sampler, cfg: TrainConfig):
    """A sampler's own parameters (MMRNS's attention) get their own Adam, at the sampler's `lr`
    option where it has one, else the run's lr; None when it has none."""
    params = [p for p in sampler.parameters() if p.requires_grad] if sampler is not None else []
    if not params:
        return None
    return torch.optim.Adam(params, lr=getattr(sampler.cfg, "lr", None) or cfg.lr)


def _auxiliary_optimizer(model, cfg: TrainConfig):
    """Auxiliary estimators (e.g. MoMoK's CLUB network) get their own Adam, no weight decay, as MoMoK's
    train.py does, at the run's lr unless the model's `auxiliary_lr()` names its own (AdaMF's generator
    learning rate); None when the model has none."""
    params = [p for p in model.auxiliary_parameters() if p.requires_grad]
    if not params:
        return None
    own = model.auxiliary_lr() if hasattr(model, "auxiliary_lr") else None
    return torch.optim.Adam(params, lr=cfg.lr if own is None else own)


def train(model, train_triples: np.ndarray, num_relations: int, num_entities: int, cfg: TrainConfig, *,
          valid_triples: np.ndarray | None = None, known_valid: KnownAnswers | None = None,
          eval_cfg: EvalConfig = EvalConfig(), device: torch.device | str = "cpu", seed: int = 0,
          progress: bool = False, desc: str = "", watched: str = "valid", audit=None,
          sampler_inputs=None) -> TrainResult:
    """Train `model` (already on `device`) on train triples (n, 3) and restore the best checkpoint.

    num_relations: R of the data (the model was built with 2R). known_valid: the filter for
    validation ranking. watched: the name of the split passed as `valid_triples`, used in the
    history columns (`<watched>_mrr`, ...) and the selection record; only the reference
    protocol (mmkgbench.runner) passes the test split here, and says so.
    audit: None, or a function of the epoch called at every evaluation *after* the selection
    decision of that evaluation, returning a list of records (dicts) that are collected in
    `TrainResult.audit`. The loop never reads them: they cannot influence selection, early stopping or
    the restored checkpoint (the audit protocol ranks test this way; tests/test_protocol_audit.py).
    sampler_inputs: the run's features (mmkgbench.model.ModelInputs) for a sampler that reads them
    (MMRNS); mmkgbench.runner passes them. All sampling draws from a CPU generator seeded with `seed`; dropout draws from torch's global
    RNG, which the caller seeds and scopes (mmkgbench.runner does).
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    triples = torch.from_numpy(np.array(train_triples, dtype=np.int64))  # a writable copy
    if cfg.regime == "kvsall":
        answers = KnownAnswers(train_triples, num_relations).to(device)
        keys = answers.keys.cpu()
        queries = torch.stack([keys // (2 * num_relations), keys % (2 * num_relations)], 1)
        n_steps = math.ceil(len(queries) / cfg.batch_size)
    else:
        n_steps = math.ceil(len(triples) / cfg.batch_size)
    sampler = None
    if cfg.regime == "negative":
        sampler = build_sampler(cfg.sampler, cfg.sampler_options, train_triples, num_relations, num_entities,
                                cfg.num_negatives)
        sampler.bind(model, sampler_inputs, seed)
    p_head = head_corruption_probability(train_triples, num_relations) \
        if sampler is not None and bernoulli_orientation(cfg, sampler) else None
    optimizer = _optimizer(model, cfg)
    sampler_optimizer = _sampler_optimizer(sampler, cfg)
    aux_optimizer = _auxiliary_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    autocast = cfg.amp and device.type == "cuda"
    selecting = cfg.eval_every > 0 and valid_triples is not None and len(valid_triples) > 0
    best_score, best_state, best_epoch, best_valid = -math.inf, None, 0, {}
    bad_evals, history, stopped_early, audited = 0, [], False, []
    sign = -1.0 if cfg.selection_metric == "mr" else 1.0           # MR: lower is better
    bar = _progress(cfg.max_epochs, desc, progress)
    t0 = time.perf_counter()
    model.train()
    epoch = 0
    for epoch in range(1, cfg.max_epochs + 1):
        total, count, aux_total = torch.zeros((), device=device), 0, torch.zeros((), device=device)
        if sampler is not None:
            sampler.begin_epoch(epoch, cfg.max_epochs)
        if cfg.regime == "kvsall":
            batches = (q.to(device) for q in _kvsall_batches(queries, gen, cfg.batch_size))
        else:
            batches = negative_batches(triples, num_relations, num_entities, cfg, gen, device, p_head, sampler)
        for step, batch in enumerate(batches):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                if cfg.regime == "kvsall":
                    loss = kvsall_batch_loss(model, batch, answers, cfg)
                else:
                    loss = _negative_loss(model, batch[0], batch[1], cfg, sampler)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{desc or 'run'}: loss became {float(loss.detach())} at epoch {epoch}, "
                                       f"step {step + 1}/{n_steps}; lower lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            if sampler_optimizer is not None:       # the sampler learns from the same backward (MMRNS)
                sampler_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if sampler_optimizer is not None:
                sampler_optimizer.step()
            if aux_optimizer is not None:
                # Alternation, as in MoMoK's train.py: after the model step, the auxiliary estimator
                # takes one step on its own objective, computed from detached model outputs.
                q = batch[0] if cfg.regime == "negative" else batch
                aux_loss = model.auxiliary_loss(q[:, 0], q[:, 1], q[:, 2] if cfg.regime == "negative" else None)
                if aux_loss is not None:   # None: no auxiliary step this batch (AdaMF's MAT under KvsAll)
                    aux_optimizer.zero_grad(set_to_none=True)
                    aux_loss.backward()
                    aux_optimizer.step()
                    aux_total += aux_loss.detach() * len(q)
            total += loss.detach() * len(batch[0] if cfg.regime == "negative" else batch)
            count += len(batch[0] if cfg.regime == "negative" else batch)
        scheduler.step()
        row = {"epoch": epoch, "loss": float(total) / max(count, 1), "lr": optimizer.param_groups[0]["lr"],
               "seconds": time.perf_counter() - t0}
        if aux_optimizer is not None:
            row["aux_loss"] = float(aux_total) / max(count, 1)
        if selecting and (epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs):
            res = evaluate(model, valid_triples, known_valid, num_relations=num_relations, cfg=eval_cfg,
                           device=device, seed=seed)
            m = res.metrics["both"]
            row.update({f"{watched}_{k}": v for k, v in m.items()})
            score = sign * m[cfg.selection_metric]
            if score > best_score + cfg.min_delta or best_state is None:
                best_score, best_epoch, best_valid, bad_evals = score, epoch, m, 0
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            else:
                bad_evals += 1
            if audit is not None:          # after the decision above, so nothing it returns is selected on
                audited.extend(audit(epoch))
        history.append(row)
        _update(bar, row, best_valid.get(cfg.selection_metric))
        if selecting and bad_evals >= cfg.patience:
            stopped_early = True
            break
    if bar is not None:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epoch
    selection = {"split": watched if selecting else None, "metric": cfg.selection_metric if selecting else None,
                 "rule": f"best {watched} checkpoint (early stopping)" if selecting else "last epoch",
                 "eval_every": cfg.eval_every, "patience": cfg.patience, "config": asdict(cfg)}
    return TrainResult(best_epoch=best_epoch, best_valid=best_valid, epochs=epoch, stopped_early=stopped_early,
                       seconds=time.perf_counter() - t0, history=history, selection=selection,
                       audit=audited)


def best_per_metric(history: list[dict], split: str) -> dict[str, float]:
    """The best value of each metric over all evaluations in `history`, each taken separately.

    This is how MoMoK's train.py reports (methods.md §1.8): MRR from one evaluation, Hits@10 from
    perhaps another, so the row describes no single model. Only the reference protocol uses it.
    MR is lower-is-better; every other metric higher-is-better.
    """
    prefix = f"{split}_"
    evals = [{k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)} for row in history]
    evals = [e for e in evals if e]
    if not evals:
        raise ValueError(f"no {split} evaluations in the history: set eval_every > 0")
    return {k: (min if k == "mr" else max)(e[k] for e in evals) for k in evals[0]}


def head_corruption_probability(triples, R: int) -> torch.Tensor:
    """P(corrupt the head) per relation under Wang et al.'s (AAAI 2014) Bernoulli rule: (R,) float64,
    tph / (tph + hpt) with tph = #triples / #distinct heads and hpt = #triples / #distinct tails of r
    in `triples` (n, 3) (h, r, t). A relation with no triple gets 0.5."""
    t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    count = np.bincount(t[:, 1], minlength=R).astype(np.float64)
    heads = np.bincount(np.unique(t[:, [1, 0]], axis=0)[:, 0], minlength=R)
    tails = np.bincount(np.unique(t[:, [1, 2]], axis=0)[:, 0], minlength=R)
    tph = np.divide(count, heads, out=np.zeros(R), where=heads > 0)
    hpt = np.divide(count, tails, out=np.zeros(R), where=tails > 0)
    p = np.divide(tph, tph + hpt, out=np.full(R, 0.5), where=(tph + hpt) > 0)
    return torch.from_numpy(p)


def bernoulli_orientation(cfg: TrainConfig, sampler=None) -> bool:
    """Whether positives are oriented by the Bernoulli rule: the run's `corruption`, or a sampler that
    imposes it (`sampler = "bernoulli"`)."""
    return cfg.corruption == "bern" or getattr(sampler, "orientation", None) == "bern"


def negative_batches(triples: torch.Tensor, R: int, E: int, cfg: TrainConfig, gen: torch.Generator, device,
                     p_head: torch.Tensor | None = None, sampler=None):
    """Shuffled positives, each oriented (reciprocal = head corruption) at random, 50/50 or by the
    Bernoulli rule (`bernoulli_orientation`), with negative tails from `sampler` (a
    mmkgbench.samplers sampler; None: uniform tails). p_head: the rule's (R,) probabilities
    (`head_corruption_probability`), computed here when not given; `train` computes them once per
    run, not once per epoch. Yields (positives (B, 3), negatives (B, k)) on `device`."""
    n = len(triples)
    perm = torch.randperm(n, generator=gen)
    if bernoulli_orientation(cfg, sampler):
        if p_head is None:
            p_head = head_corruption_probability(triples.numpy(), R)
        p_head = p_head[triples[:, 1]]
        flip = torch.rand(n, generator=gen, dtype=torch.float64) < p_head
    else:
        flip = torch.rand(n, generator=gen) < 0.5
    for i in range(0, n, cfg.batch_size):
        idx = perm[i:i + cfg.batch_size]
        b = triples[idx].clone()
        f = flip[idx]
        b[f] = torch.stack([b[f, 2], b[f, 1] + R, b[f, 0]], 1)
        if sampler is None:
            neg = torch.randint(E, (len(b), cfg.num_negatives), generator=gen)
        else:
            neg = sampler.draw(b, gen)
        yield b.to(device), neg.to(device)


def _progress(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr, or None (no bar) when disabled or when stderr is not a terminal.

    This is the one place that decides: redrawn with carriage returns, a bar written to a log file
    or a pipe (nohup, CI, `2> log`) fills it with hundreds of KB of redraws. Where there is no bar,
    run_grid's "running" and "done" log lines report each run instead.
    """
    enabled = enabled and getattr(sys.stderr, "isatty", lambda: False)()
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc or "train", unit="ep", leave=False, dynamic_ncols=True)


def _update(bar, row: dict, best):
    if bar is None:
        return
    post = {"loss": f"{row['loss']:.4f}"}
    for split in ("valid", "test"):
        if f"{split}_mrr" in row:
            post[f"{split}_mrr"] = f"{row[f'{split}_mrr']:.4f}"
    if best is not None:
        post["best"] = f"{best:.4f}"
    bar.set_postfix(post, refresh=False)
    bar.update(1)
