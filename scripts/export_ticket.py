"""Export one run as a ticket file (ticketlab.ticket): python scripts/export_ticket.py RUN_DIR OUT.pt, in the
workflow's working directory, e.g. results/runs/cifar100/resnet18/spend/seed42/imp/s89.26/lth ticket.pt."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ticketlab.ticket import export  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("run_dir")
ap.add_argument("out")
args = ap.parse_args()
t = export(args.run_dir, args.out)
kept = sum(int(m.sum()) for m in t["mask"].values())
print(f"{args.out}: {len(t['final'])} tensors, mask keeps {kept} of {sum(m.numel() for m in t['mask'].values())}")
