"""The mmkgbench command line (`python run_bench.py ...` or the `mmkgbench` console script).

    python run_bench.py                       # the default comparison: run --grid default, then report
    python run_bench.py run --grid smoke      # any grid (a name in scenarios/ or a path); resumes
    python run_bench.py run --set tucker.lr=1e-3 --set train.max_epochs=20
    python run_bench.py list                  # models, scenarios, data sets, grids
    python run_bench.py report [--grid NAME] [--format md,tex,png,pdf] [--reference MODEL]
                                              # tables, tests, figures from results/, no training
    python run_bench.py perturb synthetic missing 0.4 --option modality=image   # what a scenario does
    python run_bench.py data fetch DB15K [--mirror DIR_OR_URL]   # download + verify a benchmark
    python run_bench.py data audit DB15K      # duplicates, leakage, unseen entities, coverage
    python run_bench.py data features text DB15K [--encoder e5-small] [--names FILE]
    python run_bench.py data features check DB15K --from DIR [--transform momok]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from mmkgbench.protocol import PROTOCOLS


def cmd_run(args) -> int:
    from mmkgbench.grid import load_grid
    from mmkgbench.runner import pick_device, run_grid
    grid = load_grid(args.grid, sets=args.set or [], protocol=args.protocol)
    device = pick_device(args.device)
    print(f"grid {grid.name}: {len(grid.cells)} runs on {device}; results in {args.results}/")
    if grid.skipped:
        print(grid.skipped_note())
    if args.dry_run:
        from mmkgbench.runner import GridPlan
        for c in grid.cells:
            print("  " + c.label())
        try:
            plan = GridPlan(grid, fetch_missing=args.fetch, mirror=args.mirror)
        except (OSError, ValueError) as err:   # a data set not fetched yet: the cells above still stand
            print(f"(runs and trainings not counted: {err})")
            return 0
        print(f"{len(plan.runs)} distinct runs from {plan.trainings} trainings (cells that differ only in how a "
              "trained model scores share one)")
        return 0
    out = run_grid(grid, args.results, device=device, progress=not args.no_progress,
                   fetch_missing=args.fetch, mirror=args.mirror)
    print(f"\n{len(out['done'])} run(s) done from {out['trainings']} training(s), {len(out['skipped'])} already "
          f"stored, {len(out['failed'])} failed")
    for label, err in out["failed"]:
        print(f"  FAILED {label}: {err}")
    if args.report:
        args.grid_filter = grid
        cmd_report(args)
    return 1 if out["failed"] else 0


def cmd_report(args) -> int:
    """Tables (Markdown, LaTeX, CSV) and figures from stored runs; prints the Markdown tables."""
    from mmkgbench.outputs import parse_formats, write_report
    from mmkgbench.results import load_rows
    formats = parse_formats(getattr(args, "format", None) or "md,tex,png")
    grid = getattr(args, "grid_filter", None)
    if grid is None and getattr(args, "grid", None):
        from mmkgbench.grid import load_grid
        grid = load_grid(args.grid, protocol=getattr(args, "protocol", None))
    if grid is not None:
        from mmkgbench.runner import grid_run_ids
    rows = load_rows(args.results, run_ids=grid_run_ids(grid) if grid is not None else None)
    if rows.empty:
        print(f"no stored results under {args.results}/" + (f" for grid {grid.name}" if grid else ""))
        return 1
    out = write_report(rows, args.results, formats=formats, reference=getattr(args, "reference", None),
                       split=args.split, test=getattr(args, "test", "randomization"),
                       resamples=getattr(args, "resamples", 10_000), alpha=getattr(args, "alpha", 0.05))
    print()
    print(out["markdown"])
    for note in out["notes"]:
        print(f"note: {note}")
    print(f"\nreport of {rows['run_id'].nunique()} run(s)" + (f" (grid {grid.name})" if grid else "") +
          (f", reference model {out['reference']}" if out["reference"] else "") + "; written:")
    for p in out["paths"]:
        print(f"  {p}")
    return 0


def cmd_prune(args) -> int:
    """prune --stale: move stored runs made by other model, scenario or protocol versions than the
    current code's into results/stale/ (after a `git pull` that bumped a version)."""
    from mmkgbench.resolve import stale_reasons
    from mmkgbench.results import load_config, move_aside, runs_dir, valid_runs
    if not args.stale:
        raise ValueError("prune needs --stale (move runs whose versions are not the current code's aside)")
    moved = 0
    folder = runs_dir(args.results)
    for name in valid_runs(args.results, log=lambda msg: print(f"quarantined: {msg}"), move=not args.dry_run):
        path = folder / name
        reasons = stale_reasons(load_config(args.results, path.name).get("config", {}))
        if reasons:
            moved += 1
            where = path.name if args.dry_run else move_aside(args.results, path.name, "stale")
            print(f"{'would move' if args.dry_run else 'moved'} {path.name}: {'; '.join(reasons)} -> {where}")
    print(f"{moved} stale run(s)" + (" (dry run: nothing moved)" if args.dry_run else ""))
    return 0


