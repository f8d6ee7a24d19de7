"""Claims and their verdicts (ticketlab.claims, ticketlab.artefacts.claims): intervals against hand-computed
cases and an independent Welch test on raw samples, the verdict rules, missing data, and the config check."""
import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from conftest import REPO, config_with
from ticketlab import claims, plan
from ticketlab.artefacts.claims import (CONTRADICTED, INCONCLUSIVE, MISSING, NOT_DECIDED, REPRODUCED, ClaimDataError,
                                        evaluate, interval, judge, select, verdicts, welch)
from ticketlab.config import ConfigError, validate

T8, T3, T16 = 2.306004, 3.182446, 2.119905  # two-sided 95% t quantiles (printed tables) for df 8, 3, 16


def samples(mean, std, n):
    """n values with exactly this mean and sample std (ddof 1)."""
    z = np.arange(n, dtype=float)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + std * z


def test_welch_interval_by_hand_and_against_scipys_welch_test_on_raw_samples():
    # equal std and n: var terms 4/5 each, se sqrt(1.6), Welch-Satterthwaite df = 1.6^2 / (2 * 0.8^2 / 4) = 8
    d, se, df = welch((10.0, 2.0, 5), (8.0, 2.0, 5))
    assert (d, df) == (2.0, pytest.approx(8.0)) and se == pytest.approx(math.sqrt(1.6))
    lo, hi = interval(d, se, df)
    half = T8 * math.sqrt(1.6)
    assert (lo, hi) == (pytest.approx(2 - half, abs=1e-5), pytest.approx(2 + half, abs=1e-5))
    for a, b in (((12.0, 1.0, 5), (8.0, 1.0, 5)), ((70.1, 0.8, 3), (69.2, 0.3, 4)), ((1.0, 2.5, 7), (3.0, 0.5, 2))):
        ref = stats.ttest_ind(samples(*a), samples(*b), equal_var=False).confidence_interval(0.95)
        assert interval(*welch(a, b)) == (pytest.approx(ref.low), pytest.approx(ref.high))
    # against a constant: the one-sample interval, df n - 1
    lo, hi = interval(*welch((3.0, 1.0, 4), (0.0, 0.0, math.inf)))
    assert (lo, hi) == (pytest.approx(3 - T3 * 0.5, abs=1e-5), pytest.approx(3 + T3 * 0.5, abs=1e-5))
    ref = stats.ttest_1samp(samples(3.0, 1.0, 4), 0.0).confidence_interval(0.95)
    assert (lo, hi) == (pytest.approx(ref.low), pytest.approx(ref.high))


def test_one_seed_has_no_interval_and_identical_seeds_a_point():
    d, se, df = welch((5.0, 0.0, 1), (4.0, 0.0, 3))
    assert d == 1.0 and math.isnan(df) and all(math.isnan(x) for x in interval(d, se, df))
    assert judge(*interval(d, se, df), "greater") == INCONCLUSIVE
    assert interval(*welch((5.0, 0.0, 3), (4.0, 0.0, 3))) == (1.0, 1.0)  # no spread: the difference itself


def test_verdict_rules_on_the_side_and_in_the_range():
    assert judge(0.1, 2.0, "greater") == REPRODUCED and judge(-2.0, -0.1, "greater") == CONTRADICTED
    assert judge(-0.1, 2.0, "greater") == INCONCLUSIVE and judge(-2.0, -0.1, "less") == REPRODUCED
    assert judge(0.1, 2.0, "less") == CONTRADICTED
    assert judge(2.5, 5.5, "range", [1, 6]) == REPRODUCED      # inside
    assert judge(2.5, 5.5, "range", [3, 6]) == INCONCLUSIVE    # over an edge
    assert judge(2.5, 5.5, "range", [6, 9]) == CONTRADICTED    # outside


def table(*rows):
    return pd.DataFrame.from_records([dict(zip(("experiment", "mask", "sparsity", "variant", "mean", "std", "n"), r))
                                      for r in rows])


CLAIM = {"artefact": "t", "a": {"variant": "x"}, "b": {"variant": "y"}, "expect": "greater", "over": "every"}


