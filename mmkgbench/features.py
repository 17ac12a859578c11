"""Modality features: importing the files researchers have, MoMoK's preprocessing, and fill policies.

* **Import.** Two naming conventions exist for pre-computed features, each an (E, D) matrix whose
  row i is entity id i of `entity2id.txt`:
  - MoMoK (zjukg/MoMoK `datasets/<DS>/`): `img_features.pth` (image), `text_features.pth` (text);
  - NATIVE / AdaMF-MAT (`embeddings/`): `<DS>-visual.pth`, `-textual.pth`, `-numeric.pth`,
    `-audio.pth`, `-video.pth`.
  `find_feature_files` maps a folder's files to modalities; `import_features` reads them through
  `mmkgbench.loaders.load_features` (data, never code: `weights_only=True`, `allow_pickle=False`).
* **MoMoK preprocessing** (`momok_preprocess`, methods.md §1.1, MoMoK `train.py` and
  `models/RelMoE.py`): every row L2-normalised, then each matrix viewed as an (H, W) grid per entity
  and average-pooled to a fixed grid, per data set: DB15K image 4096 = 64×64 -> AvgPool 4 -> 16×16;
  text 768 = 12×64 -> 4×64; MKG-W/MKG-Y image raw (383), text 384 = 12×32 -> 4×64 (the width
  doubles: adaptive pooling to a wider grid repeats columns); KVC16K image and text 768 = 12×64 -> 4×64.
* **Fill policies.** Where `present[m]` is False the entity has no observation of modality m. What
  a model sees in those rows is one of `FILL_POLICIES`, chosen per run and recorded with it:
  `zeros`, `mean` (mean of the present rows: the imputation of MoMoK's DB15K preprocessing,
  methods.md §1.1) or `learned` (one trainable vector per modality; `FeatureTable`).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mmkgbench.data import MMKG, DataError
from mmkgbench.loaders import with_features

MOMOK_FILES = {"img_features": "image", "text_features": "text"}
NATIVE_SUFFIXES = {"visual": "image", "textual": "text", "numeric": "numeric", "audio": "audio", "video": "video"}
FEATURE_SUFFIXES = (".pth", ".pt", ".npy", ".npz")

# The dimensions of the published feature files (datasets README "Feature shapes"; AdaMF-MAT LFS
# sizes). Only used to tell a user who brings other files that MoMoK's pooling will not fit them.
PUBLISHED_DIMS = {
    "DB15K": {"image": 4096, "text": 768},
    "MKG-W": {"image": 383, "text": 384},
    "MKG-Y": {"image": 383, "text": 384},
    "KVC16K": {"image": 768, "text": 768},
}

# MoMoK's per-data-set reshape and pooling (models/RelMoE.py): modality -> ((H, W), (h, w)), or
# None to use the (normalised) features as they are.
MOMOK_POOLING = {
    "DB15K": {"image": ((64, 64), (16, 16)), "text": ((12, 64), (4, 64))},
    "MKG-W": {"image": None, "text": ((12, 32), (4, 64))},
    "MKG-Y": {"image": None, "text": ((12, 32), (4, 64))},
    "KVC16K": {"image": ((12, 64), (4, 64)), "text": ((12, 64), (4, 64))},
}
MOMOK_TRANSFORM_VERSION = "momok-pool-v1"


def find_feature_files(folder, dataset: str | None = None) -> dict[str, Path]:
    """modality -> file for the feature files in `folder`, by the MoMoK or the NATIVE convention.

    NATIVE files are `<dataset>-<kind>.<ext>`; when `dataset` is None any prefix is accepted, as
    long as all files share it. Two files for one modality (e.g. `img_features.pth` and
    `DB15K-visual.pth`) are an error rather than a silent choice.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "feature folder not found")
    candidates: list[tuple[str, Path]] = []
    prefixes = set()
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in FEATURE_SUFFIXES or not path.is_file():
            continue
        modality = MOMOK_FILES.get(path.stem)
        if modality is None:
            match = re.fullmatch(r"(.+)-(visual|textual|numeric|audio|video)", path.stem)
            if not match:
                continue
            prefix, kind = match.groups()
            if dataset is not None and prefix.lower() != dataset.lower():
                continue
            prefixes.add(prefix)
            modality = NATIVE_SUFFIXES[kind]
        candidates.append((modality, path))
    if len(prefixes) > 1:
        raise DataError(folder, f"feature files of several data sets {sorted(prefixes)}; pass the data set name")
    found: dict[str, Path] = {}
    for modality, path in candidates:
        if modality in found:
            raise DataError(folder, f"two feature files for modality {modality!r}: {found[modality].name} and "
                                    f"{path.name}; name the one to use in the grid's features table")
        found[modality] = path
    if not found:
        raise DataError(folder, "no feature files: expected img_features.pth / text_features.pth (MoMoK) or "
                                "<NAME>-visual/-textual/-numeric/-audio/-video.pth (NATIVE)")
    return found


def import_features(data: MMKG, source, present: dict[str, np.ndarray] | None = None) -> MMKG:
    """`data` with features from `source`: a folder (conventions above) or a dict modality -> file.

    Every entity counts as present unless `present` says otherwise: the published files hold a
    vector for every entity (MoMoK imputed missing DB15K images with the mean image beforehand), so
    absence cannot be read off the values.
    """
    files = find_feature_files(source, data.meta.get("benchmark")) if not isinstance(source, dict) else source
    return with_features(data, files, present)