def cmd_perturb(args) -> int:
    """Show (and optionally save) exactly what a scenario does to a data set for one seed."""
    import numpy as np

    from mmkgbench.scenarios import apply, check_options, perturbation
    options = dict(_parse_option(item) for item in args.option or [])
    data = _load_named(args.dataset, args)
    options = check_options(args.scenario, options)
    out = apply(data, args.scenario, args.level, args.seed, **options)
    print("before: " + data.summary().replace("\n", "\n        "))
    print("after:  " + out.summary().replace("\n", "\n        "))
    print(f"scenario {args.scenario} at level {args.level:g}, seed {args.seed}, options "
          f"{options}; fingerprint {data.fingerprint()} -> {out.fingerprint()}")
    rec = perturbation(out)
    for key, arr in rec.items():
        head = ", ".join(str(x) for x in arr[:8].tolist())
        print(f"  {key}: {arr.shape[0]:,} ({head}{', ...' if len(arr) > 8 else ''})")
    if args.save:
        np.savez_compressed(args.save, **rec)
        print(f"written: {args.save}")
    return 0


def _parse_option(item: str) -> tuple[str, object]:
    """--option 'modality=image' -> ('modality', 'image'); values are read as --set reads them.

    Checked here rather than left to parse_set, whose message speaks of --set and SECTION.KEY."""
    from mmkgbench.grid import parse_set
    if "=" not in item or not item.split("=", 1)[0].strip():
        raise ValueError(f"--option {item!r}: expected KEY=VALUE, e.g. modality=image")
    _, key, value = parse_set(f"option.{item}")
    return key, value


def cmd_data(args) -> int:
    from mmkgbench import catalog
    if args.action == "fetch":
        names = args.names or [b.name for b in catalog.CATALOG.values()]
        for name in names:
            catalog.fetch(name, mirror=args.mirror)
        return 0
    if args.action == "audit":
        return _audit(args)
    if args.action == "features":
        return _features(args)
    for b in catalog.CATALOG.values():        # status
        state = "verified" if catalog.is_fetched(b.name) else "not fetched"
        print(f"{b.name:<7} {state:<12} {catalog.cache_dir(b.name)}")
    return 0


def _audit(args) -> int:
    """Print the audit of each named data set and write it to results/tables/audit_<name>.{md,csv}."""
    from pathlib import Path

    import pandas as pd

    from mmkgbench.audit import audit, audit_markdown, clean_splits
    from mmkgbench.results import write_text_atomic
    if not args.names:
        raise ValueError("data audit needs a data set: a benchmark name (DB15K ...), a synthetic name or a folder")
    out_dir = Path(args.results) / "tables"
    for name in args.names:
        data = _load_named(name, args)
        data = clean_splits(data) if args.clean else data
        text = audit_markdown(data)
        print(text)
        stem = out_dir / f"audit_{data.name.replace('/', '_')}"
        rows = [frame.assign(table=title) for title, frame in audit(data).items()]
        write_text_atomic(stem.with_suffix(".md"), text)
        write_text_atomic(stem.with_suffix(".csv"), pd.concat(rows).to_csv(index=False))
        print(f"written: {stem.with_suffix('.md')}, {stem.with_suffix('.csv')}")
    return 0


