"""A seeded synthetic multi-modal KG that needs no files: the embedded default test bed.

Generative story (all from one `numpy.random.Generator`, so a seed fixes everything):

1. Entities. Each entity e has a latent vector z_e in R^k drawn around one of `num_types`
   cluster centres (entity types), and a popularity drawn from a Zipf-like law, so degrees are
   skewed as in real KGs: a few hubs, many rare entities.
2. Relations. Relation r has a domain and a range type (as real KG relations do) and a rule: a
   random rotation A_r (k x k). For a head h of the domain type (drawn by popularity), the tail
   is an entity of the range type sampled as t = argmax_e (beta <A_r z_h, z_e> + Gumbel noise), i.e.
   from softmax(beta <A_r z_h, z_e>) restricted to the `fanout` entities with the highest affinity.
   `fanout` bounds how many answers a query can have and `sharpness` (beta) how unevenly they are
   drawn; together they give 1-to-N relations whose answers are predictable from the latent factors.
   Duplicates are dropped.
3. Modalities. For modality m, features are a noisy random projection of the latent factors:
   x_e = sqrt(s_m) * standardise(z_e P_m) + sqrt(1 - s_m) * noise, with P_m in R^(k x d_m).
   **`signal[m]` = s_m in [0, 1] is the knob**: the fraction of each feature's variance that comes
   from the latent factors (1 = noiseless projection, 0 = pure noise). `coverage[m]` is the
   fraction of entities that have the modality; the rest get zero rows and present = False.
4. Splits. Triples are shuffled into train/valid/test; a valid/test triple whose entity or
   relation would be unseen in train is moved to train, so every entity is trainable.

With a dense graph a structure-only model recovers the latent factors from the triples; with a
sparse one (few triples per entity) it cannot, while the features still carry them, so a model
that reads informative features beats it (tests/test_synthetic.py shows this).
"""
from __future__ import annotations

import numpy as np

from mmkgbench.data import MMKG


