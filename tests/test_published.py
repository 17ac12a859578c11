"""Published numbers stored as data (mmkgbench/published/) and the paper-layout comparison tables."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest

from mmkgbench.published import FOLDER, PUBLISHED, benchmark_of, load_published, paper_frame, paper_table
from mmkgbench.tables import to_latex, to_markdown

GOLDEN = Path(__file__).parent / "golden"
COLUMNS = ["run_id", "model", "dataset", "scenario", "scenario_version", "level", "seed", "split", "side", "metric",
           "value", "protocol"]


def cell(frame, row, dataset, metric):
    hit = frame[(frame["row"] == row) & (frame["dataset"] == dataset) & (frame["metric"] == metric)]
    assert len(hit) == 1, (row, dataset, metric)
    return hit.iloc[0]


def result_rows(entries, protocol="harness-v2", scenario="clean"):
    """Minimal stored result rows: (model, dataset, seed, metric, value)."""
    return pd.DataFrame([{"run_id": f"{model}-{dataset}-{seed}", "model": model, "dataset": dataset,
                          "scenario": scenario, "scenario_version": 1, "level": 0.0, "seed": seed, "split": "test",
                          "side": "both",
                          "metric": metric, "value": value, "protocol": protocol}
                         for model, dataset, seed, metric, value in entries], columns=COLUMNS)


# --- the shipped files ---------------------------------------------------------------------------

def test_shipped_files_load_and_match_the_paper():
    main = load_published("momok-main")
    assert list(dict.fromkeys(main["row"]))[:3] == ["TransE", "DistMult", "ComplEx"]
    assert main["row"].nunique() == 21 and len(main) == 21 * 12
    assert cell(main, "MoMoK", "DB15K", "mrr")["value"] == pytest.approx(0.3957)
    assert cell(main, "TuckER", "KVC16K", "hits@10")["value"] == pytest.approx(0.2758)
    assert cell(main, "MoSE*", "MKG-Y", "hits@1")["value"] == pytest.approx(0.3364)
    assert cell(main, "TransE", "KVC16K", "hits@1")["value"] == pytest.approx(0.0064)
    pairre = cell(main, "PairRE", "KVC16K", "mrr")
    assert math.isnan(pairre["value"]) and pairre["status"] == "not reported"
    assert cell(main, "TuckER", "DB15K", "mrr")["model"] == "tucker"
    # the starred rows (the MoMoK authors' reruns) name the model they rerun
    assert cell(main, "MoSE*", "DB15K", "mrr")["model"] == "mose" and cell(main, "IMF*", "MKG-W", "mrr")["model"] == "imf"
    assert cell(main, "AdaMF", "MKG-W", "mrr")["model"] == "adamf" and cell(main, "OTKGE", "DB15K", "mrr")["model"] == "otkge"
    assert cell(main, "IKRL", "DB15K", "mrr")["section"] == "Multi-modal KGC Methods"
    assert set(main["source"]) == {"paper"} and main["citation"].str.contains("2405.16869").all()
    assert "Improvements" not in set(main["row"])

    abl = load_published("momok-ablation")
    assert abl["row"].nunique() == 10 and len(abl) == 10 * 6
    w = cell(abl, "(2.4) w/o joint training", "DB15K", "hits@10")
    assert w["value"] == pytest.approx(0.5273) and w["model"] == "momok_no_joint_training"
    assert cell(abl, "(2.1) w/o relational ε_r", "MKG-W", "mrr")["value"] == pytest.approx(0.3550)
    assert cell(abl, "(1.1) Structure Modality", "DB15K", "mrr")["section"] == "Modality Contribution"
    assert list(dict.fromkeys(abl["model"]))[:2] == ["momok", "momok_structure"]

    moc = load_published("mocme-main")
    assert len(moc) == 5 * 3 and moc["value"].isna().all() and set(moc["status"]) == {"not yet obtained"}
    assert set(moc["dataset"]) == {"MKG-W", "MKG-Y", "DB15K", "TIVA", "KVC16K"} and set(moc["model"]) == {"mocme"}


def test_shipped_values_are_written_exactly():
    """Every stored value is the paper's two-decimal percentage / 100, exactly (no float noise)."""
    for file in PUBLISHED.values():
        with open(FOLDER / file, encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                if rec["value"]:
                    assert len(rec["value"].split(".")[1]) == 4, (file, rec)


def test_unknown_table_lists_the_valid_ones():
    with pytest.raises(ValueError, match="momok-ablation"):
        load_published("momok-table9")


# --- validation --------------------------------------------------------------------------------------

HEADER = "table,section,row,model,dataset,metric,value,status,source,citation\n"


def write(tmp_path, *lines, header=HEADER):
    path = tmp_path / "t.csv"
    path.write_text(header + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = "momok-main,S,TuckER,tucker,DB15K,mrr,0.3386,published,paper,Zhang"


def test_a_small_good_file_loads(tmp_path):
    f = load_published("momok-main", path=write(tmp_path, GOOD, "momok-main,S,PairRE,pairre,KVC16K,mrr,,not reported,"
                                                                 "paper,Zhang"))
    assert f["value"].iloc[0] == 0.3386 and math.isnan(f["value"].iloc[1])


@pytest.mark.parametrize("bad, line, problem", [
    ("momok-main,S,TuckER,tucker,DB15K,mrr,33.86,published,paper,Zhang", 3, "out of range"),
    (GOOD, 3, "duplicate cell"),
    ("momok-main,S,TuckER,tucker,DB15K,mr,0.3386,published,paper,Zhang", 3, "unknown metric 'mr'"),
    ("momok-main,S,TuckER,tucker,DB15K,hits@3,,published,paper,Zhang", 3, "empty value"),
    ("momok-main,S,TuckER,tucker,DB15K,hits@3,0.1,not reported,paper,Zhang", 3, "status 'not reported'"),
    ("momok-main,S,TuckER,tucker,DB15K,hits@3,abc,published,paper,Zhang", 3, "not a number"),
    ("momok-main,S,TuckER,tucker,DB15K,hits@3,0.1,published,paper", 3, "wrong number of fields"),
    ("momok-ablation,S,TuckER,tucker,DB15K,hits@3,0.1,published,paper,Zhang", 3, "expected 'momok-main'"),
])
def test_bad_rows_name_file_line_and_problem(tmp_path, bad, line, problem):
    path = write(tmp_path, GOOD, bad)
    with pytest.raises(ValueError) as err:
        load_published("momok-main", path=path)
    assert str(path) in str(err.value) and f"line {line}:" in str(err.value) and problem in str(err.value)


def test_missing_column_is_refused(tmp_path):
    path = write(tmp_path, GOOD.rsplit(",", 1)[0], header=HEADER.replace(",citation", ""))
    with pytest.raises(ValueError, match=r"line 1: missing columns \['citation'\]"):
        load_published("momok-main", path=path)


# --- benchmark_of ----------------------------------------------------------------------------------

@pytest.mark.parametrize("label, bench", [
    ("DB15K", "DB15K"), ("MKG-W+image+text@momok", "MKG-W"), ("DB15K+numeric+text~e5-small", "DB15K"),
    ("KVC16K", "KVC16K"), ("MKG-Y+image", "MKG-Y"), ("DB15K[clean]", None), ("MKG-W+image+text@momok[clean]", None),
    ("synthetic_small", None), ("TIVA", None), ("DB15K-small", None), ("MKG-WX", None),
    # test kept as published: laid beside the paper; any other split policy is not
    ("DB15K[clean-valid]", "DB15K"), ("DB15K+image+text@momok[clean-valid]", "DB15K"),
    ("DB15K[as_published]", None), ("DB15K[tidy]", None), ("[clean-valid]", None),
])
def test_benchmark_of(label, bench):
    assert benchmark_of(label) == bench


# --- paper_frame / paper_table ---------------------------------------------------------------------------

def test_tucker_on_db15k_beside_the_paper():
    rows = result_rows([("tucker", "DB15K", 0, "mrr", 0.30), ("tucker", "DB15K", 1, "mrr", 0.34),
                        # not compared: another protocol, a perturbed scenario, a clean-split variant
                        ("tucker", "DB15K", 0, "hits@1", 0.9)])
    rows = pd.concat([rows, result_rows([("tucker", "DB15K", 0, "mrr", 0.9)], protocol="reference-v1"),
                      result_rows([("tucker", "DB15K", 5, "mrr", 0.9)], scenario="noisy"),
                      result_rows([("tucker", "DB15K[clean]", 0, "mrr", 0.9)])])
    frame = paper_frame(rows, "momok-main")
    assert len(frame) == 252 and list(dict.fromkeys(frame["row"]))[-1] == "MoMoK"
    mrr = cell(frame, "TuckER", "DB15K", "mrr")
    assert mrr["ours"] == pytest.approx(0.32) and mrr["seeds"] == 2 and mrr["diff"] == pytest.approx(0.32 - 0.3386)
    assert mrr["ours_std"] == pytest.approx(0.0282843, abs=1e-6) and mrr["protocol"] == "harness-v2"
    h1 = cell(frame, "TuckER", "DB15K", "hits@1")
    assert h1["ours"] == pytest.approx(0.9) and h1["seeds"] == 1 and math.isnan(h1["ours_std"])
    assert frame.loc[frame["row"] != "TuckER", "ours"].isna().all()

    table = paper_table(frame)
    md = to_markdown(table)
    i, j, k = (md.index("| TuckER "), md.index("| TuckER: ours (harness-v2)"), md.index("| TuckER: Δ"))
    assert i < j < k < md.index("| IKRL ")
    delta_line = md[k:].splitlines()[0]
    assert "-1.86" in delta_line and "+64.66" in delta_line           # 0.90 - 0.2534
    assert "32.00 ± 2.83" in md[j:k]
    assert "**39.57**" in md                                          # MoMoK best, the ours row takes no part
    assert "Δ = ours − published" in md and "harness-v2" in md and "AdaMF" in md and "2 seeds" in md

    tex = to_latex(table)
    assert r"\toprule" in tex and r"\textbf{39.57}" in tex and r"\textbf{90.00}" not in tex
    assert r"TuckER: $\Delta$" in tex and r"\label{tab:paper-momok-main}" in tex


def test_one_seed_is_said_without_a_std():
    md = to_markdown(paper_table(paper_frame(result_rows([("tucker", "DB15K", 0, "mrr", 0.30)]), "momok-main")))
    assert "one seed (no std)" in md and "over 1 seeds" not in md

def test_clean_valid_runs_sit_beside_the_paper_under_their_label():
    label = "DB15K+image+text@momok[clean-valid]"
    rows = pd.concat([result_rows([("momok", label, 0, "mrr", 0.36), ("momok", label, 1, "mrr", 0.38)]),
                      result_rows([("momok", "DB15K+image+text@momok[clean]", 0, "mrr", 0.9)])])
    frame = paper_frame(rows, "momok-main")
    mrr = cell(frame, "MoMoK", "DB15K", "mrr")
    assert mrr["ours"] == pytest.approx(0.37) and mrr["seeds"] == 2 and mrr["ours_dataset"] == label
    md = to_markdown(paper_table(frame))
    assert label in md and "[clean-valid]: checkpoints selected on the valid split" in md
    both = pd.concat([rows, result_rows([("momok", "DB15K+image+text@momok", 0, "mrr", 0.30)])])
    with pytest.raises(ValueError, match=r"DB15K: DB15K\+image\+text@momok, DB15K\+image\+text@momok\[clean-valid\]"):
        paper_frame(both, "momok-main")          # published and cleaned valid: the user says which
    assert cell(paper_frame(both, "momok-main", datasets={"DB15K": label}), "MoMoK", "DB15K", "mrr")["ours"] \
        == pytest.approx(0.37)


def test_reference_protocol_is_chosen_by_prefix():
    rows = pd.concat([result_rows([("momok", "MKG-W+image+text@momok", 0, "mrr", 0.40)], protocol="reference-v1"),
                      result_rows([("momok", "MKG-W+image+text@momok", 0, "mrr", 0.30)])])
    ref = cell(paper_frame(rows, "momok-ablation", protocol="reference"), "Full Model", "MKG-W", "mrr")
    har = cell(paper_frame(rows, "momok-ablation"), "Full Model", "MKG-W", "mrr")
    assert (ref["ours"], ref["protocol"]) == (0.40, "reference-v1") and (har["ours"], har["protocol"]) == (0.30, "harness-v2")
    with pytest.raises(ValueError, match="protocol must be one of"):
        paper_frame(rows, "momok-ablation", protocol="harness-v2")


def test_ambiguous_variants_ask_for_datasets():
    rows = result_rows([("tucker", "MKG-W", 0, "mrr", 0.30), ("momok", "MKG-W+image+text@momok", 0, "mrr", 0.35)])
    with pytest.raises(ValueError, match=r"MKG-W: MKG-W, MKG-W\+image\+text@momok.*datasets="):
        paper_frame(rows, "momok-main")
    frame = paper_frame(rows, "momok-main", datasets={"MKG-W": "MKG-W+image+text@momok"})
    assert cell(frame, "MoMoK", "MKG-W", "mrr")["ours"] == 0.35
    assert math.isnan(cell(frame, "TuckER", "MKG-W", "mrr")["ours"])
    with pytest.raises(ValueError, match="no clean result rows"):
        paper_frame(rows, "momok-main", datasets={"MKG-W": "MKG-W+text"})


def test_not_reported_and_not_yet_obtained_cells():
    rows = result_rows([("pairre", "KVC16K", 0, "mrr", 0.2), ("mocme", "DB15K", 0, "mrr", 0.3)])
    main = paper_frame(rows, "momok-main")
    assert math.isnan(cell(main, "PairRE", "KVC16K", "mrr")["diff"])
    md = to_markdown(paper_table(main))
    pairre = next(line for line in md.splitlines() if line.startswith("| PairRE "))
    assert pairre.rstrip(" |").endswith("–") and "| PairRE: ours" in md
    moc = to_markdown(paper_table(paper_frame(rows, "mocme-main")))
    assert moc.count("not yet obtained") == 15 and "| MoCME: ours" in moc and "30.00" in moc


def test_ablation_golden_files():
    """The published ablation table as rendered today; regenerate only after checking the change by eye."""
    frame = paper_frame(pd.DataFrame(), "momok-ablation")
    assert (frame["seeds"] == 0).all() and frame["ours"].isna().all()
    table = paper_table(frame)
    assert to_markdown(table) + "\n" == (GOLDEN / "paper_momok_ablation.md").read_text(encoding="utf-8")
    assert to_latex(table) == (GOLDEN / "paper_momok_ablation.tex").read_text(encoding="utf-8")


def test_every_implemented_row_of_the_momok_table_names_its_model():
    # each registered model whose display name is a row of MoMoK's table is joined to that row, so its
    # reproduced numbers stand under the published ones (the multi-modal baselines among them)
    from mmkgbench.modelinfo import MODEL_INFO
    main = load_published("momok-main")
    for key, info in MODEL_INFO.items():
        named = main[main["row"] == info.name]
        if len(named):
            assert (named["model"] == key).all(), key
    # the negative-sampler rows name paper-main's variants (the sampler on its authors' base model)
    from mmkgbench.grid import load_grid
    paper = {c.model: c.base for c in load_grid("paper-main").cells}
    assert set(main["model"]) - {""} <= set(MODEL_INFO) | set(paper)
    assert paper["mans"] == "ikrl" and paper["mmrns"] == "transe"
    assert cell(main, "MANS", "DB15K", "mrr")["model"] == "mans" and cell(main, "MMRNS", "MKG-Y", "mrr")["model"] == "mmrns"
    rows = result_rows([("ikrl", "DB15K", 0, "mrr", 0.25), ("vbkgc", "MKG-W", 0, "mrr", 0.3)])
    frame = paper_frame(rows, "momok-main")
    assert cell(frame, "IKRL", "DB15K", "mrr")["ours"] == pytest.approx(0.25)
    assert cell(frame, "VBKGC", "MKG-W", "mrr")["ours"] == pytest.approx(0.3)
    md = to_markdown(paper_table(frame))
    assert md.index("| IKRL ") < md.index("| IKRL: ours") < md.index("| TBKGC ")
