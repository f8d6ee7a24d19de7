"""The jackpot table of sanity (Sanity Checks for Lottery Tickets, Appendix B / C): A_PRE, A_LT, A_RR, A_SD and
the jackpot conditions per group, mask, sparsity and ticket, beside the paper's verdicts (artefacts.sanity has
the setup helpers and the other sanity kinds)."""
from __future__ import annotations

import math

import pandas as pd

from . import artefact_kind, joined, numerics_line, params_tag
from .analyses import _md, _sp
from .sanity import group_label, group_of, recipe_of, with_setup
from .tables import _num

# jackpot_table's settings (defaults and meaning: the schema), stated in the table and its CSV
JACKPOT_SETTINGS = ("similar", "clear_gap", "nontrivial_sparsity")


def _roles(spec: dict) -> dict[str, list[str]]:
    """The shown variants by role: rr (init rr), sd (small_dense), ticket (the others)."""
    out = {"rr": [], "sd": [], "ticket": []}
    for v in spec["variants"]:
        cfg = spec["setup"]["variants"][v]
        out["rr" if cfg.get("init") == "rr" else "sd" if cfg.get("small_dense") else "ticket"].append(v)
    return out


def trained_epochs(setup: dict, experiment: str, variant: str) -> int:
    """Epochs a variant's run trains: the recipe's, less the rewind epoch when it continues the schedule."""
    r, v = recipe_of(setup, experiment, variant), setup["variants"].get(variant, {})
    return r["epochs"] - (v["rewind_epoch"] if v.get("continue_schedule") else 0)


def _best(cells: pd.DataFrame) -> tuple[float, float]:
    """(highest mean over the learning rates, its learning rate), NaN when there is no cell."""
    if cells.empty:
        return math.nan, math.nan
    top = cells.loc[cells["mean"].idxmax()]
    return float(top["mean"]), float(top["lr"])


def _best_params(cells: pd.DataFrame) -> float:
    """The params of the best learning rate's cell (as _best picks it); NaN without cells or counts."""
    if cells.empty or "params" not in cells:
        return math.nan
    return float(cells.loc[cells["mean"].idxmax(), "params"])


def _holds(x: float, threshold: float) -> bool | None:
    return None if math.isnan(x) else bool(x >= threshold)


def _all(flags: list[bool | None]) -> bool | None:
    """Every condition holds: False if one fails, None (not established) if one is unknown, else True."""
    return False if False in flags else None if None in flags else True


def jackpot(spec: dict, tidy: pd.DataFrame) -> pd.DataFrame:
    """One row per group, mask, sparsity (> 0) and ticket variant: A_PRE, A_LT, A_RR, A_SD (each the
    highest mean over seeds across the configured learning rates, with that LR) and the conditions.

    Appendix B (with t = 0 for LT; WR rewinds to t and trains T - t epochs):
      c1  non-trivial sparsity (>= nontrivial_sparsity) and the ticket trains no more epochs than the
          pretrained network (T' <= T; whether T is "sufficient" is the recipe's, stated in Table E.1)
      c2  SDT clearly below the well-trained subnetwork: A_LT - A_SD >= clear_gap
      c3  some LR gives the ticket a clear gap over RR trained with ANY LR: A_LT - A_RR >= clear_gap
      c4  some LR gives the ticket accuracy similar to or higher than the pretrained network AT THE SAME LR:
          max over LR of (LT(lr) - PRE(lr)) >= -similar
      c5  some LR gives the ticket accuracy similar to or higher than the WELL-TRAINED network (the best
          LR's): A_LT - A_PRE >= -similar
    Appendix C: A_LT ≈ A_PRE (read as c5: similar or higher), A_LT > A_SD (c2), A_LT > A_RR (c3), with
    the same A's (each condition lets the LR be chosen; they are monotone in A_LT, so the best LR
    satisfies all three iff some LR does). Jackpot: c1..c5 all hold. A condition without runs to decide
    it (e.g. no small-dense run) is None, and so is the jackpot unless another condition fails."""
    st = {k: spec[k] for k in JACKPOT_SETTINGS}
    setup, d = spec["setup"], with_setup(spec, tidy)
    roles = _roles(spec)
    rows = []
    for (g, m, s), cell in d[d["mask"] != "dense"].groupby(["group", "mask", "sparsity"], sort=False):
        pre = d[(d["group"] == g) & (d["mask"] == "dense")]
        same_sp = d[(d["group"] == g) & (d["sparsity"] == s)]
        rr = cell[cell["variant"].isin(roles["rr"][:1])]
        sd = cell[cell["variant"].isin(roles["sd"][:1])]
        if sd.empty:  # small-dense matches a parameter count: the run on another mask set at this sparsity serves
            sd = same_sp[same_sp["variant"].isin(roles["sd"][:1])]
            sd = sd[sd["mask"] == sd["mask"].iloc[0]] if not sd.empty else sd
        for t in roles["ticket"]:
            lt = cell[cell["variant"] == t]
            if lt.empty:
                continue
            (a_pre, lr_pre), (a_lt, lr_lt), (a_rr, lr_rr), (a_sd, lr_sd) = map(_best, (pre, lt, rr, sd))
            same_lr = lt.merge(pre, on="lr", suffixes=("", "_pre"))
            shorter = pre.empty or trained_epochs(setup, lt["experiment"].iloc[0], t) <= \
                trained_epochs(setup, pre["experiment"].iloc[0], "lth")
            c = {"c1": bool(s >= st["nontrivial_sparsity"] and shorter),
                 "c2": _holds(a_lt - a_sd, st["clear_gap"]),
                 "c3": _holds(a_lt - a_rr, st["clear_gap"]),
                 "c4": _holds((same_lr["mean"] - same_lr["mean_pre"]).max() if not same_lr.empty else math.nan,
                              -st["similar"]),
                 "c5": _holds(a_lt - a_pre, -st["similar"])}
            used = pd.concat([pre, lt, rr, sd])
            rows.append({"group": g, "mask": m, "sparsity": s, "exact_sparsity": cell["exact_sparsity"].iloc[0],
                         "ticket": t, "a_pre": a_pre, "lr_pre": lr_pre, "a_lt": a_lt, "lr_lt": lr_lt,
                         "a_rr": a_rr, "lr_rr": lr_rr, "a_sd": a_sd, "lr_sd": lr_sd,
                         **{f"params_{x}": _best_params(d)
                            for x, d in (("pre", pre), ("lt", lt), ("rr", rr), ("sd", sd))},
                         "numerics": joined(used["numerics"]) if "numerics" in used else "unknown", **c,
                         "appendix_c": _all([c["c5"], c["c2"], c["c3"]]), "jackpot": _all(list(c.values())),
                         "n_seeds": int(lt["n"].min()), **st})
    return pd.DataFrame(rows)


