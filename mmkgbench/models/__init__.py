"""The model registry: a literal dict from registry key to model class.

Adding a model is one file (a config dataclass and a `KGEModel` subclass, see `mmkgbench/model.py`) and one
line here. Keys are lower snake_case; `get_model` lists the valid ones when a name is unknown.
"""
from __future__ import annotations

from baselines.adamf import AdaMF, NativE
from baselines.complex import ComplEx
from baselines.distmult import DistMult
from baselines.ikrl import IKRL
from baselines.imf import IMF
from baselines.mmkrl import MMKRL
from baselines.mose import MoSE
from baselines.otkge import OTKGE
from baselines.pairre import PairRE
from baselines.qeb import QEB
from baselines.rotate import RotatE
from baselines.rsme import RSME
from baselines.tbkgc import TBKGC
from baselines.transe import TransE
from baselines.transae import TransAE
from baselines.tucker import TuckER
from baselines.vbkgc import VBKGC
from baselines.vista import VISTA
from mmkgbench.model import KGEModel, ModelInputs
from mmkgbench.models.mocme import MoCME
from mmkgbench.models.momok import MoMoK
from mmkgbench.registry import lookup

MODELS: dict[str, type[KGEModel]] = {
    "transe": TransE,
    "distmult": DistMult,
    "complex": ComplEx,
    "rotate": RotatE,
    "pairre": PairRE,
    "tucker": TuckER,
    "ikrl": IKRL,
    "tbkgc": TBKGC,
    "transae": TransAE,
    "mmkrl": MMKRL,
    "rsme": RSME,
    "vbkgc": VBKGC,
    "qeb": QEB,
    "otkge": OTKGE,
    "mose": MoSE,
    "imf": IMF,
    "adamf": AdaMF,
    "native": NativE,
    "vista": VISTA,
    "momok": MoMoK,
    "mocme": MoCME,
}


def get_model(name: str) -> type[KGEModel]:
    """The model class registered as `name` (case and '-' insensitive)."""
    return lookup(MODELS, name, "model")


__all__ = ["MODELS", "KGEModel", "ModelInputs", "get_model"]
