"""Files that do not fit, as after an NFS hiccup or a hand edit: a corrupt checkpoint is set aside and the run
starts over (ending as an uninterrupted run does), an unreadable weight file stops the job naming the file, and a
setting the schema accepted but no run could use (val_fraction 0) is refused by the config check, naming it."""
import glob
import os

import pytest
import torch

from conftest import config_with, same_weights, tiny_spec
from ticketlab.config import ConfigError
from ticketlab.training import Run, TrainingError, architecture, load_weights, run
from ticketlab.training.batches import Data


def _spec(data):
    return {**tiny_spec(data), "recipe": {**tiny_spec(data)["recipe"], "epochs": 2}}


@pytest.fixture(scope="module")
def straight(digits_npz, tmp_path_factory):
    """An uninterrupted run, trained once for the module."""
    out = tmp_path_factory.mktemp("straight")
    run(_spec(digits_npz), str(out))
    return out


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_checkpoint_is_set_aside_and_the_run_starts_over(tmp_path, digits_npz, straight, damage):
    spec = _spec(digits_npz)
    out = tmp_path / "damaged"
    out.mkdir()
    real = (straight / "final.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes({"garbage": os.urandom(300), "truncated": real[: len(real) // 2],
                                         "empty": b""}[damage])
    said = []
    Run(spec, str(out), log=said.append).run()
    assert same_weights(straight / "final.pt", out / "final.pt")
    aside = glob.glob(str(out / "checkpoint.pt.corrupt-*"))
    assert len(aside) == 1 and not (out / "checkpoint.pt").exists()
    assert any("checkpoint.pt is unreadable" in s and "starting afresh" in s for s in said), said


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_unreadable_weight_file_names_itself(tmp_path, digits_npz, straight, damage):
    spec = _spec(digits_npz)
    final = tmp_path / "final.pt"
    real = (straight / "final.pt").read_bytes()
    final.write_bytes(os.urandom(200) if damage == "garbage" else real[:500])
    model = architecture(spec["model"], Data(digits_npz, torch.device("cpu")))
    with pytest.raises(TrainingError, match=rf"{final}: not a readable weight file"):
        load_weights(model, str(final))


def test_val_fraction_zero_is_refused_naming_the_key():
    cfg = config_with()
    cfg["datasets"]["digits"]["val_fraction"] = 0.0
    from ticketlab.config import validate
    with pytest.raises(ConfigError, match=r"datasets\.digits\.val_fraction"):
        validate(cfg)