def _load_named(name: str, args):
    """A synthetic name, a benchmark (from the cache; fetched with --fetch) or a folder, as published."""
    from mmkgbench.catalog import is_benchmark
    from mmkgbench.datasets import DATASETS, load_dataset
    from mmkgbench.registry import normalise
    if normalise(name) in DATASETS:
        return load_dataset(name)
    return load_dataset({"benchmark" if is_benchmark(name) else "path": name}, fetch_missing=args.fetch,
                        mirror=args.mirror)


def _features(args) -> int:
    """data features text NAME...: encode entity names and cache them.
    data features numeric DB15K: the numeric literal modality, summarised.
    data features check NAME --from DIR [--transform T]: import feature files and show what a model gets."""
    kinds = ("text", "numeric", "check")
    if not args.names or args.names[0] not in kinds or len(args.names) < 2:
        raise ValueError(f"usage: data features {{{','.join(kinds)}}} NAME [NAME ...] (see --help)")
    kind, names = args.names[0], args.names[1:]
    for name in names:
        data = _load_named(name, args)
        if kind == "text":
            from mmkgbench.text import compute_text_features
            compute_text_features(data, args.encoder, args.names_file, force=args.force)
            continue
        from mmkgbench.datasets import add_features
        if kind == "numeric":
            data = add_features(data, {"numeric": "literals"})
            print(data.summary())
            print("  " + ", ".join(f"{k}: {v}" for k, v in data.meta["numeric"].items()))
            continue
        from mmkgbench.features import FEATURE_TRANSFORMS, PUBLISHED_DIMS
        if not args.source:
            raise ValueError("data features check needs --from DIR (a folder of feature files) ")
        data = add_features(data, args.source)
        print(data.summary())
        for m, path in data.meta["features"].items():
            published = PUBLISHED_DIMS.get(data.meta.get("benchmark"), {}).get(m)
            d = data.features[m].shape[1]
            note = "" if published is None else (" (as published)" if d == published else
                                                 f" (published files have {published})")
            print(f"  {m}: {path}, d={d}{note}")
        if args.transform != "none":
            from mmkgbench.registry import lookup
            data = lookup(FEATURE_TRANSFORMS, args.transform, "feature transform")(data)
            print(f"after transform {args.transform!r}: " +
                  ", ".join(f"{m} d={data.features[m].shape[1]}" for m in data.modalities))
    return 0