def synthetic_mmkg(*, num_entities: int = 1000, num_relations: int = 16, num_triples: int = 20000,
                   latent_dim: int = 16, num_types: int = 8, sharpness: float = 2.0, fanout: int = 10, skew: float = 0.5,
                   modalities: dict[str, int] | None = None, signal: dict[str, float] | None = None,
                   coverage: dict[str, float] | None = None, valid_frac: float = 0.1, test_frac: float = 0.1,
                   seed: int = 0, name: str = "synthetic") -> MMKG:
    """Generate a synthetic MMKG (see the module docstring for the model and the knobs).

    modalities: name -> feature dim (default image 64, text 32); signal: name -> s_m in [0, 1]
    (default image 0.9, text 0.6); coverage: name -> fraction of entities with the modality (1.0).
    num_triples counts draws before de-duplication, so the result can hold slightly fewer.
    """
    modalities = {"image": 64, "text": 32} if modalities is None else dict(modalities)
    signal = {"image": 0.9, "text": 0.6, **(signal or {})}
    coverage = {m: 1.0 for m in modalities} | dict(coverage or {})
    for m in modalities:
        if not 0.0 <= signal.get(m, 0.5) <= 1.0:
            raise ValueError(f"signal[{m!r}] must be in [0, 1], got {signal[m]}")
        if not 0.0 <= coverage[m] <= 1.0:
            raise ValueError(f"coverage[{m!r}] must be in [0, 1], got {coverage[m]}")
    if not (0 <= valid_frac and 0 <= test_frac and valid_frac + test_frac < 1):
        raise ValueError("valid_frac and test_frac must be >= 0 with valid_frac + test_frac < 1")
    rng = np.random.default_rng(seed)
    E, R, k = num_entities, num_relations, latent_dim

    centres = rng.normal(size=(num_types, k))
    types = rng.integers(num_types, size=E)
    z = (0.3 * centres[types] + rng.normal(size=(E, k))) / np.sqrt(k)
    popularity = 1.0 / (rng.permutation(E) + 5.0) ** skew
    popularity /= popularity.sum()

    # Rules are rotations (orthogonal maps): they move the latent space without collapsing it, so
    # answers spread over the range type instead of piling onto a few hubs that a popularity prior
    # alone would predict.
    A = np.linalg.qr(rng.normal(size=(R, k, k)))[0]
    domain = rng.integers(num_types, size=R)                     # type of the heads of r
    range_ = rng.integers(num_types, size=R)                     # type of the tails of r
    rel = rng.integers(R, size=num_triples)
    heads = np.empty(num_triples, dtype=np.int64)
    for r in range(R):                                           # heads of r: its domain type, by popularity
        idx = np.flatnonzero(rel == r)
        pool = np.flatnonzero(types == domain[r])
        heads[idx] = rng.choice(pool, size=len(idx), p=popularity[pool] / popularity[pool].sum())
    tails = np.empty(num_triples, dtype=np.int64)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    for start in range(0, num_triples, 2048):   # chunked so memory stays O(2048 x E)
        sl = slice(start, start + 2048)
        u = np.einsum("bk,bkj->bj", zn[heads[sl]], A[rel[sl]])
        affinity = u @ zn.T
        affinity[types[None, :] != range_[rel[sl]][:, None]] = -np.inf   # tails have the range type
        affinity[np.arange(len(u)), heads[sl]] = -np.inf        # no self-loops
        # Only the `fanout` best-matching entities are possible tails (a rule, not a preference) ...
        cut = np.partition(affinity, -min(fanout, E), axis=1)[:, -min(fanout, E)][:, None]
        logits = np.where(affinity >= cut, sharpness * np.sqrt(k) * affinity, -np.inf)
        # ... and among them the tail is drawn from softmax(logits) by the Gumbel-max trick.
        tails[sl] = (logits + rng.gumbel(size=(len(u), E))).argmax(1)
        tails[sl][~np.isfinite(logits).any(1)] = -1              # no possible tail (tiny graphs): dropped
    keep = tails >= 0
    triples = np.unique(np.stack([heads[keep], rel[keep], tails[keep]], 1), axis=0)
    triples = triples[rng.permutation(len(triples))]

    n = len(triples)
    n_valid, n_test = int(round(valid_frac * n)), int(round(test_frac * n))
    held = triples[: n_valid + n_test]
    train = triples[n_valid + n_test:]
    seen_e = np.zeros(E, bool)
    seen_r = np.zeros(R, bool)
    seen_e[train[:, [0, 2]].ravel()] = True
    seen_r[train[:, 1]] = True
    ok = seen_e[held[:, 0]] & seen_e[held[:, 2]] & seen_r[held[:, 1]]
    train = np.concatenate([train, held[~ok]])
    held_ok = held[ok]
    valid, test = held_ok[: int(round(len(held_ok) * valid_frac / max(valid_frac + test_frac, 1e-12)))], None
    test = held_ok[len(valid):]

    features, present = {}, {}
    for m, d in modalities.items():
        P = rng.normal(size=(k, d))
        clean = z @ P
        clean = (clean - clean.mean(0)) / (clean.std(0) + 1e-8)
        s = signal.get(m, 0.5)
        x = np.sqrt(s) * clean + np.sqrt(1.0 - s) * rng.normal(size=(E, d))
        has = rng.random(E) < coverage[m] if coverage[m] < 1.0 else np.ones(E, bool)
        x[~has] = 0.0
        features[m], present[m] = x.astype(np.float32), has

    meta = {"generator": "synthetic_mmkg", "seed": seed, "num_entities": E, "num_relations": R,
            "num_triples": num_triples, "latent_dim": k, "num_types": num_types, "sharpness": sharpness, "fanout": fanout, "skew": skew,
            "modalities": modalities, "signal": {m: signal.get(m, 0.5) for m in modalities},
            "coverage": coverage, "valid_frac": valid_frac, "test_frac": test_frac}
    return MMKG(name=name, entities=tuple(f"e{i}" for i in range(E)), relations=tuple(f"r{i}" for i in range(R)),
                train=train, valid=valid, test=test, features=features, present=present, meta=meta)
