"""Name lookup shared by every registry (models, scenarios, data sets)."""
from __future__ import annotations


def normalise(name: str) -> str:
    """Registry keys are lower snake_case: 'TuckER' and 'tucker' and 'Tuck-ER' name one thing."""
    return name.strip().lower().replace("-", "_")


def lookup(registry: dict, name: str, what: str):
    """registry[name] after normalising; an unknown name raises KeyError listing the valid ones."""
    key = normalise(name)
    if key not in registry:
        raise KeyError(f"unknown {what} {name!r}; choose from {sorted(registry)}")
    return registry[key]
