"""What is wrong with a data set before a number is trusted: duplicates, leakage, unseen entities,
relation frequency and modality coverage; and the split policies that remove duplicates and leaks
(`SPLIT_POLICIES`: "clean" from valid and test, "clean-valid" from valid only).

Counts are over *lines* where a split holds duplicates (as the data set README counts them) and over
distinct triples for overlaps between splits.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mmkgbench.data import SPLITS, MMKG

# A data set table's `splits` key (mmkgbench.datasets.load_dataset): what is done to the published
# splits before anything trains. "clean-valid" repairs model selection only: DB15K's valid split is
# mostly training triples (README "Data audit"), while its test split is kept as published so the
# numbers stay comparable with the papers'.
SPLIT_POLICIES = ("as_published", "clean", "clean-valid")
# Policies whose test split is the published one, line for line (mmkgbench.published compares these).
TEST_AS_PUBLISHED = ("as_published", "clean-valid")


def _rows(a: np.ndarray) -> set:
    return set(map(tuple, np.asarray(a).tolist()))


def audit(data: MMKG) -> dict[str, pd.DataFrame]:
    """Tables describing `data`: "splits", "overlap", "relations" and "modalities".

    splits: per split, lines, distinct triples, duplicate lines, and lines with an entity (or a
    relation) that never occurs in train. overlap: distinct triples shared by each pair of splits.
    relations: train frequency summary, and relations that occur in valid/test but not in train.
    modalities: dimension and the fraction of entities that have each modality.
    """
    tr_e = np.zeros(data.num_entities, bool)
    tr_e[data.train[:, [0, 2]].ravel()] = True
    tr_r = np.zeros(data.num_relations, bool)
    tr_r[data.train[:, 1]] = True
    split_rows = []
    sets = {}
    for s in SPLITS:
        t = data.split(s)
        sets[s] = _rows(t)
        unseen_e = ~(tr_e[t[:, 0]] & tr_e[t[:, 2]]) if len(t) else np.zeros(0, bool)
        unseen_r = ~tr_r[t[:, 1]] if len(t) else np.zeros(0, bool)
        split_rows.append({"split": s, "lines": len(t), "distinct": len(sets[s]), "duplicate_lines": len(t) - len(sets[s]),
                           "lines_with_entity_unseen_in_train": int(unseen_e.sum()) if s != "train" else 0,
                           "lines_with_relation_unseen_in_train": int(unseen_r.sum()) if s != "train" else 0})
    overlap = pd.DataFrame([{"splits": f"{a} ∩ {b}", "distinct_triples": len(sets[a] & sets[b])}
                            for a, b in (("train", "valid"), ("train", "test"), ("valid", "test"))])
    freq = np.bincount(data.train[:, 1], minlength=data.num_relations)
    held = np.unique(np.concatenate([data.valid[:, 1], data.test[:, 1]]))
    relations = pd.DataFrame([{"relations": data.num_relations, "in_train": int((freq > 0).sum()),
                               "train_min": int(freq.min()), "train_median": float(np.median(freq)),
                               "train_max": int(freq.max()), "with_<=5_train_triples": int((freq <= 5).sum()),
                               "in_valid_or_test_not_train": int((freq[held] == 0).sum())}])
    modalities = pd.DataFrame([{"modality": m, "dim": data.features[m].shape[1],
                                "present": int(data.present[m].sum()), "coverage": float(data.present[m].mean())}
                               for m in data.modalities], columns=["modality", "dim", "present", "coverage"])
    return {"splits": pd.DataFrame(split_rows), "overlap": overlap, "relations": relations, "modalities": modalities}


def audit_markdown(data: MMKG) -> str:
    """The audit tables as GitHub Markdown, headed by the data set name."""
    parts = [f"## Data audit: {data.name}"]
    for title, frame in audit(data).items():
        body = frame.to_markdown(index=False) if len(frame) else "(none)"
        parts.append(f"### {title}\n\n{body}")
    return "\n\n".join(parts) + "\n"


def split_label(name: str, policy: str) -> str:
    """The data set name under split policy `policy`: `name` as published, else "<name>[<policy>]"."""
    check_split_policy(policy)
    return name if policy == "as_published" else f"{name}[{policy}]"


def check_split_policy(policy: str) -> None:
    """Raise a ValueError naming the valid policies unless `policy` is one of SPLIT_POLICIES."""
    if policy not in SPLIT_POLICIES:
        raise ValueError(f"unknown split policy {policy!r}; choose from {', '.join(SPLIT_POLICIES)}")


def apply_split_policy(data: MMKG, policy: str) -> MMKG:
    """`data` under split policy `policy` (one of SPLIT_POLICIES): unchanged, `clean_splits` or
    `clean_valid`."""
    check_split_policy(policy)
    return {"as_published": lambda d: d, "clean": clean_splits, "clean-valid": clean_valid}[policy](data)


def clean_valid(data: MMKG) -> MMKG:
    """`data` with valid cleaned for model selection; train and test are the published arrays.

    Removed from valid, keeping the first occurrence and the order of the rest: lines whose triple
    occurs in train (a model is selected for memorising them), lines whose triple occurs in test (a
    checkpoint would be chosen on a test answer), and repeated lines. Test is the very array that was
    loaded, so test numbers remain comparable with the published ones; and since every removed triple
    is still in train or test, the filter of test ranks (train ∪ valid ∪ test) is the published one.
    The result is named "<name>[clean-valid]"; meta["valid_removed"] counts the removed lines by
    reason (a line in both train and test counts as "in_train").
    """
    train, test = _rows(data.train), _rows(data.test)
    seen, kept = set(), []
    reasons = {"in_train": 0, "in_test": 0, "duplicate": 0}
    for row in map(tuple, data.valid.tolist()):
        reason = "in_train" if row in train else "in_test" if row in test else "duplicate" if row in seen else None
        if reason is None:
            seen.add(row)
            kept.append(row)
        else:
            reasons[reason] += 1
    if not kept:      # selection on an empty split would silently pick the first checkpoint
        raise ValueError(f"{data.name}: splits = 'clean-valid' leaves no valid triple ({len(data.valid)} lines "
                         f"removed: {reasons}); select on another split or use splits = 'as_published'")
    valid = np.array(kept, dtype=np.int64).reshape(-1, 3)
    return data.replace(name=split_label(data.name, "clean-valid"), valid=valid,
                        meta={**data.meta, "splits": "clean-valid", "valid_removed": reasons,
                              "removed_lines": {"valid": len(data.valid) - len(valid), "test": 0}})


def clean_splits(data: MMKG) -> MMKG:
    """`data` with duplicate lines removed from valid and test, valid triples that occur in train
    removed from valid, and test triples that occur in train or valid removed from test.

    Train is left as published. Order of the remaining lines is kept (first occurrence). The
    result is named "<name>[clean]" so tables never mix it with the published splits.
    """
    def keep(split: np.ndarray, banned: set) -> np.ndarray:
        seen, out = set(banned), []
        for row in map(tuple, split.tolist()):
            if row not in seen:
                seen.add(row)
                out.append(row)
        return np.array(out, dtype=np.int64).reshape(-1, 3)

    train = _rows(data.train)
    valid = keep(data.valid, train)
    test = keep(data.test, train | _rows(valid))
    removed = {"valid": len(data.valid) - len(valid), "test": len(data.test) - len(test)}
    return data.replace(name=split_label(data.name, "clean"), valid=valid, test=test,
                        meta={**data.meta, "splits": "clean", "removed_lines": removed})