def test_every_cell_must_hold_and_the_weakest_cell_is_reported():
    df = table(("e", "imp", 0.5, "x", 12.0, 1.0, 5), ("e", "imp", 0.5, "y", 8.0, 1.0, 5),
               ("e", "imp", 0.9, "x", 10.0, 2.0, 5), ("e", "imp", 0.9, "y", 8.0, 2.0, 5))
    r = evaluate(CLAIM, df, "c")
    # 50%: 4 ± T8 sqrt(0.4) (reproduced); 90%: 2 ± T8 sqrt(1.6) (straddles) -> inconclusive, 90% reported
    assert (r["verdict"], r["cells"], r["cells_reproduced"], r["cells_inconclusive"]) == (INCONCLUSIVE, 2, 1, 1)
    assert r["diff"] == 2.0 and r["ci_low"] == pytest.approx(2 - T8 * math.sqrt(1.6), abs=1e-5)
    assert "sparsity=0.9" in r["weakest"]
    assert evaluate({**CLAIM, "select": {"sparsity": {"max": 0.6}}}, df, "c")["verdict"] == REPRODUCED
    worse = table(("e", "imp", 0.5, "x", 12.0, 1.0, 5), ("e", "imp", 0.5, "y", 8.0, 1.0, 5),
                  ("e", "imp", 0.9, "x", 4.0, 1.0, 5), ("e", "imp", 0.9, "y", 8.0, 1.0, 5))
    assert evaluate(CLAIM, worse, "c")["verdict"] == CONTRADICTED   # one cell on the other side is enough


def test_pooled_claims_judge_the_mean_difference_over_cells():
    df = table(("e", "imp", 0.5, "x", 9.0, 1.0, 5), ("e", "imp", 0.5, "y", 8.0, 1.0, 5),
               ("e", "imp", 0.9, "x", 11.0, 1.0, 5), ("e", "imp", 0.9, "y", 8.0, 1.0, 5))
    r = evaluate({**CLAIM, "over": "pooled"}, df, "c")
    # D = (1 + 3) / 2; var = 4 * 0.2 / 2^2 = 0.2; df = 0.8^2 / (4 * 0.2^2 / 4) = 16
    assert r["diff"] == 2.0 and r["df"] == pytest.approx(16.0)
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(2 - T16 * math.sqrt(0.2), abs=1e-5),
                                           pytest.approx(2 + T16 * math.sqrt(0.2), abs=1e-5))
    assert r["verdict"] == REPRODUCED
    ranged = {**CLAIM, "over": "pooled", "expect": "range"}
    assert evaluate({**ranged, "range": [1.05, 4.93]}, df, "c")["verdict"] == REPRODUCED  # [1.052, 2.948] inside
    assert evaluate({**ranged, "range": [1.1, 4.93]}, df, "c")["verdict"] == INCONCLUSIVE  # over the low edge
    assert evaluate({**ranged, "range": [3.0, 4.93]}, df, "c")["verdict"] == CONTRADICTED


def test_one_seed_is_inconclusive_with_the_difference_beside_it():
    df = table(("e", "imp", 0.9, "x", 70.0, 0.0, 1), ("e", "imp", 0.9, "y", 60.0, 0.0, 1))
    r = evaluate(CLAIM, df, "c")
    assert r["verdict"] == INCONCLUSIVE and r["diff"] == 10.0 and math.isnan(r["ci_low"])
    assert "n = 1" in r["reason"]


def test_missing_rows_say_which_artefact_and_which_rows():
    df = table(("e", "imp", 0.5, "x", 9.0, 1.0, 5), ("e", "imp", 0.5, "y", 8.0, 1.0, 5))
    r = evaluate({**CLAIM, "b": {"variant": "rewind"}}, df, "c")
    assert r["verdict"] == MISSING and r["reason"] == "t has no rows with variant=rewind"
    r = evaluate({**CLAIM, "select": {"sparsity": {"min": 0.89}}}, df, "c")
    assert r["verdict"] == MISSING and "t has no rows with sparsity >= 0.89, variant=x" == r["reason"]
    assert evaluate(CLAIM, None, "c")["reason"] == "artefact t not read"
    unpaired = table(("e", "imp", 0.5, "x", 9.0, 1.0, 5), ("e", "imp", 0.9, "y", 8.0, 1.0, 5))
    r = evaluate(CLAIM, unpaired, "c")
    assert r["verdict"] == MISSING and "sparsity=0.5" in r["reason"]
    with pytest.raises(ClaimDataError, match="no column 'stage'"):
        evaluate({**CLAIM, "a": {"variant": "x", "stage": "layer1"}}, df, "c")
    twice = pd.concat([df, df])
    with pytest.raises(ClaimDataError, match="2 rows of side a"):
        evaluate(CLAIM, twice, "c")