def cmd_list(args) -> int:
    from mmkgbench.datasets import DATASETS
    from mmkgbench.modelinfo import MODEL_INFO
    from mmkgbench.models import MODELS
    from mmkgbench.grid import GRID_DIR
    from mmkgbench.scenarios import SCENARIOS
    print("models:")
    for key, cls in MODELS.items():
        cfg = ", ".join(f"{f.name}={f.default!r}" for f in fields(cls.Config))
        regime = cls.train_defaults.get("regime", "kvsall")
        print(f"  {key:<10} {cls.__name__:<9} [{regime}] {MODEL_INFO[key].citation}\n             {cfg}")
    from mmkgbench.samplers import SAMPLERS
    print("negative samplers ([train] sampler = KEY, sampler_options = { ... }):")
    for key, scls in SAMPLERS.items():
        opts = ", ".join(f"{f.name}={f.default!r}" for f in fields(scls.Config))
        print(f"  {key:<16} v{scls.version}  {scls.reference}\n                   options: {opts}")
    print("scenarios (level = " + "; ".join(f"{k}: {sc.level_label}" for k, sc in SCENARIOS.items() if k != "clean")
          + "):")
    for key, sc in SCENARIOS.items():
        opts = ", ".join(f"{k}={v!r}" for k, v in sc.options.items())
        print(f"  {key:<14} v{sc.version}  {sc.doc}" + (f"\n                 options: {opts}" if opts else ""))
    from mmkgbench import catalog
    print("data sets (or any folder in the MoMoK or OpenKE layout):")
    for key in DATASETS:
        print(f"  {key}")
    for b in catalog.CATALOG.values():
        state = "verified in cache" if catalog.is_fetched(b.name) else "not fetched: run_bench.py data fetch " + b.name
        print(f"  {b.name:<16} {b.entities:,} entities, {b.relations} relations ({state})")
    from mmkgbench.published import PUBLISHED, load_published
    print("published tables (report lays stored runs on these benchmarks beside them):")
    for name in PUBLISHED:
        pub = load_published(name)
        counts = ", ".join(f"{n} {status}" for status, n in pub["status"].value_counts(sort=False).items())
        print(f"  {name:<16} {pub['row'].nunique()} rows ({counts}); {pub['citation'].iloc[0]}")
    print(f"grids ({GRID_DIR}):")
    for p in sorted(GRID_DIR.glob("*.toml")):
        print(f"  {p.stem}")
    return 0


def _results_problem(args) -> str | None:
    """Why --results cannot be the results folder of this command, or None.

    Checked once, before any command starts: a file there would otherwise surface as a traceback
    (run, data audit) or as "no stored results" / "0 stale runs" (report, prune) only after the work."""
    from pathlib import Path
    uses_results = args.cmd in ("run", "report", "prune") or (args.cmd == "data" and args.action == "audit")
    path = Path(args.results)
    if uses_results and path.exists() and not path.is_dir():
        return (f"--results {args.results}: is a file, not a folder; name a folder for the results "
                "(it is created if missing)")
    return None


