"""Numerical equivalence of our MoMoK (mmkgbench.models.momok) with the reference code (zjukg/MoMoK).

    python3 benchmarks/check_momok_reference.py --reference ~/src/MoMoK [--dtype float32] [--club-axis batch]

`--reference` is a clone of https://github.com/zjukg/MoMoK. Nothing of it is copied here: its
`models/RelMoE.py` (the model, class RelMoE) and `models/modules.py` (MIEstimator, the CLUB networks)
are imported from the clone at run time. `train.py` is not imported (it parses arguments and loads
the datasets at import), so the reference's total loss is composed here as its line 131 does:
`model.loss_func(output, target) + mu * estimator(embeddings)`.

Both models are built on the same small random inputs; every parameter and buffer of ours is copied
into the reference through an explicit name map (`weight_map`), after our parameters are perturbed
away from their initial values (which have all-zero gates, centres and noise weights, so the
gating would be untested). Compared, each as max |ours - ref| and max |ours - ref| / max |ref|:

* eval mode: the four decisions' probabilities (structure, image, text, joint) and their mean;
* train mode with every dropout at 0: the same probabilities, the training loss (sum of the four
  BCEs + mu * CLUB), the CLUB term on its own, the estimator's loss, and the gradients of every
  mapped parameter from the training loss and of the CLUB networks from the estimator's loss.
  Train mode is run twice: gate noise off (ours gate_noise=False, the reference's
  MoEAdaptorLayer.noisy_gating=False), and gate noise on, drawn from the same torch seed (both
  models draw their noise in the same order: query experts s, i, t, then candidates s, i, t).

CLUB randomness: the reference draws its expert pair with Python's `random.sample` and its negatives
with `torch.randperm`; ours draws both from torch (pair = randperm(K)[:2], then one randperm(B) per
modality). Each comparison seeds torch alike, draws the pair our way on the reference side as well
(so the torch stream stays aligned) and seeds Python's `random` so that `random.sample` returns that
pair: both sides then use the same pair and the same permutations.

Not compared: the reference's unused modules (`mm_moe`, the per-entity `bias`) and its feature
pooling (our model takes features at their final widths: the reference's pooled tables are handed
to ours). The reference is built through its "MKG" branch (image used raw, text 384 -> 256 by
adaptive pooling), the only branch whose image width is free, so our text width is 256.

Tolerance: a quantity passes when max|ours - ref| <= atol + rtol * max|ref|; float64 (default):
rtol 1e-5, atol 1e-12; float32: rtol 1e-4, atol 1e-8. In float64 the decisions' probabilities agree
exactly, but our training loss (and so every gradient) and our mean-probability score are computed
in float32 by design (`kvsall_loss` casts the logits for the BCE, `combine` works in float32): over
seeds 0-4 at two sizes the worst scaled difference was 4.6e-7, so rtol 1e-5 leaves a 20x margin,
while a difference of formula shows at 1e-3 or more (our club_axis='batch' against a fixed clone:
8e-3 to 9e-2 on the loss, 3e0 to 6e0 on the CLUB term). atol covers gradients that are zero up to rounding
(sums of CLUB terms that cancel: 1e-17 in float64, a few 1e-9 in float32). Exit status 1 when a
quantity exceeds its bound, 2 when the clone cannot be used.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmkgbench.model import ModelInputs
from mmkgbench.models.momok import MoMoK, MoMoKConfig

# Our modality names, in our order (structure, then the features sorted), and the reference's
# attribute names for each: entity table, relation table, experts, TuckER decision, CLUB network.
REFERENCE_NAMES = {
    "structure": ("entity_embeddings", "relation_embeddings", "structure_moe", "TuckER_S", "str_estimator"),
    "image": ("img_entity_embeddings", "img_relation_embeddings", "visual_moe", "TuckER_I", "img_estimator"),
    "text": ("txt_entity_embeddings", "txt_relation_embeddings", "text_moe", "TuckER_D", "txt_estimator"),
}
DECISIONS = ("structure", "image", "text", "joint")          # the reference's output order
UNUSED_REFERENCE = ("model.mm_moe.", "model.bias")            # built by RelMoE, used nowhere


class ReferenceError(RuntimeError):
    """The clone cannot be imported or does not have the structure this check maps."""


def import_reference(directory: Path):
    """(RelMoE class, MIEstimator class) from a clone of zjukg/MoMoK at `directory`."""
    directory = Path(directory).expanduser().resolve()
    if not (directory / "models" / "RelMoE.py").is_file() or not (directory / "models" / "modules.py").is_file():
        raise ReferenceError(f"{directory} is not a clone of zjukg/MoMoK: models/RelMoE.py and models/modules.py "
                             "are missing")
    for name in ("models", "layers"):        # the clone's top-level packages must be the ones imported
        loaded = sys.modules.get(name)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve().parent.parent != directory:
            raise ReferenceError(f"a module named {name!r} is already imported from {loaded.__file__}; "
                                 "run the check in a fresh process")
    sys.path.insert(0, str(directory))
    try:
        from models.modules import MIEstimator
        from models.RelMoE import RelMoE
    except ImportError as err:
        raise ReferenceError(f"importing the reference model from {directory} failed: {err}") from err
    finally:
        sys.path.remove(str(directory))
    return RelMoE, MIEstimator


def weight_map(names: list[str], num_experts: int, heads: int) -> list[tuple[str, list[str]]]:
    """(our name, reference names): one reference name = the same tensor; several = ours stacks them on
    dim 0 (our experts keep W_i and b_i of the K experts in one (K, ...) tensor). Buffers included."""
    if names != list(REFERENCE_NAMES):
        raise ReferenceError(f"the reference has modalities {list(REFERENCE_NAMES)}; this model has {names}")
    out = [("temperature", ["model.rel_gate.weight"])]
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for m, (ent, rel, moe, tucker, club) in REFERENCE_NAMES.items():
        out += [(f"entity.{m}.table", [f"model.{ent}.weight"]), (f"relation.{m}", [f"model.{rel}.weight"]),
                (f"experts.{m}.weight", [f"model.{moe}.experts.{k}.lin.weight" for k in range(num_experts)]),
                (f"experts.{m}.centre", [f"model.{moe}.experts.{k}.bias" for k in range(num_experts)]),
                (f"experts.{m}.gate", [f"model.{moe}.w_gate"]), (f"experts.{m}.noise", [f"model.{moe}.w_noise"])]
        out += [(f"club.{m}.{ours}.{i}.{p}", [f"estimator.{club}.{theirs}.{i}.{p}"])
                for ours, theirs in (("mu", "p_mu"), ("logvar", "p_logvar"))
                for i in (0, 2) for p in ("weight", "bias")]
    for m, tucker in zip(DECISIONS, ("TuckER_S", "TuckER_I", "TuckER_D", "TuckER_MM")):
        out.append((f"decide.{m}.core", [f"model.{tucker}.W"]))
        out += [(f"decide.{m}.{b}.{p}", [f"model.{tucker}.{b}.{p}"]) for b in ("bn0", "bn1") for p in bn]
    for ours, theirs in (("fuse_entity", "fuse_e"), ("fuse_relation", "fuse_r")):
        out.append((f"{ours}.attn.weight", [f"model.{theirs}.ent_attn.weight"]))
        out += [(f"{ours}.heads.{h}.{i}.{p}", [f"model.{theirs}.modal{i + 1}_layers.{h}.1.{p}"])
                for h in range(heads) for i in range(len(names)) for p in ("weight", "bias")]
    return out


def tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


@torch.no_grad()
def copy_weights(ours: nn.Module, ref: nn.Module, mapping) -> list[tuple[str, list[str]]]:
    """Copy every mapped tensor of ours into ref; errors name any unmapped tensor or shape mismatch.
    Returns the mapping restricted to the tensors our model has (no `noise` without gate noise)."""
    mine, theirs = tensors(ours), tensors(ref)
    used, covered = [], set()
    for name, refs in mapping:
        if name not in mine:
            if name.startswith("experts.") and name.endswith(".noise") and not ours.cfg.gate_noise:
                continue
            raise ReferenceError(f"our model has no tensor {name!r}: update weight_map")
        missing = [r for r in refs if r not in theirs]
        if missing:
            raise ReferenceError(f"the reference has no tensor {missing[0]!r} (mapped from our {name!r})")
        src = mine[name]
        parts = [src] if len(refs) == 1 else list(src)
        if len(parts) != len(refs):
            raise ReferenceError(f"our {name!r} {tuple(src.shape)} stacks {len(parts)} tensors, the reference has "
                                 f"{len(refs)} ({refs[0]!r}, ...)")
        for part, r in zip(parts, refs):
            if part.shape != theirs[r].shape:
                raise ReferenceError(f"shape mismatch: our {name!r} {tuple(part.shape)} vs reference {r!r} "
                                     f"{tuple(theirs[r].shape)}")
            theirs[r].copy_(part)
        used.append((name, refs))
        covered.add(name)
        covered.update(refs)
    # FeatureTable's `present` masks have no counterpart: the reference knows no absent entities.
    for name in [n for n in mine if n.startswith("entity.") and n.endswith(".present")]:
        if not bool(mine[name].all()):
            raise ReferenceError(f"our {name!r} marks absent entities, which the reference cannot represent")
        covered.add(name)
    left = sorted(n for n in mine if n not in covered)
    if left:
        raise ReferenceError(f"our tensors not mapped to the reference: {left}")
    extra = sorted(n for n in theirs if n not in covered and not n.startswith(UNUSED_REFERENCE)
                   and not (n.endswith(".w_noise") and not ours.cfg.gate_noise))
    if extra:
        raise ReferenceError(f"reference tensors not mapped to ours: {extra}")
    return used


def build(RelMoE, MIEstimator, args, dtype, gate_noise: bool, seed: int):
    """(ours, reference as ModuleDict(model=RelMoE, estimator=MIEstimator)), equal weights, dropouts 0."""
    g = torch.Generator().manual_seed(seed)
    N, R = args.entities, args.relations
    img = torch.randn(N, args.image_dim, generator=g)
    txt = torch.randn(N, 384, generator=g)                                     # the MKG branch's text width
    ns = SimpleNamespace(device="cpu", entity2id=dict.fromkeys(range(N)), relation2id=dict.fromkeys(range(R)),
                         dim=args.dim, r_dim=args.relation_dim, pre_trained=0, dataset="MKG-W", n_exp=args.experts,
                         img=torch.nn.functional.normalize(img, dim=1), desp=torch.nn.functional.normalize(txt, dim=1))
    torch.manual_seed(seed)                                                    # the reference draws its init globally
    model = RelMoE(ns)
    ns.img_dim, ns.txt_dim = model.img_dim, model.txt_dim
    ref = nn.ModuleDict({"model": model, "estimator": MIEstimator(ns)})
    for mod in ref.modules():
        if isinstance(mod, nn.Dropout):
            mod.p = 0.0
        if hasattr(mod, "noisy_gating"):
            mod.noisy_gating = gate_noise
    features = {"image": model.img_entity_embeddings.weight.detach().clone(),
                "text": model.txt_entity_embeddings.weight.detach().clone()}
    inputs = ModelInputs(N, 2 * R, features, {m: torch.ones(N, dtype=torch.bool) for m in features}, "zeros")
    cfg = MoMoKConfig(dim=args.dim, relation_dim=args.relation_dim, num_experts=args.experts, mu=args.mu,
                      club_axis=args.club_axis, gate_noise=gate_noise, fusion_dropout=0.0, input_dropout=0.0,
                      hidden_dropout=0.0,
                      output_dropout=0.0)
    ours = MoMoK(cfg, inputs, g)
    with torch.no_grad():                                  # leave the initial values (zero gates, unit BN, ...)
        for p in ours.parameters():
            p.add_(torch.randn(p.shape, generator=g) * max(float(p.std()) if p.numel() > 1 else 0.0, 0.1))
        for name, b in ours.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + 1.5 * torch.rand(b.shape, generator=g))
    ours, ref = ours.to(dtype), ref.to(dtype)
    used = copy_weights(ours, ref, weight_map(ours.names, args.experts, cfg.fusion_heads))
    return ours, ref, used


def align_pair(num_experts: int) -> None:
    """Draw the pair as our `_pairs` does (advancing torch's stream alike) and seed Python's `random` so
    that the reference's `random.sample(range(K), k=2)` returns it."""
    pair = torch.randperm(num_experts)[:2].tolist()
    for s in range(100_000):
        random.seed(s)
        if random.sample(range(num_experts), k=2) == pair:
            random.seed(s)
            return
    raise RuntimeError(f"no Python seed gives the pair {pair}")


def probabilities(ours: MoMoK, e, r, seed: int) -> dict[str, torch.Tensor]:
    out = {}
    for d in (*DECISIONS, "mean"):
        ours.rescore(decision=d)
        torch.manual_seed(seed)
        out[d] = torch.sigmoid(ours.score_t(e, r))
    ours.rescore(decision="mean")
    return out


def reference_probabilities(ref, batch, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    preds = ref["model"](batch)[0]
    return {**dict(zip(DECISIONS, preds)), "mean": sum(preds) / 4.0}        # utils/data_loader.py:L172


def diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(max |a - b|, max |b|)."""
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        raise ReferenceError(f"shapes differ: ours {tuple(a.shape)} vs reference {tuple(b.shape)}")
    return float((a - b).abs().max()), float(b.abs().max())


def compare(reference: Path, *, entities=40, relations=5, batch=16, dim=8, relation_dim=6, image_dim=10,
            experts=3, mu=1.0, club_axis="expert", dtype=torch.float64, seed=0) -> list[tuple[str, float, float]]:
    """Rows (quantity, max |ours - ref|, max |ref|). `club_axis` is our
    MoMoKConfig field: "batch" (pre-fix) is to be compared with a checkout before commit 3c3932c."""
    # The tensors are tiny: one thread avoids synchronisation costs that made the check 20x slower on
    # the loaded 2-core machine (80 s vs 4 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return compare_rows(reference, entities=entities, relations=relations, batch=batch, dim=dim,
                            relation_dim=relation_dim, image_dim=image_dim, experts=experts, mu=mu,
                            club_axis=club_axis, dtype=dtype, seed=seed)
    finally:
        torch.set_num_threads(threads)


def compare_rows(reference: Path, *, entities, relations, batch, dim, relation_dim, image_dim, experts, mu,
                 club_axis, dtype, seed) -> list[tuple[str, float, float]]:
    RelMoE, MIEstimator = import_reference(reference)
    args = SimpleNamespace(entities=entities, relations=relations, dim=dim, relation_dim=relation_dim,
                           image_dim=image_dim, experts=experts, mu=mu, club_axis=club_axis)
    g = torch.Generator().manual_seed(seed + 1)
    e, r = torch.randint(entities, (batch,), generator=g), torch.randint(2 * relations, (batch,), generator=g)
    y = (torch.rand(batch, entities, generator=g) < 0.1).to(dtype) * 0.9 + 1.0 / entities   # TuckER smoothing
    idx = torch.stack([e, r], 1)
    rows = []
    for noise in (False, True):
        tag = "noise on" if noise else "noise off"
        ours, ref, used = build(RelMoE, MIEstimator, args, dtype, noise, seed)
        if not noise:
            ours.eval(), ref.eval()
            with torch.no_grad():
                mine, theirs = probabilities(ours, e, r, seed), reference_probabilities(ref, idx, seed)
            rows += [(f"eval P[{d}]", *diff(mine[d], theirs[d])) for d in mine]
        ours.train(), ref.train()
        with torch.no_grad():
            mine, theirs = probabilities(ours, e, r, seed), reference_probabilities(ref, idx, seed)
        rows += [(f"train ({tag}) P[{d}]", *diff(mine[d], theirs[d])) for d in mine]
        # The model step: train.py:L130-L132.
        torch.manual_seed(seed)
        loss = ours.kvsall_loss(e, r, y.float())              # our BCE is float32 whatever the model dtype
        loss.backward()
        torch.manual_seed(seed)
        output, embeddings = ref["model"](idx)
        bce = ref["model"].loss_func(output, y)
        align_pair(experts)
        ref_loss = bce + mu * ref["estimator"](embeddings)
        ref_loss.backward()
        rows.append((f"train ({tag}) loss", *diff(loss, ref_loss)))
        rows += gradient_rows(ours, ref, used, f"train ({tag}) grad")
        # The CLUB term alone, on the same expert outputs.
        outs = {m: ours.experts[m](ours.entity[m](e))[1] for m in ours.names}
        rows += [(f"train ({tag}) experts[{m}]", *diff(outs[m], emb)) for m, emb in zip(ours.names, embeddings)]
        torch.manual_seed(seed + 2)
        club = ours.club_penalty(outs)
        torch.manual_seed(seed + 2)
        align_pair(experts)
        rows.append((f"train ({tag}) CLUB term", *diff(club, ref["estimator"](embeddings))))
        # The estimator step: train.py:L135-L141.
        ours.zero_grad(), ref.zero_grad()
        torch.manual_seed(seed + 3)
        aux = ours.auxiliary_loss(e, r)
        aux.backward()
        torch.manual_seed(seed + 3)
        align_pair(experts)
        with torch.no_grad():
            emb = ref["model"].get_batch_embeddings(idx)
        est = ref["estimator"].train_estimator(emb)
        est.backward()
        rows.append((f"train ({tag}) estimator loss", *diff(aux, est)))
        rows += gradient_rows(ours, ref, [(n, rs) for n, rs in used if n.startswith("club.")],
                              f"train ({tag}) estimator grad")
    return rows


def gradient_rows(ours, ref, used, label: str) -> list[tuple[str, float, float]]:
    """One row per mapped parameter: its gradient in both models (stacked like ours where ours stacks)."""
    mine, theirs = dict(ours.named_parameters()), dict(ref.named_parameters())
    rows = []
    for name, refs in used:
        if name not in mine:
            continue                                                        # a buffer
        a = mine[name].grad
        gs = [theirs[n].grad for n in refs]
        if a is None or any(x is None for x in gs):
            raise ReferenceError(f"{label}: no gradient for our {name!r} or its reference {refs}")
        b = gs[0] if len(refs) == 1 else torch.stack(gs)
        rows.append((f"{label}[{name}]", *diff(a, b)))
    return rows


TOLERANCES = {"float64": (1e-5, 1e-12), "float32": (1e-4, 1e-8)}      # (rtol, atol), see the module docstring


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=True, type=Path, help="a clone of github.com/zjukg/MoMoK")
    p.add_argument("--dtype", choices=tuple(TOLERANCES), default="float64")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance (default 1e-5 float64, 1e-4 float32)")
    p.add_argument("--atol", type=float, default=None, help="absolute tolerance (default 1e-12 float64, 1e-8 float32)")
    p.add_argument("--entities", type=int, default=40)
    p.add_argument("--relations", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--relation-dim", type=int, default=6)
    p.add_argument("--image-dim", type=int, default=10)
    p.add_argument("--experts", type=int, default=3)
    p.add_argument("--mu", type=float, default=1.0, help="CLUB weight (1.0, so that its gradients weigh; code: 1e-4)")
    p.add_argument("--club-axis", choices=("expert", "batch"), default="expert",
                   help="our club_axis; 'batch' (the pre-fix indexing) matches a checkout before 3c3932c")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="one line per parameter gradient")
    a = p.parse_args(argv)
    rtol = a.rtol if a.rtol is not None else TOLERANCES[a.dtype][0]
    atol = a.atol if a.atol is not None else TOLERANCES[a.dtype][1]
    start = time.perf_counter()
    try:
        rows = compare(a.reference, entities=a.entities, relations=a.relations, batch=a.batch, dim=a.dim,
                       relation_dim=a.relation_dim, image_dim=a.image_dim, experts=a.experts, mu=a.mu,
                       club_axis=a.club_axis, dtype=getattr(torch, a.dtype), seed=a.seed)
    except ReferenceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # A quantity passes when max|ours - ref| <= atol + rtol * max|ref|; `excess` is the left side over the right.
    judged = [(name, err, err / scale if scale > 0 else (0.0 if err == 0 else float("inf")),
               err / (atol + rtol * scale)) for name, err, scale in rows]
    print(f"MoMoK (club_axis={a.club_axis}) vs reference at {a.reference} ({a.dtype}; a quantity passes when "
          f"max|ours - ref| <= {atol:g} + {rtol:g} max|ref|)")
    groups: dict[str, list] = {}
    for row in judged:
        groups.setdefault(row[0].split("[")[0] + "[*]" if "grad[" in row[0] else row[0], []).append(row)
    print(f"{'quantity':66s} {'max abs':>9s} {'max rel':>9s}")
    for key, items in groups.items():
        if not a.verbose and len(items) > 1:
            worst = max(items, key=lambda x: x[3])
            items = [(f"{key[:-3]} ({len(items)} tensors, worst {worst[0].split('[')[1][:-1]})",
                      max(x[1] for x in items), max(x[2] for x in items), worst[3])]
        for name, err, rel, excess in items:
            print(f"{name:66s} {err:9.2e} {rel:9.2e}{'' if excess <= 1 else '  FAIL'}")
    worst = max(judged, key=lambda x: x[3])
    ok = worst[3] <= 1
    print(f"{'PASS' if ok else 'FAIL'}: closest to its bound {worst[0]} (abs {worst[1]:.2e}, rel {worst[2]:.2e}); "
          f"{time.perf_counter() - start:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
