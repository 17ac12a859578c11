"""Numeric literals as a modality: parsing, per-attribute normalisation, presence, DB15K's real file."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED, needs_shared
from mmkgbench.data import MMKG, DataError
from mmkgbench.literals import minmax_columns, numeric_features, parse_value, read_numeric_literals

P = "<http://dbpedia.org/resource/"
NAMES = ["Amsterdam", "Rotterdam", 'Chad_"Chad"_Smith', "Plato", "Nowhere"]


def toy() -> MMKG:
    t = np.array([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 4]])
    return MMKG("toy", tuple(f"{P}{n}>" for n in NAMES), ("r",), t, t[:1], t[1:2], meta={"benchmark": "DB15K"})


def write(tmp_path, text):
    path = tmp_path / "lit.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, value", [
    ("75500000.0", 75500000.0), ("-2.0", -2.0), ("1e3", 1000.0), ("2", 2.0), (".5", 0.5),
    ("1946-03-12", 1946 + (2 * 31 + 11) / 372), ("1967-8-9", 1967 + (7 * 31 + 8) / 372),
    ("-500-1-1", -500.0), ("-63-0-0", -63.0), ("99-9-9", 99 + (8 * 31 + 8) / 372),
])
def test_parse_value(text, value):
    assert parse_value(text, "f", 1) == pytest.approx(value)


def test_dates_are_ordered_like_the_calendar():
    dates = ["1946-01-31", "1946-02-01", "1946-12-31", "1947-01-01"]
    values = [parse_value(d, "f", 1) for d in dates]
    assert values == sorted(values) and len(set(values)) == 4


@pytest.mark.parametrize("text", ["abc", "1946-13-01", "12/03/1946", "", "1,000"])
def test_bad_value_names_file_and_line(tmp_path, text):
    path = write(tmp_path, f"Amsterdam\tareaLand\t1.0\nRotterdam\tfoo\t{text}\n")
    with pytest.raises(DataError, match=r"lit\.txt:2: value .* is neither a number nor a date") as err:
        read_numeric_literals(path, toy())
    assert err.value.line == 2


def test_wrong_field_count_names_the_line(tmp_path):
    path = write(tmp_path, "Amsterdam\tareaLand\t1.0\nRotterdam areaLand 2.0\n")
    with pytest.raises(DataError, match=r"lit\.txt:2: expected 'entity<TAB>attribute<TAB>value', got 1 fields"):
        read_numeric_literals(path, toy())


def test_no_matching_entity_is_an_error(tmp_path):
    path = write(tmp_path, "Berlin\tareaLand\t1.0\n")
    with pytest.raises(DataError, match=r"no line names an entity of toy"):
        read_numeric_literals(path, toy())


def test_read_quoted_names_conflicts_and_unmatched(tmp_path):
    path = write(tmp_path, "Amsterdam\televation\t-2.0\n"
                           "Rotterdam\televation\t0.0\n"
                           '"Chad_""Chad""_Smith"\tbirthYear\t1961\n'
                           "Plato\tbirthYear\t-428\n"
                           "Plato\tbirthYear\t-424\n"          # two values: averaged, counted as a conflict
                           "Plato\televation\t6.0\n"
                           "Berlin\televation\t34\n")           # not in the data set
    lit = read_numeric_literals(path, toy())
    assert lit.attributes == ("birthYear", "elevation")
    assert lit.conflicts == 1 and lit.unmatched == 1
    assert lit.values[3, 0] == -426 and lit.mask[2, 0] and not lit.mask[4].any()
    data = numeric_features(toy(), path)
    x = data.features["numeric"]
    np.testing.assert_allclose(x[:, 0], [0, 0, 1, 0, 0])                     # birthYear: -426 -> 0, 1961 -> 1
    np.testing.assert_allclose(x[:, 1], [0, 2 / 8, 0, 1, 0])                 # elevation: -2 -> 0, 0 -> .25, 6 -> 1
    assert data.present["numeric"].tolist() == [True, True, True, True, False]
    with_ind = numeric_features(toy(), path, indicators=True).features["numeric"]
    assert with_ind.shape == (5, 4) and with_ind[:, 2:].tolist() == lit.mask.astype(float).tolist()
    assert data.meta["numeric"]["conflicts_averaged"] == 1


def test_minmax_constant_and_empty_columns():
    values = np.array([[5.0, 1.0], [5.0, 0.0], [0.0, 0.0]])
    mask = np.array([[True, False], [True, False], [False, False]])
    np.testing.assert_array_equal(minmax_columns(values, mask), np.zeros((3, 2)))


@needs_shared
def test_db15k_numeric_literals():
    from mmkgbench.loaders import load_momok
    data = load_momok(SHARED / "DB15K", name="DB15K").replace(meta={"benchmark": "DB15K"})
    out = numeric_features(data, SHARED / "DB15K" / "literals" / "DB15k_Numeric_triples_processed.txt")
    x, present = out.features["numeric"], out.present["numeric"]
    # 225 attributes; 10,971 entities with a literal (the dataset README's 10,947 misses the 24 whose
    # names are CSV-quoted in the file); 762 conflicting pairs; 39 lines of entities outside DB15K.
    assert x.shape == (12842, 225) and int(present.sum()) == 10971
    assert out.meta["numeric"]["conflicts_averaged"] == 762 and out.meta["numeric"]["unmatched_lines"] == 39
    assert x.min() == 0.0 and x.max() == 1.0 and not x[~present].any()
    amsterdam = data.entities.index(f"{P}Amsterdam>")
    assert present[amsterdam]
