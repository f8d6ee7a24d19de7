"""What devices this machine has, found without importing torch (2-3 s), for planning: the Snakefile sizes
the local GPU pool with it at parse time."""
from __future__ import annotations

import glob
import os

NVIDIA_NODES = "/dev/nvidia[0-9]*"  # one device node per NVIDIA GPU


def nvidia_gpu_visible() -> bool:
    """Whether a local process will find an NVIDIA GPU: a device node that CUDA_VISIBLE_DEVICES does not hide."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
    return bool(glob.glob(NVIDIA_NODES)) and not hidden
