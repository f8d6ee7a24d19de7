"""Compare the artefacts of two results directories, cell by cell: what moved, and by how much.

    python scripts/compare_results.py BEFORE/results AFTER/results [--ids spend_tab_a2 ...] [--all]

For every tidy CSV (tables/*.csv, figures/*.csv) present in both, rows are matched on their non-numeric
columns (experiment, mask, variant, ...) and sparsity; each numeric column's largest absolute change is
printed per artefact, and with --all every changed cell of `mean` / `value`. A behaviour-preserving change
prints "identical" for every artefact (same seed, same CPU); a fix prints what it moved.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

SHOWN = ("mean", "value", "ours")  # the cell a table shows, first found


def load(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> tuple[dict, pd.DataFrame | None, str]:
    num = [c for c in a.columns if c in b.columns and numeric(a[c]) and numeric(b[c]) and c != "sparsity"]
    keys = [c for c in a.columns if c in b.columns and c not in num]
    keyed_a, keyed_b = a.drop_duplicates(keys), b.drop_duplicates(keys)
    m = keyed_a.merge(keyed_b, on=keys, how="outer", suffixes=("_before", "_after"), indicator=True)
    only = f"{(m['_merge'] == 'left_only').sum()} rows only before, {(m['_merge'] == 'right_only').sum()} only after"
    m = m[m["_merge"] == "both"]
    moved = {c: float((m[f"{c}_after"] - m[f"{c}_before"]).abs().max()) for c in num}
    shown = next((c for c in SHOWN if c in num), None)
    cells = None
    if shown:
        d = m[f"{shown}_after"] - m[f"{shown}_before"]
        cells = m.loc[d.abs() > 1e-9, keys + [f"{shown}_before", f"{shown}_after"]].assign(change=d[d.abs() > 1e-9])
    return moved, cells, only


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--ids", nargs="*", help="artefact ids (default: every one in both)")
    ap.add_argument("--all", action="store_true", help="list every changed cell of the shown column")
    args = ap.parse_args(argv)
    for kind in ("tables", "figures"):
        for f in sorted((args.before / kind).glob("*.csv")):
            g = args.after / kind / f.name
            if (args.ids and f.stem not in args.ids) or not g.exists():
                continue
            moved, cells, only = compare(load(f), load(g))
            changed = {c: v for c, v in moved.items() if v == v and v > 1e-9}
            if not changed and only.startswith("0 rows only before, 0"):
                print(f"{f.stem}: identical")
                continue
            print(f"{f.stem}: largest change " + ", ".join(f"{c} {v:.3g}" for c, v in changed.items()) + f" ({only})")
            if args.all and cells is not None and len(cells):
                print(cells.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
