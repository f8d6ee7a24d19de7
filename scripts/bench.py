"""Training throughput (`make bench`): the input pipeline and numerics of the papers' code against ticketlab's,
training the same model with the same batch size for the same steps in the same process; masked against
dense; and N concurrent runs on one device against one. A benchmark to read, not a test: it asserts nothing.

    .venv/bin/python scripts/bench.py                  # cpu: ResNet-18 at 1/8 width; cuda: ResNet-18 / CIFAR-100
    .venv/bin/python scripts/bench.py --concurrent 4   # also 4 processes training at once on the device
    .venv/bin/python scripts/bench.py --profile-job    # one demo training job through Snakemake, in parts

reference  the recipe of the papers' code (open_lth, the SNIP/GraSP/SynFlow repositories): a torchvision-style
           Dataset of in-memory HWC uint8 images returned as PIL images, transforms RandomCrop(32, padding=4),
           RandomHorizontalFlip, ToTensor, Normalize; DataLoader(num_workers=2, shuffle, pin_memory on cuda,
           workers started every epoch as there); fp32 model; a plain SGD loop.
ours       ticketlab.training.Run on the same images in a ticketlab .npz: uint8 on the device, crop/flip and
           normalisation there, the run's device defaults (cuda: bf16 autocast, channels-last, no per-step
           synchronisation; --compile adds torch.compile); the masked run has a --sparsity magnitude mask of
           the conv weights (masked SGD: gradients and weights multiplied by the mask every step).
Timing: whole training epochs of --epoch-steps steps (no evaluation), after one warm-up epoch (worker start,
allocator, cuDNN autotuning, compilation), synchronised on cuda. The images are uniform noise with random
labels (only the shapes matter for throughput).
Printed (`name: value`, one per line): reference_images_per_s, ours_images_per_s, ours_masked_images_per_s,
speedup_vs_reference (ours / reference), masked_overhead (masked / dense step time - 1), and with
--concurrent N: concurrent_throughput_N (images/s of N processes together, over the span from their common
start to the last one's end; the line also gives one run's rate and the ratio).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

# per device: (model width, steps per epoch); cuda = ResNet-18 on CIFAR-100's 50,000 training images
DEFAULTS = {"cpu": (0.125, 12), "cuda": (1.0, 391)}
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)  # CIFAR-100's, on [0, 1]


class InMemoryImages(torch.utils.data.Dataset):
    """Images held as torchvision's CIFAR datasets hold them (HWC uint8 in memory), each returned as a PIL
    image through the transform, with its label."""

    def __init__(self, x_hwc: np.ndarray, y: np.ndarray, transform):
        self.x, self.y, self.transform = x_hwc, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def reference_transform(size: int = 32, pad: int = 4):
    from torchvision import transforms as T
    return T.Compose([T.RandomCrop(size, padding=pad), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])


def make_data(path: str, n: int, classes: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n noise images (NCHW uint8) with random labels, written as a ticketlab .npz (val/test: one small
    batch each, unused by the timing); returns them for the reference pipeline."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n + 512, 3, size, size), dtype=np.uint8)
    y = rng.integers(0, classes, n + 512).astype(np.int64)
    np.savez(path, x_train=x[:n], y_train=y[:n], x_val=x[n:n + 256], y_val=y[n:n + 256], x_test=x[n + 256:],
             y_test=y[n + 256:], mean=np.float32(MEAN), std=np.float32(STD), num_classes=np.int64(classes))
    return x[:n], y[:n]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference(args, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """Images/s of the reference pipeline over args.epochs epochs after a warm-up epoch."""
    from ticketlab.models import build_model
    torch.manual_seed(0)
    model = build_model(args.arch, args.classes, width=args.width).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(InMemoryImages(x.transpose(0, 2, 3, 1), y, reference_transform()),
                                         batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                         pin_memory=device.type == "cuda")

    def epoch() -> int:
        n = 0
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(yb)
        return n

    epoch()
    sync(device)
    t0 = time.perf_counter()
    n = sum(epoch() for _ in range(args.epochs))
    sync(device)
    return n / (time.perf_counter() - t0)


def our_run(args, npz: str, outdir: str, mask: str | None = None):
    """A ticketlab Run of the bench model on the bench data, set up (model built, data on the device)."""
    from ticketlab.training import Run
    spec = {"name": "bench", "data": npz, "model": {"arch": args.arch, "width": args.width},
            "recipe": {"epochs": 1 + args.epochs, "batch_size": args.batch_size, "lr": args.lr, "momentum": 0.9,
                       "weight_decay": 5e-4, "milestones": [], "augment": {"crop_pad": 4, "flip": True}},
            "seed": 0, "mask": mask, "init": {"from": "fresh"}, "tweaks": {}, "teacher": None,
            "device": args.device, **({"compile": True} if args.compile else {})}
    return Run(spec, outdir, threads=args.threads, log=lambda *a: None)


def warm_up(run) -> None:
    """One training epoch, untimed."""
    run.train_epoch()
    run.epoch += 1
    sync(run.device)


def timed_epochs(run, epochs: int) -> tuple[float, float, int]:
    """(start, end) wall-clock times (comparable across processes) and images of `epochs` training epochs."""
    t0 = time.time()
    for _ in range(epochs):
        run.train_epoch()
        run.epoch += 1
    sync(run.device)
    return t0, time.time(), epochs * len(run.data.split["train"][1])


def ours(args, npz: str, outdir: str, mask: str | None = None) -> float:
    run = our_run(args, npz, outdir, mask)
    warm_up(run)
    t0, t1, n = timed_epochs(run, args.epochs)
    return n / (t1 - t0)


def make_mask(args, npz: str, path: str) -> str:
    """A global magnitude mask of the bench model's conv weights at args.sparsity (at its initialisation)."""
    from ticketlab.masks import magnitude_prune, prunable
    with tempfile.TemporaryDirectory() as d:
        model = our_run(args, npz, d).model
        magnitude_prune({k: p.detach().cpu().contiguous() for k, p in prunable(model).items()},
                        args.sparsity).save(path)
    return path