def test_constants_flags_and_max_filters():
    df = table(("e", "imp", 0.5, "x", 3.0, 1.0, 4), ("e", "imp", 0.9, "x", -3.0, 1.0, 4))
    above = {**CLAIM, "b": {"value": 0}, "a": {"variant": "x", "sparsity": "min"}}
    assert evaluate(above, df, "c")["verdict"] == REPRODUCED
    assert evaluate({**above, "a": {"variant": "x", "sparsity": "max"}}, df, "c")["verdict"] == CONTRADICTED
    assert len(select(df, {"sparsity": [0.5, 0.9]}, "c")) == 2 and len(select(df, {"sparsity": 0.9000001}, "c")) == 1
    jack = pd.DataFrame({"group": ["r20", "vgg", "r20"], "sparsity": [0.5, 0.5, 0.9], "jackpot": [False, True, False],
                         "n_seeds": [2, 2, 1]})
    flag = {"artefact": "j", "a": {"group": "r20"}, "expect": False, "over": "every",
            "columns": {"value": "jackpot", "n": "n_seeds"}}
    r = evaluate(flag, jack, "c")
    assert (r["verdict"], r["cells_reproduced"], r["cells_inconclusive"]) == (INCONCLUSIVE, 1, 1)  # one seed at 90%
    assert evaluate({**flag, "select": {"sparsity": 0.5}}, jack, "c")["verdict"] == REPRODUCED
    assert evaluate({**flag, "a": {"group": "vgg"}}, jack, "c")["verdict"] == CONTRADICTED
    undecided = jack.assign(jackpot=[None, True, False])  # a flag the artefact left empty is no verdict
    assert evaluate({**flag, "select": {"sparsity": 0.5}}, undecided, "c")["verdict"] == MISSING


def test_undecided_claims_are_reported_as_such():
    spec = {"id": "x_claims", "decided": {"x": ["kept"]},
            "claim_files": {"x": {"paper": "P", "claims": {
                "kept": {**CLAIM, "quote": "q", "where": "w"}, "left": {**CLAIM, "quote": "q", "where": "w"}}}}}
    df = table(("e", "imp", 0.5, "x", 12.0, 1.0, 5), ("e", "imp", 0.5, "y", 8.0, 1.0, 5))
    t = verdicts(spec, {"t": df}).set_index("claim")
    assert t.loc["kept", "verdict"] == REPRODUCED and t.loc["left", "verdict"] == NOT_DECIDED
    assert "artefacts.x_claims.decide" in t.loc["left", "reason"]


@pytest.fixture
def claim_dir(tmp_path, monkeypatch):
    """config/claims/ in a scratch directory: a claim file `x` (one claim on spend_tab_a3) to break."""
    monkeypatch.setattr(claims, "CLAIMS_DIR", tmp_path)
    good = {"paper": "P", "claims": {"c1": {"quote": "q", "where": "Table A3", "artefact": "spend_tab_a3",
                                            "a": {"variant": "at_trt"}, "b": {"variant": "lth"},
                                            "select": {"sparsity": {"min": 0.5}}, "expect": "greater"}}}

    def write(mutate=lambda d: None):
        doc = yaml.safe_load(yaml.safe_dump(good))
        mutate(doc)
        (tmp_path / "x.yaml").write_text(yaml.safe_dump(doc))
    write()
    return write


