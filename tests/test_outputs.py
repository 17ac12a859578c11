"""`report` end to end: stored runs in, every table and figure out, deterministic, nothing trained."""
from __future__ import annotations

import pandas as pd
import pytest

from mmkgbench.cli import main
from mmkgbench.outputs import cd_scores, default_reference, parse_formats, write_report
from mmkgbench.results import load_rows
from mmkgbench.run import GRID_DIR, grid_from_dict, run_grid, tomllib


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The smoke grid's models with two seeds, clean and one feature scenario: 2 epochs each."""
    root = tmp_path_factory.mktemp("results")
    smoke = tomllib.loads((GRID_DIR / "smoke.toml").read_text())
    spec = {**smoke, "models": ["distmult", "tucker", "momok", "mocme"], "seeds": [0, 1],
            "scenarios": {"clean": [0.0], "missing": [0.5], "sparse": [0.3]}}
    run_grid(grid_from_dict(spec), root, progress=False, log=quiet)
    return root, load_rows(root)


def test_report_writes_every_table_and_figure(stored, tmp_path):
    root, rows = stored
    out = write_report(rows, root, formats=("md", "tex", "png", "pdf"), out=tmp_path, resamples=500)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in out["paths"])
    for expected in ["tables/summary.csv", "tables/significance.csv", "tables/main.md", "tables/main.tex",
                     "tables/robustness.md", "tables/robustness.tex", "figures/cd_diagram.png",
                     "figures/cd_diagram.pdf", "figures/cd_diagram.csv",
                     "figures/robustness_synthetic-tiny_missing.pdf", "figures/momok-gates_synthetic-tiny.png",
                     "figures/momok-modalities_synthetic-tiny.png", "figures/mocme-weights_synthetic-tiny.csv"]:
        assert expected in names
    # per-relation MRR: the reference against the strongest other model on clean
    assert len([n for n in names if n.startswith("figures/per-relation_synthetic-tiny_") and
                n.endswith("_vs_momok.png")]) == 1
    assert all(p.is_file() for p in out["paths"])
    assert out["reference"] == "momok"                                  # the suite's subject, when present
    sig = pd.read_csv(tmp_path / "tables" / "significance.csv")
    # clean: 3 models x 4 metrics; missing: mocme only (structure-only models are not run under it);
    # sparse: 3 x 4
    assert len(sig) == 12 + 4 + 12 and set(sig["reference"]) == {"momok"}
    assert sig["p"].between(1 / 501, 1).all() and (sig["p_holm"] >= sig["p"]).all()
    main_md = (tmp_path / "tables" / "main.md").read_text()
    assert "momok (ref.)" in main_md and "after Holm correction over the 12 comparisons" in main_md
    assert r"\toprule" in (tmp_path / "tables" / "main.tex").read_text()
    weights = pd.read_csv(tmp_path / "figures" / "mocme-weights_synthetic-tiny.csv")
    assert list(dict.fromkeys(weights["scenario"])) == ["clean", "missing", "sparse"]
    assert "paper_momok-main" not in " ".join(names)                  # no run on a published benchmark
    # the same rows give the same files, byte for byte
    again = write_report(rows, root, formats=("md", "tex", "png"), out=tmp_path / "again", resamples=500)
    for p in again["paths"]:
        assert p.read_bytes() == (tmp_path / p.relative_to(tmp_path / "again")).read_bytes(), p.name


def test_a_chosen_reference_and_format_errors(stored, tmp_path):
    root, rows = stored
    out = write_report(rows, root, formats=("md",), reference="tucker", out=tmp_path, resamples=200)
    assert [p.name for p in out["paths"]] == ["summary.csv", "significance.csv", "main.md", "robustness.md"]
    assert "tucker (ref.)" in (tmp_path / "tables" / "main.md").read_text()
    with pytest.raises(ValueError, match="reference model 'transe' has no stored runs here; models present: "
                                         "distmult, tucker, momok, mocme"):
        write_report(rows, root, reference="transe", out=tmp_path)
    with pytest.raises(ValueError, match="unknown report format.*svg.*valid: md, tex, png, pdf"):
        parse_formats("md,svg")


def test_default_reference_without_momok_or_mocme_is_the_best_clean_model():
    rows = pd.DataFrame({"model": ["a", "b", "a", "b"], "scenario": "clean", "metric": "mrr", "side": "both",
                         "value": [0.2, 0.3, 0.2, 0.1]})
    assert default_reference(rows) == "a"


def test_cd_blocks_are_data_sets_when_there_are_two(stored):
    _, rows = stored
    scores, kind = cd_scores(rows)
    assert kind.startswith("scenario cells") and list(scores.columns) == ["distmult", "tucker", "momok", "mocme"]
    assert len(scores) == 2                 # clean and sparse: missing lacks the structure-only models
    two = pd.concat([rows, rows.assign(dataset="other")])
    scores, kind = cd_scores(two)
    assert kind == "data sets (clean)" and list(scores.index) == ["other", "synthetic_tiny"]


def test_report_command_prints_markers_and_lists_files(stored, capsys):
    root, _ = stored
    assert main(["--results", str(root), "report", "--format", "md,png", "--resamples", "300"]) == 0
    text = capsys.readouterr().out
    assert "momok (ref.)" in text and "† differs from momok" in text and "reference model momok" in text
    assert str(root / "figures" / "cd_diagram.png") in text
    assert main(["--results", str(root), "report", "--format", "gif"]) == 2
