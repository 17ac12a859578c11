"""The house rules that code review would otherwise have to catch: reporting never loads PyTorch or a
model, and no module imports another module's private names."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from mmkgbench.grid import grid_from_dict
from mmkgbench.runner import run_grid

ROOT = Path(__file__).resolve().parent.parent


def test_report_on_stored_results_imports_neither_torch_nor_a_model(tmp_path):
    grid = {"models": ["distmult", "tucker"], "datasets": ["synthetic_tiny"], "seeds": [0],
            "train": {"max_epochs": 1, "eval_every": 1, "batch_size": 64, "num_negatives": 4},
            "overrides": {"distmult": {"dim": 8}, "tucker": {"entity_dim": 8, "relation_dim": 4}}}
    assert not run_grid(grid_from_dict(grid), tmp_path, progress=False, log=lambda *_: None)["failed"]
    script = ("import sys; from mmkgbench.cli import main; "
              f"code = main(['--results', {str(tmp_path)!r}, 'report', '--format', 'md,png', '--resamples', '200']); "
              "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('baselines', 'mmkgbench.models'))); "
              "print('HEAVY', heavy); sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout[-500:]


def test_no_module_imports_a_private_name_of_another():
    offenders = []
    for path in sorted([*ROOT.glob("mmkgbench/**/*.py"), *ROOT.glob("baselines/*.py"), *ROOT.glob("benchmarks/*.py"),
                        *ROOT.glob("tests/*.py"), ROOT / "run_bench.py"]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("mmkgbench",
                                                                                                  "baselines"):
                offenders += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders, offenders