VERDICTS = {0.0: "no", 0.5: "at the boundary", 1.0: "yes"}


def paper_verdicts(spec: dict, paper: pd.DataFrame, groups: dict[str, list[str]]) -> dict[str, str]:
    """The paper's jackpot verdict per group (paper file rows variant `jackpot`, value 0 / 0.5 / 1 =
    no / at the boundary / yes): the file's experiment is paper_experiments of the group's first
    experiment, or the group itself."""
    out = {}
    for g, exps in groups.items():
        key = spec.get("paper_experiments", {}).get(exps[0], g)
        p = paper[(paper["variant"] == "jackpot") & (paper["experiment"] == key)] if "experiment" in paper \
            else paper.iloc[:0]
        out[g] = f"{VERDICTS[float(p['value'].iloc[0])]} ({key})" if not p.empty else "–"
    return out


def _mark(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else "✓" if x else "✗"


@artefact_kind("jackpot_table", output="table", setup=True,
               settings=(*JACKPOT_SETTINGS, "experiment_labels", "mask_labels"))
def jackpot_table(spec: dict, tidy: pd.DataFrame, paper: pd.DataFrame, outputs: list[str]) -> None:
    """The jackpot conditions (see `jackpot`) per group, mask, sparsity and ticket, the paper's verdict for
    the group beside ours (Appendix F.2 gives one per network/dataset, not per sparsity)."""
    table = jackpot(spec, tidy)
    groups = {}
    for e in spec["experiments"]:
        groups.setdefault(group_of(spec["setup"], e), []).append(e)
    verdicts = paper_verdicts(spec, paper, groups)
    table["paper"] = [verdicts[g] for g in table["group"]]
    table.to_csv(outputs[0], index=False)
    st = {k: spec[k] for k in JACKPOT_SETTINGS}
    labels, masks = dict(zip(tidy["variant"], tidy["label"])), spec.get("mask_labels", {})
    lines = [f"# {spec.get('title', '')}".rstrip(), "",
             f"A_x: test accuracy ({spec['metric']}), mean over seeds, the best of the configured learning rates "
             f"(LR in parentheses): A_PRE the pretrained dense network, A_LT the ticket, A_RR its random "
             f"re-initialisation, A_SD the small-dense network of the same parameter count. Tolerances: "
             f"similar = within {st['similar']:g} points (or higher), clear gap = at least {st['clear_gap']:g} points, "
             f"non-trivial sparsity >= {100 * st['nontrivial_sparsity']:g}%. Conditions (Appendix B, t = 0 for LT): "
             "① non-trivial sparsity, ticket epochs <= T; ② A_LT − A_SD clear gap; ③ A_LT − A_RR clear gap (RR at any "
             "LR); ④ ticket similar or higher than PRE at the same LR, for some LR; ⑤ A_LT similar or higher than "
             "A_PRE. Appendix C (A_LT ≈ A_PRE, > A_SD, > A_RR) = ⑤ ∧ ② ∧ ③. Jackpot = ① to ⑤. "
             "Paper: Appendix F.2's verdict for the network/dataset.",
             "Params: non-zero trainable parameters at the end of each A's run "
             "(the CSV's params_pre / _lt / _rr / _sd); "
             "[N params vs M] marks an A_RR or A_SD run whose count differs from the ticket's "
             "(A_PRE is the dense network).",
             numerics_line(table) if len(table) else "Numerics: no runs.", ""]
    head = ["Network / dataset", "Mask", "Sparsity", "Ticket", "A_PRE", "A_LT", "A_RR", "A_SD",
            "①", "②", "③", "④", "⑤", "App. C", "Jackpot (ours)", "Jackpot (paper)"]
    body = [[group_label(spec, r["group"]), masks.get(r["mask"], r["mask"]), _sp(r["sparsity"]),
             labels.get(r["ticket"], r["ticket"])]
            + [f"{_num(r[a])} ({r[lr]:g})"
               + (params_tag(r[f"params_{a[2:]}"], r["params_lt"]) if a in ("a_rr", "a_sd") else "")
               if not math.isnan(r[a]) else "–"
               for a, lr in (("a_pre", "lr_pre"), ("a_lt", "lr_lt"), ("a_rr", "lr_rr"), ("a_sd", "lr_sd"))]
            + [_mark(r[c]) for c in ("c1", "c2", "c3", "c4", "c5", "appendix_c", "jackpot")] + [r["paper"]]
            for r in table.to_dict("records")]
    with open(outputs[1], "w") as f:
        f.write("\n".join(lines + _md(head, body)) + "\n")


# ------------------------------------------------------------------------------------------ R_p