def demo_with_claims(**extra):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["artefacts"] = {k: a for k, a in cfg["artefacts"].items() if a["kind"] != "claims"}  # theirs are elsewhere
    cfg["artefacts"]["x_claims"] = {"kind": "claims", "claims": ["x"], **extra}
    return cfg


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["claims"]["c1"].update(artefact="spend_tab_a9"), "claims.c1.artefact: no artefact 'spend_tab_a9'"),
    (lambda d: d["claims"]["c1"]["a"].update(variant="att"),
     "claims.c1.a.variant: spend_tab_a3 shows no variant 'att'"),
    (lambda d: d["claims"]["c1"]["select"].update(sparsity=0.42), "claims.c1.select.sparsity: spend_tab_a3 shows no "
                                                                   "sparsity 0.42"),
    (lambda d: d["claims"]["c1"].pop("quote"), "claims.c1: 'quote' is a required property"),
    (lambda d: d["claims"]["c1"].update(expect="range"), "claims.c1: 'range' is a required property"),
    (lambda d: d["claims"]["c1"].update(expect="bigger"), "claims.c1.expect"),
])
def test_a_claim_file_that_does_not_fit_fails_the_config_check_naming_the_key(claim_dir, mutate, key):
    claim_dir(mutate)
    with pytest.raises(ConfigError, match="config error at .*x.yaml: " + key.replace("(", r"\(").replace("[", r"\[")):
        validate(demo_with_claims())


def test_decide_names_claims_and_planning_reads_only_the_decided_ones_artefacts(claim_dir):
    with pytest.raises(ConfigError, match=r"config error at artefacts.x_claims.decide: no claim 'c9'"):
        validate(demo_with_claims(decide=["c9"]))
    cfg = validate(demo_with_claims())
    assert [r["artefact"] for r in plan.artefact_runs(cfg, "x_claims")] == ["spend_tab_a3"]
    assert plan.artefact_runs(cfg, "x_claims")[0]["path"] == "results/tables/spend_tab_a3.csv"
    assert plan.artefact_runs(validate(demo_with_claims(decide=[])), "x_claims") == []
    with pytest.raises(ConfigError, match="artefacts.x_claims.claims\\[0\\]: no claim file"):
        validate(demo_with_claims(claims=["nope"]))
    # decide: targets = the claims whose artefact the configuration targets (a paper configuration's own)
    assert plan.artefact_runs(validate({**demo_with_claims(decide="targets"), "targets": ["spend_tab_a2"]}),
                              "x_claims") == []
    cfg = validate({**demo_with_claims(decide="targets"), "targets": ["spend_tab_a3", "x_claims"]})
    assert [r["artefact"] for r in plan.artefact_runs(cfg, "x_claims")] == ["spend_tab_a3"]
    assert plan.artefact_job(cfg, "x_claims")["spec"]["decided"] == {"x": ["c1"]}


SEEDS = REPO.parent / "shared" / "seeds"  # the papers' text, where this checkout sits beside them
PAPERS = {"spend": "000", "sanity": "001", "tost": "002", "dlth": "003", "gradflow": "004"}


def _words(text: str) -> str:
    """Text as quotes are compared: one space between words, plain quotes, words split at a line's end joined."""
    text = " ".join(text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
                    .split())
    return re.sub(r"(\w)- (\w)", r"\1\2", text)


def quoted(quote: str, text: str) -> bool:
    """The quote is in the text: its parts between "[...]" (where a figure or a page break interrupts the
    sentence in the text extraction), in order."""
    at = 0
    for part in (_words(p) for p in quote.split("[...]")):
        at = text.find(part, at)
        if at < 0:
            return False
        at += len(part)
    return True


def test_every_paper_has_its_claims_quoted_and_located():
    """At least six claims per paper, each located, each quote verbatim in the paper's text (checked where the
    text is at hand: ../shared/seeds), and every claim fits the demo and paper configurations."""
    for prefix, seed in PAPERS.items():
        doc = claims.load(prefix)
        assert len(doc["claims"]) >= 6, prefix
        texts = list(SEEDS.glob(f"{seed}_*.txt"))
        text = _words(texts[0].read_text()) if texts else None
        for cid, c in doc["claims"].items():
            assert c["quote"].strip() and c["where"].strip(), (prefix, cid)
            if text is not None:
                assert quoted(c["quote"], text), (prefix, cid, c["quote"])
    for extra in ([], *[[REPO / "config" / "paper" / f"{p}.yaml"] for p in PAPERS]):
        config_with(*extra)