def main(argv=None) -> int:
    from mmkgbench.catalog import FetchError
    from mmkgbench.text import DEFAULT_ENCODER, ENCODERS
    parser = argparse.ArgumentParser(prog="run_bench.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    sub = parser.add_subparsers(dest="cmd")
    p_run = sub.add_parser("run", help="run a grid (resumes: stored runs are skipped)")
    p_run.add_argument("--grid", default="default", help="grid name in scenarios/ or a TOML path (default: default)")
    p_run.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                       help="override a setting: MODEL.KEY (model or training key), train.KEY or eval.KEY")
    p_run.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    p_run.add_argument("--no-progress", action="store_true", help="no progress bars")
    p_run.add_argument("--dry-run", action="store_true", help="list the runs without training")
    p_run.add_argument("--no-report", dest="report", action="store_false", help="skip the report at the end")
    p_run.add_argument("--split", default="test", choices=["test", "valid"], help=argparse.SUPPRESS)
    p_run.add_argument("--fetch", action="store_true", help="fetch benchmarks the grid names that are not cached")
    p_run.add_argument("--protocol", default=None, choices=list(PROTOCOLS),
                       help="override the grid's protocol: harness (default: select on valid, test once), "
                            "reference (MoMoK's code: best of each metric over test evaluations), openke "
                            "(NATIVE/OpenKE: last epoch, optimistic ties) or audit (harness selection without "
                            "early stopping; reference and openke rows derived from test ranked at every "
                            "evaluation, never selected on)")
    p_run.add_argument("--mirror", default=None, help="with --fetch: a folder or base URL to fetch from")
    p_rep = sub.add_parser("report", help="tables (Markdown, LaTeX), significance tests and figures from stored "
                                          "results, without training")
    p_rep.add_argument("--grid", default=None, help="only the runs of this grid")
    p_rep.add_argument("--format", default="md,tex,png",
                       help="comma-separated outputs: md, tex (tables), png, pdf (figures); default md,tex,png")
    p_rep.add_argument("--reference", default=None,
                       help="the model every other is tested against (default: momok, else mocme, else the best "
                            "clean MRR)")
    p_rep.add_argument("--test", default="randomization", choices=["randomization", "t", "wilcoxon"],
                       help="the paired per-query test behind the markers (default randomization)")
    p_rep.add_argument("--resamples", type=int, default=10_000, help="resamples of the randomization test "
                                                                     "and bootstrap interval (default 10000)")
    p_rep.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm (default 0.05)")
    p_rep.add_argument("--protocol", default=None, choices=list(PROTOCOLS),
                       help="with --grid: the protocol the grid was run under (default: the grid's)")
    p_rep.add_argument("--split", default="test", choices=["test", "valid"])
    sub.add_parser("list", help="registered models, samplers, scenarios, data sets and grids")
    p_prune = sub.add_parser("prune", help="move stored runs of other model/scenario/protocol versions aside")
    p_prune.add_argument("--stale", action="store_true", help="runs whose versions are not the current code's "
                                                                "go to results/stale/")
    p_prune.add_argument("--dry-run", action="store_true", help="only list them")
    p_pert = sub.add_parser("perturb", help="show what a scenario does to a data set (nothing is trained)")
    p_pert.add_argument("dataset", help="a synthetic name, a benchmark (DB15K ...) or a folder")
    p_pert.add_argument("scenario", help="a registered scenario (see `list`)")
    p_pert.add_argument("level", type=float, help="the level, in [0, 1]")
    p_pert.add_argument("--seed", type=int, default=0, help="the run seed (default 0)")
    p_pert.add_argument("--option", action="append", metavar="KEY=VALUE", help="a scenario option, e.g. modality=image")
    p_pert.add_argument("--save", default=None, help="write the perturbation record to this .npz file")
    p_pert.add_argument("--fetch", action="store_true", help=argparse.SUPPRESS)
    p_pert.add_argument("--mirror", default=None, help=argparse.SUPPRESS)
    p_data = sub.add_parser("data", help="standard benchmarks: fetch (download + verify), status, audit, features")
    p_data.add_argument("action", choices=["fetch", "status", "audit", "features"])
    p_data.add_argument("names", nargs="*", help="DB15K, MKG-W, MKG-Y, KVC16K (fetch: default all); audit also "
                                                 "takes synthetic names and folders; features: text|numeric|check "
                                                 "then names")
    p_data.add_argument("--encoder", default=DEFAULT_ENCODER, choices=sorted(ENCODERS),
                        help=f"features text: the sentence encoder (default {DEFAULT_ENCODER})")
    p_data.add_argument("--names", dest="names_file", default=None,
                        help="features text: a file of 'entity<TAB>text' lines (required for MKG-W)")
    p_data.add_argument("--force", action="store_true", help="features text: encode again even if cached")
    p_data.add_argument("--from", dest="source", default=None, help="features check: folder of feature files")
    # The transform is checked against mmkgbench.features.FEATURE_TRANSFORMS when used: importing it
    # here would load torch for every command, `report` included.
    p_data.add_argument("--transform", default="none",
                        help="features check: preprocessing to apply (momok = MoMoK's L2 + pooling)")
    p_data.add_argument("--mirror", default=None, help="a folder holding <NAME>/<file>, or a base URL")
    p_data.add_argument("--clean", action="store_true", help="audit: after removing duplicates and leaked triples")
    p_data.add_argument("--fetch", action="store_true", help="audit/features: fetch a benchmark that is not cached")
    args = parser.parse_args(argv)
    if args.cmd is None:                 # the default comparison
        args = parser.parse_args(["--results", args.results, "run"])
    problem = _results_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        return {"run": cmd_run, "report": cmd_report, "list": cmd_list, "data": cmd_data,
                "perturb": cmd_perturb, "prune": cmd_prune}[args.cmd](args)
    except (ValueError, KeyError, FileNotFoundError, FetchError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2
