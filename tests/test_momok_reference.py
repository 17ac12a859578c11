"""Our MoMoK against the reference code (zjukg/MoMoK), through benchmarks/check_momok_reference.py.

Runs only where MMKGBENCH_MOMOK_REF points at a clone of https://github.com/zjukg/MoMoK (nothing of
it is vendored here). The clone's CLUB indexing decides which of our `club_axis` values must match
it: "expert" for a checkout at or after commit 3c3932c (2025-06-12), "batch" before it; the other
value must fail the check, which shows the check can fail.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REFERENCE = os.environ.get("MMKGBENCH_MOMOK_REF")
pytestmark = pytest.mark.skipif(
    not REFERENCE, reason="MMKGBENCH_MOMOK_REF is not set (point it at a clone of github.com/zjukg/MoMoK)")

SMALL = ["--entities", "20", "--relations", "3", "--batch", "8", "--dim", "6", "--relation-dim", "5",
         "--image-dim", "7"]


def reference_axis(clone: Path) -> str:
    """'expert' when the clone's MIEstimator indexes strs[:, idx1, :] (fixed in 3c3932c), else 'batch'."""
    source = (clone / "models" / "modules.py").read_text()
    return "expert" if "strs[:, idx1, :]" in source else "batch"


@pytest.fixture(scope="module")
def clone():
    path = Path(REFERENCE).expanduser()
    if not (path / "models" / "RelMoE.py").is_file():
        pytest.fail(f"MMKGBENCH_MOMOK_REF={REFERENCE} is not a clone of zjukg/MoMoK (no models/RelMoE.py)")
    return path


def test_matches_the_reference_and_fails_with_the_other_club_axis(clone, capsys):
    from benchmarks.check_momok_reference import main
    axis = reference_axis(clone)
    other = "batch" if axis == "expert" else "expert"
    assert main(["--reference", str(clone), "--club-axis", axis, *SMALL]) == 0, capsys.readouterr().out
    assert main(["--reference", str(clone), "--club-axis", other, *SMALL]) == 1
    out = capsys.readouterr().out
    assert "CLUB term" in out and "FAIL" in out.split(f"club_axis={other}")[1]


def test_float32_within_its_tolerance(clone):
    from benchmarks.check_momok_reference import main
    assert main(["--reference", str(clone), "--club-axis", reference_axis(clone), "--dtype", "float32", *SMALL]) == 0
