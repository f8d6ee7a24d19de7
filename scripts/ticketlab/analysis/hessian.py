"""Hessian of the sparse subnetwork with PyHessian (Yao et al. 2020; PyPI pyhessian 0.1, unmodified).

PyHessian works on model.parameters(). To get the Hessian of the SUBNETWORK (the unmasked weights,
plus every unmasked parameter: BN and biases, as PyHessian uses all parameters), the analysed copy of
the model re-parametrises each masked weight by its kept entries only (a 1-D tensor, scattered into
a zero tensor of the weight's shape in the forward pass). Its parameters are then exactly the
subnetwork's coordinates: power iteration, Hutchinson and SLQ all run in that space, with no pruned
coordinate giving spurious zero eigenvalues (REFERENCE-NOTES: PyHessian).

pyhessian 0.1's density() calls torch.eig, removed from torch: `_torch_eig` provides it (for the
symmetric Lanczos matrix, via torch.linalg.eigh) for the duration of the call only.
"""
from __future__ import annotations

import contextlib
import copy
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from pyhessian import hessian as PyHessian
from pyhessian.utils import hessian_vector_product
from torch import nn
from torch.nn.utils import parametrize

from ..progress import Progress
from ..training import fixed_examples
from . import analysis


class KeptEntries(nn.Module):
    """weight = zeros with the kept entries (the parametrisation's 1-D original) scattered in."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.shape = mask.shape
        self.register_buffer("index", mask.flatten().nonzero().squeeze(1))

    def forward(self, kept):
        return kept.new_zeros(self.shape.numel()).index_put((self.index,), kept).view(self.shape)

    def right_inverse(self, weight):
        return weight.flatten()[self.index]


def subnetwork(model: nn.Module, mask) -> tuple[nn.Module, list[tuple[str, nn.Parameter]]]:
    """A copy of the model whose parameters are the subnetwork's coordinates, with each parameter's
    name in the original model (a masked weight's name for its kept entries)."""
    sub = copy.deepcopy(model)
    for name, m in mask.items():
        owner, attr = name.rsplit(".", 1) if "." in name else ("", name)
        parametrize.register_parametrization(sub.get_submodule(owner), attr, KeptEntries(m), unsafe=True)
    suffix = ".parametrizations.{}.original"
    names = []
    for n, p in sub.named_parameters():
        for attr in ("weight", "bias"):
            n = n.replace(suffix.format(attr), f".{attr}")
        names.append((n, p))
    return sub, names


@contextlib.contextmanager
def _torch_eig():
    """torch.eig(A, eigenvectors=True) as pyhessian 0.1 expects it ((n, 2) real/imaginary eigenvalues,
    eigenvectors as columns), for a symmetric A; the original attribute is restored afterwards."""
    def eig(a, eigenvectors=False):
        w, v = torch.linalg.eigh(a)
        return torch.stack([w, torch.zeros_like(w)], 1), v if eigenvectors else a.new_zeros(0)
    missing = object()
    old = getattr(torch, "eig", missing)
    torch.eig = eig
    try:
        yield
    finally:
        if old is missing:
            del torch.eig
        else:
            torch.eig = old


class SubnetworkHessian:
    """PyHessian on one batch (x, y) for the subnetwork of `model` under `mask` (cross-entropy loss).
    Random vectors come from torch's global generator: callers seed it (see `_seeded`)."""

    def __init__(self, model, mask, x, y):
        self.model, self.named = subnetwork(model, mask)
        self.mask = mask
        for p in self.model.parameters():
            p.grad = None
        with warnings.catch_warnings():  # PyHessian's backward(create_graph=True); the cycle is broken below
            warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True")
            self.h = PyHessian(self.model, F.cross_entropy, data=(x, y), cuda=x.is_cuda)
        for p in self.model.parameters():
            p.grad = None  # PyHessian keeps its own copy (gradsH)
        # parameters the loss does not reach (e.g. a removed ghost skip) have no gradient: drop them
        used = [i for i, g in enumerate(self.h.gradsH) if torch.is_tensor(g)]
        self.h.params = [self.h.params[i] for i in used]
        self.h.gradsH = [self.h.gradsH[i] for i in used]
        ids = {id(p) for p in self.h.params}
        self.names = [n for n, p in self.named if id(p) in ids]

    @property
    def dim(self) -> int:
        return sum(p.numel() for p in self.h.params)

    def full(self, vector: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """A vector over the subnetwork's coordinates in the original parameters' shapes (0 where pruned)."""
        out = {}
        for name, v in zip(self.names, vector):
            if name in self.mask:
                m = self.mask[name]
                out[name] = v.new_zeros(m.numel()).index_put((m.flatten().nonzero().squeeze(1),), v).view(m.shape)
            else:
                out[name] = v.detach().clone()
        return out

    def hvp_seconds(self, n: int = 3) -> float:
        v = [torch.randn_like(p) for p in self.h.params]
        hessian_vector_product(self.h.gradsH, self.h.params, v)  # warm-up (allocator, kernels)
        t0 = time.perf_counter()
        for _ in range(n):
            hessian_vector_product(self.h.gradsH, self.h.params, v)
        if v[0].is_cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / n


@contextlib.contextmanager
def _seeded(seed: int, device):
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def top_eigenvalues(model, mask, x, y, top_n: int = 1, max_iter: int = 100, tol: float = 1e-3, seed: int = 0):
    """Top-n eigenvalues of the subnetwork's Hessian on (x, y) by power iteration with deflation
    (PyHessian), and their eigenvectors in the model's parameter shapes (unit norm, zero where pruned)."""
    with _seeded(seed, x.device):
        sh = SubnetworkHessian(model, mask, x, y)
        values, vectors = sh.h.eigenvalues(maxIter=max_iter, tol=tol, top_n=top_n)
    full = []
    for v in vectors:
        norm = float(torch.sqrt(sum((t * t).sum() for t in v)))
        full.append({k: t / norm for k, t in sh.full(v).items()})
    return [float(e) for e in values], full


def trace(model, mask, x, y, samples: int = 100, tol: float = 1e-3, seed: int = 0) -> list[float]:
    """Hutchinson samples v^T H v (Rademacher v) of the subnetwork's Hessian; their mean estimates tr(H).
    PyHessian stops early when the running mean changes by less than `tol` (relative); tol=0 never does."""
    with _seeded(seed, x.device):
        return [float(t) for t in SubnetworkHessian(model, mask, x, y).h.trace(maxIter=samples, tol=tol)]


def density(model, mask, x, y, iters: int = 100, runs: int = 1, seed: int = 0):
    """Stochastic Lanczos quadrature (PyHessian's density): per run, the Ritz values and their weights
    (squared first components; they sum to 1). Iterations are capped at the subnetwork's dimension."""
    with _seeded(seed, x.device):
        sh = SubnetworkHessian(model, mask, x, y)
        with _torch_eig():
            eigs, weights = sh.h.density(iter=min(iters, sh.dim), n_v=runs)
    return [[float(e) for e in r] for r in eigs], [[float(w) for w in r] for r in weights]


def _batches(data, settings):
    n, bs = settings["batches"], settings["batch_size"]
    x, y = fixed_examples(data, n * bs, settings["seed"], settings["split"])
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(y), bs)][:n]


