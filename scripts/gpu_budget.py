"""GPU time of a configuration's plan, without running it: `python scripts/gpu_budget.py --configfile
config/quick/spend.yaml [TARGET ...]` (or `make paper-dry-run CONFIG=...`, which prints it after the dry run).
The cost model and its assumptions: ticketlab.budget."""
from __future__ import annotations

import argparse

from footprint import load_config, summary_files  # (footprint puts the package on the path)
from ticketlab import budget


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", action="append", default=[], help="applied over config/config.yaml, in order")
    args = ap.parse_args(argv)
    cfg = load_config(args.configfile)
    est = budget.estimate(cfg, summary_files(args.configfile))
    print(f"GPU time of the plan ({' + '.join(args.configfile) or 'config/config.yaml'}), one H100-class GPU, "
          f"estimated (ticketlab/budget.py; not measured):")
    for rule in sorted(est["per_rule"], key=est["per_rule"].get, reverse=True):
        print(f"  {rule:<22} {est['jobs'][rule]:>5} jobs  {est['per_rule'][rule] / 60:8.1f} min")
    print(f"  {'total':<22} {sum(est['jobs'].values()):>5} jobs  {est['seconds'] / 60:8.1f} min "
          f"= {est['seconds'] / 3600:.2f} GPU-hours")
    return est


if __name__ == "__main__":
    main()