def l2_normalise_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """x / max(||x_i||_2, eps) per row, as torch.nn.functional.normalize(p=2, dim=1). (N, D) -> (N, D)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.sqrt(np.einsum("nd,nd->n", x.astype(np.float64), x.astype(np.float64)))
    return (x / np.maximum(norm, eps)[:, None]).astype(np.float32)


def _pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) averaging weights of adaptive average pooling along one axis.

    Output cell i averages inputs [floor(i·n_in/n_out), ceil((i+1)·n_in/n_out)), PyTorch's rule; for
    n_out > n_in cells repeat inputs, and for n_in = k·n_out it is AvgPool with kernel = stride = k.
    """
    p = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        p[i, lo:hi] = 1.0 / (hi - lo)
    return p


def adaptive_avg_pool(x: np.ndarray, grid: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """Each row of x (N, H·W) viewed as an H×W grid, average-pooled to h×w: -> (N, h·w), float32."""
    (H, W), (h, w) = grid, out
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != H * W:
        raise ValueError(f"cannot view features of shape {x.shape} as {H}×{W} grids ({H * W} columns needed)")
    y = np.einsum("ih,nhw,jw->nij", _pool_matrix(H, h), x.reshape(-1, H, W).astype(np.float64), _pool_matrix(W, w),
                  optimize=True)
    return y.reshape(len(x), h * w).astype(np.float32)


def momok_preprocess(data: MMKG, dataset: str | None = None) -> MMKG:
    """MoMoK's feature preprocessing for `dataset` (default: the benchmark `data` was loaded as).

    image and text rows are L2-normalised, then pooled as in `MOMOK_POOLING`; other modalities are
    left as they are. A feature matrix whose width does not fit the data set's grid is an error that
    names the expected width, never a silent reshape.
    """
    from mmkgbench.catalog import get_benchmark
    name = dataset or data.meta.get("benchmark")
    if name is None:
        raise ValueError(f"{data.name}: MoMoK's pooling is defined per benchmark ({sorted(MOMOK_POOLING)}); "
                         "pass dataset=... for a data set loaded from a folder")
    bench = get_benchmark(name).name
    feats = dict(data.features)
    for m, rule in MOMOK_POOLING[bench].items():
        if m not in feats:
            continue
        x = l2_normalise_rows(feats[m])
        if rule is not None:
            (H, W), out = rule
            if x.shape[1] != H * W:
                where = data.meta.get("features", {}).get(m, f"features[{m!r}]")
                raise DataError(where, f"MoMoK's {bench} {m} preprocessing views each row as {H}×{W} = {H * W} "
                                       f"values, but the features have {x.shape[1]} columns (published: "
                                       f"{PUBLISHED_DIMS[bench][m]})")
            x = adaptive_avg_pool(x, (H, W), out)
        feats[m] = x
    meta = {**data.meta, "feature_transform": MOMOK_TRANSFORM_VERSION}
    return data.replace(features=feats, meta=meta)


def l2_transform(data: MMKG, dataset: str | None = None) -> MMKG:
    """Every modality's rows L2-normalised (no pooling)."""
    return data.replace(features={m: l2_normalise_rows(x) for m, x in data.features.items()},
                        meta={**data.meta, "feature_transform": "l2-v1"})


FEATURE_TRANSFORMS = {
    "none": lambda data, dataset=None: data,
    "l2": l2_transform,
    "momok": momok_preprocess,
}


# ---------------------------------------------------------------------------------------------
# What a model sees where a modality is absent.

FILL_POLICIES = ("zeros", "mean", "learned")


def fill_features(x: Tensor, present: Tensor, policy: str) -> Tensor:
    """x (E, d) with the rows where present (E,) is False replaced: zeros, or the mean of the present rows.

    `learned` fills with the mean here; the trainable vector lives in `FeatureTable`. With no present
    row at all, `mean` gives zeros.
    """
    if policy not in FILL_POLICIES:
        raise ValueError(f"unknown fill policy {policy!r}; choose from {list(FILL_POLICIES)}")
    present = present.to(torch.bool)
    if bool(present.all()):
        return x
    if policy == "zeros" or not bool(present.any()):
        fill = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
    else:
        fill = x[present].mean(0)
    return torch.where(present[:, None], x, fill)


class FeatureTable(nn.Module):
    """An entity's modality vector, with absent entities handled by the run's fill policy.

    features (E, d), present (E,). `forward(idx)` -> (..., d) for entity ids idx (all rows when idx is
    None). `trainable=True` makes the table a parameter initialised from the (filled) features, as
    MoMoK does (methods.md §1.1); `learned` adds one trainable vector (initialised at the mean of the
    present rows) that replaces every absent row, so absent entities share what the model learns
    about missing data instead of each getting a fake observation.
    """

    def __init__(self, features: Tensor, present: Tensor, policy: str, trainable: bool = False):
        super().__init__()
        filled = fill_features(features.float(), present, policy)
        if trainable:
            self.table = nn.Parameter(filled.clone())
        else:
            self.register_buffer("table", filled.clone())
        self.register_buffer("present", present.to(torch.bool).clone())
        self.missing = None
        if policy == "learned":
            pres = self.present
            start = features.float()[pres].mean(0) if bool(pres.any()) else torch.zeros(features.shape[1])
            self.missing = nn.Parameter(start)

    def forward(self, idx: Tensor | None = None) -> Tensor:
        rows = self.table if idx is None else self.table[idx]
        if self.missing is None:
            return rows
        pres = self.present if idx is None else self.present[idx]
        return torch.where(pres[..., None], rows, self.missing.to(rows.dtype))
