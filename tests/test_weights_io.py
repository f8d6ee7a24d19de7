"""Weight files stored by their non-zero entries (ticketlab.weights_io) read back bit for bit, masks stored as
bits, and the one-file ticket export that plain torch loads."""
import os

import torch

from conftest import tiny_spec
from ticketlab import weights_io
from ticketlab.masks import Mask, prunable
from ticketlab.ticket import export
from ticketlab.training import Data, architecture, initial_weights, run


def _bits(t):
    return t.view(torch.uint8) if t.is_floating_point() else t


def test_a_packed_state_reads_back_bit_for_bit(tmp_path):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 32, generator=g)
    w = w * (torch.rand(64, 32, generator=g) < 0.15)  # 85% zeros, about half of them -0.0 (negative * 0)
    w[0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    assert torch.signbit(w[w == 0]).any() and (~torch.signbit(w[w == 0])).any()
    state = {"w": w, "w64": w.double(), "bf": w.bfloat16(), "bias": torch.randn(32, generator=g),
             "few_zeros": torch.randn(200, generator=g), "steps": torch.tensor(7), "tiny": torch.zeros(3)}
    packed = weights_io.pack(state)
    assert set(packed["packed"]) == {"w", "w64", "bf"}  # sparse enough and big enough
    torch.save(packed, tmp_path / "packed.pt")
    torch.save(state, tmp_path / "plain.pt")
    back = weights_io.load(str(tmp_path / "packed.pt"))
    assert list(back) == list(state)
    for k in state:
        assert back[k].dtype == state[k].dtype and back[k].shape == state[k].shape
        assert torch.equal(_bits(back[k]), _bits(state[k])), k  # the bytes, -0.0 and NaN included
    assert os.path.getsize(tmp_path / "packed.pt") < os.path.getsize(tmp_path / "plain.pt") / 2
    # plain torch reads the packed form too (tensors, ints, strings only)
    assert torch.load(tmp_path / "packed.pt", weights_only=True)["format"] == weights_io.FORMAT


def test_a_dense_state_is_written_as_before_and_old_files_still_load(tmp_path):
    state = {"w": torch.randn(100, 10), "n": torch.tensor(1)}
    assert weights_io.pack(state) is state  # no tensor worth packing: the plain state dict, as torch.save wrote it
    torch.save(state, tmp_path / "old.pt")
    assert all(torch.equal(a, b) for a, b in zip(weights_io.load(str(tmp_path / "old.pt")).values(), state.values()))


def test_a_mask_is_stored_as_bits_and_reads_back(tmp_path):
    g = torch.Generator().manual_seed(1)
    m = Mask({"a": torch.rand(300, 7, generator=g) < 0.3, "b": torch.rand(5, generator=g) < 0.5})
    m.save(str(tmp_path / "m.pt"))
    back = Mask.load(str(tmp_path / "m.pt"))
    assert set(back) == set(m) and all(torch.equal(back[k], m[k]) and back[k].dtype == torch.bool for k in m)
    torch.save({"masks": dict(m)}, tmp_path / "old.pt")  # a mask file written before packing
    assert all(torch.equal(Mask.load(str(tmp_path / "old.pt"))[k], m[k]) for k in m)


def _masked_run(digits_npz, tmp_path, keep=0.1, width=0.0625):
    spec = tiny_spec(digits_npz, recipe={**tiny_spec(digits_npz)["recipe"], "epochs": 1},
                     model={"arch": "resnet18", "width": width})
    torch.manual_seed(0)
    model = architecture(spec["model"], Data(digits_npz, torch.device("cpu")))
    g = torch.Generator().manual_seed(2)
    mask = Mask({k: torch.rand(p.shape, generator=g) < keep for k, p in prunable(model, "conv").items()})
    mask.save(str(tmp_path / "mask.pt"))
    spec = {**spec, "name": str(tmp_path / "run"), "mask": str(tmp_path / "mask.pt")}
    run(spec, str(tmp_path / "run"))
    return spec, mask


def test_a_pruned_runs_final_weights_take_a_fraction_of_the_dense_size(digits_npz, tmp_path):
    spec, mask = _masked_run(digits_npz, tmp_path, width=0.25)  # wide enough that the weights outweigh pickling
    final = tmp_path / "run" / "final.pt"
    state = weights_io.load(str(final))
    torch.save(state, tmp_path / "dense_copy.pt")
    assert os.path.getsize(final) < os.path.getsize(tmp_path / "dense_copy.pt") / 3  # 90% of conv weights pruned
    for k, m in mask.items():
        assert (state[k][~m] == 0).all()


def test_a_ticket_export_loads_with_plain_torch(digits_npz, tmp_path):
    spec, mask = _masked_run(digits_npz, tmp_path)
    export(str(tmp_path / "run"), str(tmp_path / "ticket.pt"))
    t = torch.load(tmp_path / "ticket.pt", weights_only=True)
    assert t["spec"]["mask"] == spec["mask"] and set(t["mask"]) == set(mask)
    assert all(torch.equal(t["mask"][k], mask[k]) for k in mask)
    final = weights_io.load(str(tmp_path / "run" / "final.pt"))
    assert all(torch.equal(t["final"][k], final[k]) for k in final)
    init = initial_weights(spec)
    assert all(torch.equal(t["init"][k], init[k]) for k in init)
    assert all((t["init"][k][~m] == 0).all() for k, m in mask.items())  # the ticket: masked before training
    torch.manual_seed(0)
    model = architecture(spec["model"], Data(digits_npz, torch.device("cpu")))
    model.load_state_dict(t["final"])  # strict: a plain state dict of the architecture
