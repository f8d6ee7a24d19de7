"""Disk footprint of a configuration's results, without running it: `python scripts/footprint.py
[--configfile config/paper/spend.yaml] [--measure]` (or `make footprint CONFIG=...`).

Snakemake's `--summary` lists every output file the configuration's DAG has; each file is sized from
what it holds: weight files = 4 bytes per parameter and buffer of the run's model (built on the meta
device), except that a pruned run's covered weights are stored by their kept entries (ticketlab.weights_io:
4 bytes per kept weight, a bit per covered weight, a bit per pruned one), mask files = a bit per covered weight
(+ its JSON report), prepared datasets = their images as
uint8, metrics/summaries/analyses/tables as measured on the demo (small). With --measure, files that
exist on disk are measured too, which checks the estimate (the README's numbers come from the demo,
measured, and the paper configurations, estimated). Per-epoch checkpoints are deleted when a run
succeeds, so the transient extra is one checkpoint (weights + momentum + mask) per running job.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from ticketlab.defaults import SOURCE_SIZES  # noqa: E402
from ticketlab.weights_io import MIN_ZEROS  # noqa: E402

# (channels, side, classes, train+test images) of the sources with fixed shapes
SHAPES = {s: (channels, side, classes, train + test)
          for s, (train, test, side, channels, classes) in SOURCE_SIZES.items()}
SMALL = {"json": 4_000, "csv": 3_000, "md": 2_000, "png": 80_000, "pdf": 30_000, "log": 2_000}


def load_config(configfiles: list[str]) -> dict:
    from ticketlab.config import validate
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for path in configfiles:
        _merge(cfg, yaml.safe_load(Path(path).read_text()))
    return validate(cfg)


def _merge(base: dict, over: dict) -> None:
    """Snakemake's merge of --configfile over the default: nested mappings update, others replace."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def summary_files(configfiles: list[str]) -> list[tuple[str, str]]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--summary", "--quiet"]
    if configfiles:  # one flag for all: snakemake keeps only the last of several --configfile flags
        cmd += ["--configfile", *configfiles]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=os.getcwd()).stdout
    rows = [line.split("\t") for line in out.splitlines()[1:] if "\t" in line]
    return [(r[0], r[2]) for r in rows]


def dataset_shape(cfg: dict, name: str) -> tuple[int, int, int, int]:
    spec = cfg["datasets"][name]
    if spec["source"] in SHAPES:
        return SHAPES[spec["source"]]
    return (3, spec.get("image_size", 32), 1000, 100_000)  # imagefolder / npz: a guess, said in the output


@lru_cache(maxsize=None)
def _model_bytes(model_items: tuple, shape: tuple) -> tuple[int, int]:
    """(bytes of a state dict, bytes of its covered conv+linear weights as a bool mask)."""
    import torch
    from ticketlab.masks import prunable
    from ticketlab.models import build_model
    kw = dict(model_items)
    arch = kw.pop("arch")
    with torch.device("meta"):
        m = build_model(arch, shape[2], in_channels=shape[0], input_size=shape[1], **kw)
    state = sum(t.numel() * t.element_size() for t in m.state_dict().values())
    return state, sum(p.numel() for p in prunable(m, "conv_linear").values())


def estimate(cfg: dict, path: str) -> tuple[str, int]:
    """(category, estimated bytes) of one output file."""
    parts = path.split("/")
    ext = path.rsplit(".", 1)[-1]
    if parts[1] == "data":
        c, s, _, n = dataset_shape(cfg, parts[2].removesuffix(".npz"))
        return "data", c * s * s * n
    if ext == "pt" and parts[1] in ("runs", "masks", "analysis"):
        dataset, model = parts[2], parts[3]  # results/{runs,masks,analysis}/{dataset}/{model}/...
        state, covered = _model_bytes(tuple(sorted(cfg["models"][model].items())), dataset_shape(cfg, dataset))
        if parts[1] == "masks":
            return "masks", covered // 8
        s, small = _sparsity(cfg, parts)
        if small:  # a dense network of the ticket's size (matched parameter count: about 1 - s of the covered)
            return "weights", int(state - 4 * covered * s)
        if s >= MIN_ZEROS:  # packed: the kept weights, where they are, the pruned ones' signs
            return "weights", int(state - 4 * covered + 4 * covered * (1 - s) + covered / 8 + covered * s / 8)
        return "weights", state
    return ("tables/figures" if parts[1] in ("tables", "figures") else "small files"), SMALL.get(ext, 2_000)


def _sparsity(cfg: dict, parts: list[str]) -> tuple[float, bool]:
    """The mask sparsity of the run a weight file belongs to (results/{runs,analysis}/<run>/...; 0 for the dense
    run and its dense-network variants) and whether the run is a small-dense variant (no mask: a smaller network)."""
    if len(parts) < 9 or parts[6] == "dense" or not parts[7].startswith("s"):
        return 0.0, False
    return float(parts[7][1:]) / 100, bool(cfg["variants"].get(parts[8].split("@")[0], {}).get("small_dense"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", action="append", default=[])
    ap.add_argument("--measure", action="store_true", help="also measure the files that exist")
    args = ap.parse_args(argv)
    cfg = load_config(args.configfile)
    est, meas, count = defaultdict(int), defaultdict(int), defaultdict(int)
    for path, _rule in summary_files(args.configfile):
        cat, size = estimate(cfg, path)
        est[cat] += size
        count[cat] += 1
        if args.measure and os.path.exists(path):
            meas[cat] += os.path.getsize(path)
    name = " + ".join(args.configfile) or "config/config.yaml (demo)"
    print(f"footprint of {name}:")
    for cat in sorted(est):
        line = f"  {cat:15s} {count[cat]:6d} files  estimated {est[cat] / 1e9:9.3f} GB"
        if args.measure:
            line += f"  measured {meas[cat] / 1e9:9.3f} GB"
        print(line)
    total = sum(est.values())
    print(f"  {'total':15s} {sum(count.values()):6d} files  estimated {total / 1e9:9.3f} GB"
          + (f"  measured {sum(meas.values()) / 1e9:9.3f} GB" if args.measure else ""))


if __name__ == "__main__":
    main()