@analysis("hessian", batches=10, batch_size=128, split="train", top_n=1, max_iter=100, tol=1e-3,
          trace_samples=100, trace_tol=1e-3, density_iters=0, density_runs=1, seed=0)
def hessian(model, mask, data, settings) -> dict:
    """Top eigenvalue(s), trace and (density_iters > 0) spectral density of the subnetwork's Hessian of
    the cross-entropy, each on `batches` random batches of the split (no augmentation, BN in eval
    mode as PyHessian sets it); the papers report the mean over batches."""
    s = settings
    tops, traces, dens_e, dens_w = [], [], [], []
    batches = _batches(data, s)
    progress = Progress(len(batches), "hessian: batches")
    for i, (x, y) in enumerate(batches):
        tops.append(top_eigenvalues(model, mask, x, y, s["top_n"], s["max_iter"], s["tol"], s["seed"] + i)[0])
        traces.append(float(np.mean(trace(model, mask, x, y, s["trace_samples"], s["trace_tol"], s["seed"] + i))))
        if s["density_iters"]:
            e, w = density(model, mask, x, y, s["density_iters"], s["density_runs"], s["seed"] + i)
            dens_e += e
            dens_w += w
        progress.update(note=f"top eigenvalue {tops[-1][0]:.4g}")
    x, y = batches[0]
    sh = SubnetworkHessian(model, mask, x, y)
    first = [t[0] for t in tops]
    return {"top_eigenvalue": float(np.mean(first)), "top_eigenvalue_std": float(np.std(first)),
            "top_eigenvalues": tops, "trace": float(np.mean(traces)), "trace_std": float(np.std(traces)),
            "traces": traces, "density": {"eigenvalues": dens_e, "weights": dens_w} if s["density_iters"] else None,
            "dim": sh.dim, "hvp_seconds": sh.hvp_seconds(), "batches": len(tops)}


@torch.no_grad()
def _loss_acc(model, x, y, batch_size: int = 1000) -> tuple[float, float]:
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        out = model(x[i:i + batch_size])
        loss += F.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + batch_size]).sum().item()
    return loss / len(y), 100.0 * correct / len(y)


@analysis("perturbation", batch_size=128, max_iter=100, tol=1e-3, radius=0.5, steps=21, split="test",
          examples=0, seed=0)
def perturbation(model, mask, data, settings) -> dict:
    """Loss of theta + d * v along the top eigenvector v of the subnetwork's Hessian (on one training
    batch), for d in linspace(-radius, radius, steps), on the split (Yao et al. 2020, as spend
    Fig. 10 and tost Fig. 8 use it)."""
    s = settings
    x, y = fixed_examples(data, s["batch_size"], s["seed"], "train")
    values, vectors = top_eigenvalues(model, mask, x, y, 1, s["max_iter"], s["tol"], s["seed"])
    v = vectors[0]
    xe, ye = fixed_examples(data, s["examples"], s["seed"] + 1, s["split"])
    probe = copy.deepcopy(model).eval()
    params = dict(probe.named_parameters())
    base = {k: p.detach().clone() for k, p in params.items()}
    distances = np.linspace(-s["radius"], s["radius"], s["steps"]).tolist()
    losses, accs = [], []
    progress = Progress(len(distances), "perturbation: distances")
    for d in distances:
        with torch.no_grad():
            for k, t in v.items():
                params[k].copy_(base[k] + d * t)
        loss, acc = _loss_acc(probe, xe, ye)
        losses.append(loss)
        accs.append(acc)
        progress.update()
    return {"top_eigenvalue": values[0], "curves": {"loss": {"x": distances, "y": losses},
                                                    "acc": {"x": distances, "y": accs}}}
