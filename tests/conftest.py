import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PATH", "")
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the venv's snakemake


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory):
    """The demo dataset, prepared once for the whole session."""
    from ticketlab.data import prepare
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    prepare({"source": "digits", "val_fraction": 0.1, "test_fraction": 0.2}, str(path))
    return str(path)


def tiny_spec(data: str, **over) -> dict:
    """A run spec small enough for unit tests (ResNet-18 at 1/16 width, 8x8 digits)."""
    spec = {"name": "test", "data": data, "model": {"arch": "resnet18", "width": 0.0625},
            "recipe": {"epochs": 3, "batch_size": 128, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                       "milestones": [2], "gamma": 0.1, "augment": {"crop_pad": 1, "flip": True},
                       "eval_batch_size": 1000},
            "seed": 0, "mask": None, "init": {"from": "fresh"}, "tweaks": {}, "teacher": None, "device": "cpu"}
    spec.update(over)
    return spec