def _concurrent_worker(args, npz: str, outdir: str, barrier, results) -> None:
    run = our_run(args, npz, outdir)
    warm_up(run)
    barrier.wait()
    results.put(timed_epochs(run, args.epochs))


def concurrent(args, npz: str, tmp: str, n: int) -> float:
    """Images/s of n processes training at once (each its own run, warmed up, started together)."""
    ctx = mp.get_context("spawn")  # cuda cannot be forked
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_concurrent_worker, args=(args, npz, os.path.join(tmp, f"c{i}"), barrier, results))
             for i in range(n)]
    for p in procs:
        p.start()
    out = [results.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a concurrent run failed (exit code {p.exitcode})")
    return aggregate(out)


def aggregate(spans: list[tuple[float, float, int]]) -> float:
    """Images/s of runs timed as (start, end, images): all their images over the span from the first start
    to the last end (not the sum of their rates, which would count a run that ends early as still running)."""
    return sum(k for _, _, k in spans) / (max(t1 for _, t1, _ in spans) - min(t0 for t0, _, _ in spans))


PROFILE_RUN = "results/runs/digits/resnet18_demo/demo/seed42/imp/s36.00/{variant}/summary.json"


def profile_job(args) -> dict:
    """One re-training job of the demo (ResNet-18 at 1/8 width on the digits, IMP 36%, variant --variant),
    run by Snakemake as the demo runs it, its wall time split into parts: Snakemake's start (parse, config
    check, DAG, scheduling: until the job's process starts), the job's process start (interpreter, script
    preamble, job server hand-over; summary.json timing.job_start), the run's own parts (data load, model
    build, init-time tweaks such as GradInit, training steps, per-epoch evaluation, checkpoint / weight /
    summary writes) and Snakemake's bookkeeping after the job. Its inputs (data, dense run, mask) are built
    first, untimed, which also leaves the job server warm as during a demo."""
    import json
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = PROFILE_RUN.format(variant=args.variant)
    with tempfile.TemporaryDirectory() as work:
        def smk(*extra):
            cmd = [sys.executable, "-m", "snakemake", "-s", os.path.join(repo, "workflow", "Snakefile"),
                   "--directory", work, "--cores", "2", *extra, target]
            t0 = time.time()
            p = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
            if p.returncode:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
            return t0, time.time()
        smk()  # the inputs, and a warm job server (as during a demo)
        t0, t1 = smk("-f")
        summary = json.load(open(os.path.join(work, target)))
    clock, parts = summary["clock"], dict(summary["timing"])
    wall = t1 - t0
    job_start = parts.pop("job_start")
    rows = [("snakemake: start, config check, DAG, scheduling", clock["process_started"] - t0),
            ("job process start (interpreter, preamble, job server)", job_start), *parts.items(),
            ("run: untimed rest", clock["finished"] - clock["process_started"] - job_start - sum(parts.values())),
            ("snakemake: after the job (bookkeeping, exit)", t1 - clock["finished"])]
    print(f"profile-job: {target} ({summary['epochs']} epochs): one `snakemake -f` of it, {wall:.2f} s")
    for name, sec in rows:
        print(f"  {name:<55} {sec:7.3f} s  {100 * sec / wall:5.1f}%")
    return {"wall": wall, **dict(rows)}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--width", type=float, help="width multiplier (default: cpu 0.125, cuda 1)")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epoch-steps", type=int, help="steps per epoch; the data has batch-size x this images "
                                                   "(default: cpu 12, cuda 391 = CIFAR-100's 50,000 images)")
    p.add_argument("--epochs", type=int, default=1, help="timed epochs, after one warm-up epoch")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--sparsity", type=float, default=0.9, help="of the masked run")
    p.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training process(es)")
    p.add_argument("--compile", action="store_true", help="ours with torch.compile (cuda only)")
    p.add_argument("--concurrent", type=int, default=0, metavar="N", help="also N processes at once vs one")
    p.add_argument("--profile-job", action="store_true", help="instead: one demo training job through Snakemake, "
                                                                "its time split into parts")
    p.add_argument("--variant", default="scaling", help="with --profile-job: the variant re-trained (default "
                                                         "scaling: GradInit at init)")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    width, steps = DEFAULTS[args.device]
    args.width = args.width or width
    args.epoch_steps = args.epoch_steps or steps
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    if args.profile_job:
        return profile_job(args)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    numerics = "bf16 autocast, channels-last" if device.type == "cuda" else "fp32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} thread(s)"
    print(f"bench: {name}; torch {torch.__version__}; {args.arch} width {args.width:g}, 32x32x3, {args.classes} "
          f"classes, batch {args.batch_size}, {args.epoch_steps} steps/epoch, {args.epochs} timed epoch(s) after "
          f"1 warm-up; reference: PIL + DataLoader({args.workers} workers), fp32; ours: {numerics}"
          f"{', compiled' if args.compile else ''}", flush=True)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "bench.npz")
        x, y = make_data(npz, args.batch_size * args.epoch_steps, args.classes)
        out["reference_images_per_s"] = reference(args, x, y, device)
        out["ours_images_per_s"] = ours(args, npz, os.path.join(tmp, "dense"))
        mask = make_mask(args, npz, os.path.join(tmp, "mask.pt"))
        out["ours_masked_images_per_s"] = ours(args, npz, os.path.join(tmp, "masked"), mask)
        out["speedup_vs_reference"] = out["ours_images_per_s"] / out["reference_images_per_s"]
        out["masked_overhead"] = out["ours_images_per_s"] / out["ours_masked_images_per_s"] - 1.0
        for k in ("reference_images_per_s", "ours_images_per_s", "ours_masked_images_per_s"):
            print(f"{k}: {out[k]:.1f}")
        print(f"speedup_vs_reference: {out['speedup_vs_reference']:.2f}")
        print(f"masked_overhead: {out['masked_overhead']:.3f}", flush=True)
        if args.concurrent:
            n = args.concurrent
            out[f"concurrent_throughput_{n}"] = rate = concurrent(args, npz, tmp, n)
            print(f"concurrent_throughput_{n}: {rate:.1f} (one run: {out['ours_images_per_s']:.1f} images/s; "
                  f"{rate / out['ours_images_per_s']:.2f}x)")
    return out


if __name__ == "__main__":
    main()
