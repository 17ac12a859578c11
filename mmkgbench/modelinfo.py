"""What the report needs to know about the registered models, without importing torch or a model.

`MODEL_INFO` is a literal dict in display order (the order of every table's rows): registry key ->
display name and citation. `mmkgbench.models.MODELS` (the classes) has the same keys in the same
order (tests/test_models.py), so the one list serves both `run` and `report`; `report` on stored
results starts without loading PyTorch (docs/performance.md).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    name: str          # display name, as the paper writes it
    citation: str      # paper and reference implementation, shown by `run_bench.py list`


MODEL_INFO: dict[str, ModelInfo] = {
    "transe": ModelInfo("TransE", "Bordes et al. 2013 (NeurIPS 26), not on arXiv"),
    "distmult": ModelInfo("DistMult", "Yang et al. 2015 (ICLR), arXiv:1412.6575"),
    "complex": ModelInfo("ComplEx", "Trouillon et al. 2016 (ICML), arXiv:1606.06357"),
    "rotate": ModelInfo("RotatE", "Sun et al. 2019 (ICLR), arXiv:1902.10197"),
    "pairre": ModelInfo("PairRE", "Chao et al. 2021 (ACL), arXiv:2011.03798"),
    "tucker": ModelInfo("TuckER", "Balažević et al. 2019 (EMNLP), arXiv:1901.09590"),
    "ikrl": ModelInfo("IKRL", "Xie et al. 2017 (IJCAI); as zjukg/NATIVE IKRL.py"),
    "tbkgc": ModelInfo("TBKGC", "Mousselly-Sergieh et al. 2018 (*SEM); as zjukg/NATIVE TBKGC.py"),
    "transae": ModelInfo("TransAE", "Wang et al. 2019 (IJCNN); the paper's auto-encoder (NATIVE's TransAE is TransE)"),
    "mmkrl": ModelInfo("MMKRL", "Lu et al. 2022 (Applied Intelligence); as zjukg/NATIVE MMKRL.py, no adversarial part"),
    "rsme": ModelInfo("RSME", "Wang et al. 2021 (ACM MM); as zjukg/NATIVE RSME.py, no forget gate"),
    "vbkgc": ModelInfo("VBKGC", "Zhang et al. 2022, arXiv:2209.07084; as zjukg/NATIVE VBRotatE/VBTransE"),
    "qeb": ModelInfo("QEB", "Wang et al. 2023 (ACM MM, TIVA-KG); as zjukg/NATIVE QEB.py"),
    "otkge": ModelInfo("OTKGE", "Cao et al. 2022 (NeurIPS); as the authors' code Lion-ZS/OTKGE"),
    "mose": ModelInfo("MoSE", "Zhao et al. 2022 (EMNLP); as OreOZhao/MoSE4MKGC, ComplEx members, ensemble switch"),
    "imf": ModelInfo("IMF", "Li et al. 2023 (WWW); as HestiaSky/IMF-Pytorch, TuckER decisions shared with MoMoK"),
    "adamf": ModelInfo("AdaMF", "Zhang et al. 2024 (COLING); as zjukg/AdaMF-MAT AdvMixRotatE, with MAT"),
    "native": ModelInfo("NativE", "Zhang et al. 2024 (SIGIR); as zjukg/NATIVE AdvRelRotatE, WGAN-style training"),
    "vista": ModelInfo("VISTA", "Lee et al. 2023 (Findings of EMNLP); as bdi-lab/VISTA, reciprocal relations, k = 1"),
    "momok": ModelInfo("MoMoK", "Zhang et al. 2025 (ICLR), arXiv:2405.16869; code zjukg/MoMoK"),
    "mocme": ModelInfo("MoCME", "Li 2025, arXiv:2507.20620 (no public code; methods.md §2.3 readings)"),
}


def model_order(names) -> list[str]:
    """Registry order first (deterministic tables), then anything else (grid variants) alphabetically."""
    names = set(names)
    reg = [m for m in MODEL_INFO if m in names]
    return reg + sorted(names - set(reg))
