"""The report's "Findings": each claim of the paper (Lin et al., arXiv 2402.01782) tested on our runs.

:func:`findings` turns the ``runs`` frame of :func:`~lightning_local.benchmark.results.runs_frame`
into one row per (finding, dataset, sub-setting): our paired difference (mean ± sample std over
the pairs, n pairs), the p-value of a two-sided paired t-test (``scipy.stats.ttest_1samp`` of the
differences against 0, which equals ``ttest_rel`` of the two sides; NaN for n < 2), the paper's
own value of the same difference where it gives one (:mod:`~lightning_local.benchmark.paper`,
Tables III-V; figures give none), and a verdict with its reason.

Only the paper's three rules (:data:`RULES`: bptt, eprop, decolle) enter; other rules of a grid
(fa, dfa, conversion) are left out, except conversion in ``conversion_far``.

Pairing
    Training runs are paired by seed (same dataset and network), backdoor runs by
    (pair index, poison rate) - the same (source, target) pair at the same rate. A pair whose
    run is in the grid but not done (or lacks the analysis' result) counts as *missing* for the
    Table III-V findings; the figure findings (7-11) pair the files that exist.

Verdict rule (constants :data:`ALPHA` = 0.05, :data:`MIN_PAIRS` = 3)
    Every finding is ``inconclusive`` when no pair has data (reason "not run", or what is absent,
    e.g. "no eps >= 0.02 run"), when a pair is missing ("1 of 3 pairs missing") or when n < 3
    ("n=2"). Otherwise:

    * directional claims: ``reproduced`` when our mean difference has the expected sign and
      p < 0.05, ``contradicted`` when it has the opposite sign and p < 0.05, else ``inconclusive``
      ("p=0.21"; "p undefined" when every difference is 0). The expected sign is the claim's,
      except for ``rec_vs_ff_accuracy``, where it is the sign of the paper's own REC - FF
      difference of that cell (so N-MNIST DECOLLE expects REC < FF); a dataset without paper
      numbers is inconclusive there ("no paper value").
    * ``rw_as_informative_as_lw`` (equivalence): the mean over seeds of RW / LW is shown;
      ``reproduced`` when it lies in :data:`RATIO_BOUNDS` [0.5, 2], ``contradicted`` when it lies
      outside and log(RW / LW) differs from 0 at p < 0.05 (a paired t-test of log RW vs log LW,
      ratios being multiplicative), else ``inconclusive``.
    * ``backdoor_no_local_advantage``: ``reproduced`` unless the local rule's ASR is significantly
      lower than BPTT's (mean local - BPTT < 0 and p < 0.05), which is ``contradicted``.

The findings (differences are "left - right"; pp = percentage points)
    1. ``accuracy_order``: test accuracy, consecutive present rules of bptt, eprop, decolle
       (bptt - eprop, eprop - decolle), per dataset, network and arch; expected > 0.
    2. ``rec_vs_ff_accuracy``: test accuracy REC - FF per dataset, network and rule; expected sign
       of Table III's own difference.
    3. ``rec_fgsm_robust``: FGSM accuracy REC - FF per rule, each run's accuracy first averaged
       over its eps > 0; expected > 0. Per-eps rows are in the CSV (``detail`` True), not the report.
    4. ``local_fgsm_robust``: FGSM accuracy eprop - bptt and decolle - bptt per arch, averaged over
       eps >= :data:`HIGH_EPS` (0.02) within a run; expected > 0.
    5. ``backdoor_no_local_advantage``: ASR local - BPTT per arch over every poison rate, paired by
       (pair, rate); no-advantage rule above.
    6. ``rec_lower_asr``: ASR REC - FF per rule at poison rates :data:`LOW_RATES` (0.1, 0.3) only;
       expected < 0.
    7. ``rec_adv_cka_positive``: Figure 3's CKA(clean, FGSM) REC - FF per rule and layer, averaged
       over eps within a seed; expected > 0 (one-sample test over seeds).
    8. ``rec_adv_cka_bptt_largest``: that REC - FF gain averaged over eps and layers, bptt - eprop
       and bptt - decolle, paired by seed; expected > 0.
    9. ``rw_as_informative_as_lw``: Fisher of REC nets, hidden layers, each run's last recorded
       epoch, fisher_normalized averaged over t; RW / LW per layer, paired by seed; equivalence.
    10. ``lw_rises_to_output``: LW Fisher (same reduction) of the last layer minus the first
        (layers ordered input to output, the output layer last), per rule and arch, paired by
        seed; expected > 0.
    11. ``conversion_far``: Figure 2's same-layer CKA, per seed the mean over layers and rules of
        CKA(rule, conversion) minus the mean over layers and rule pairs of CKA(rule, rule), per
        arch; expected < 0.

A finding with no row at all (its analysis was not in the grid) still gives one ``inconclusive``
row with reason "not run", so the table always lists every finding.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from . import paper
from lightning_local.analysis.adversarial_cka import adversarial_cka_per_seed
from lightning_local.analysis.cka_comparison import cka_per_seed
from lightning_local.analysis.fisher_information import fisher_per_seed

from .results import layer_order, markdown, mean_std_n, title

ALPHA = 0.05
MIN_PAIRS = 3
HIGH_EPS = 0.02
LOW_RATES = (0.1, 0.3)
RATIO_BOUNDS = (0.5, 2.0)
RULES = ("bptt", "eprop", "decolle")  # the rules the paper makes claims about, in its order of accuracy (and of locality)
LOCAL_RULES = ("eprop", "decolle")
COLUMNS = ["finding", "statement", "dataset", "setting", "unit", "mean", "std", "n", "p_value", "paper",
           "verdict", "reason", "detail"]


@dataclass(frozen=True)
class Finding:
    """One claim of the paper: its id, one-line statement, the unit of our difference and its verdict rule.

    ``test`` is ``"directional"``, ``"ratio"`` (equivalence within :data:`RATIO_BOUNDS`) or ``"no_lower"``
    (reproduced unless significantly below zero); see the module docstring.
    """

    id: str
    statement: str
    unit: str = "pp"
    test: str = "directional"


FINDINGS = {f.id: f for f in (
    Finding("accuracy_order", "BPTT >= e-prop >= DECOLLE in test accuracy (Table III)"),
    Finding("rec_vs_ff_accuracy", "REC > FF on DVS Gesture and TIMIT, not on N-MNIST, where DECOLLE REC < FF "
                                  "(Table III; expected sign per cell: the paper's own difference)"),
    Finding("rec_fgsm_robust", "REC is more robust to FGSM than FF (Table IV, accuracy averaged over eps > 0)"),
    Finding("local_fgsm_robust", f"Local rules are more robust to FGSM than BPTT at high eps (Table IV, eps >= {HIGH_EPS:g})"),
    Finding("backdoor_no_local_advantage", "Local rules have no advantage over BPTT under backdoor attack (Table V, ASR)",
            test="no_lower"),
    Finding("rec_lower_asr", "At poison rates 0.1 and 0.3 REC has a lower attack success rate than FF (Table V)"),
    Finding("rec_adv_cka_positive", "REC - FF CKA(clean, FGSM) is positive at every layer (Figure 3)", unit="CKA"),
    Finding("rec_adv_cka_bptt_largest", "The REC - FF CKA(clean, FGSM) gain is larger for BPTT than for e-prop and "
                                        "DECOLLE (Figure 3)", unit="CKA"),
    Finding("rw_as_informative_as_lw", "Recurrent weights (RW) are about as informative as feed-forward weights (LW) "
                                       "(Figure 4, Fisher)", unit="ratio", test="ratio"),
    Finding("lw_rises_to_output", "LW Fisher importance rises from the input to the output layer (Figure 4)",
            unit="Fisher"),
    Finding("conversion_far", "Conversion's representations are far from the direct rules': CKA(rule, conversion) "
                              "< CKA(rule, rule) (Figure 2)", unit="CKA"),
)}

VERDICT_RULE = (
    "Verdict of a directional claim: **reproduced** when our mean paired difference has the paper's sign and p < 0.05 "
    "(two-sided paired t-test over seeds; backdoor: over (pair, poison rate)), **contradicted** when it has the opposite "
    f"sign and p < 0.05, else **inconclusive**; always inconclusive with n < {MIN_PAIRS} pairs, a missing pair or no runs "
    "(the reason in brackets).",
    f"Equivalence claims: RW ≈ LW is reproduced when the mean RW / LW ratio lies in [{RATIO_BOUNDS[0]:g}, "
    f"{RATIO_BOUNDS[1]:g}] and contradicted when it lies outside with log(RW / LW) ≠ 0 at p < 0.05; \"no local-rule "
    "advantage under backdoor\" is reproduced unless the local rule's ASR is significantly lower than BPTT's "
    "(mean < 0, p < 0.05). Paper: the paper's value of the same difference (Tables III-V).",
)


# ----------------------------------------------------------------------------- statistics and verdicts
def paired_p(differences) -> float:
    """Two-sided p-value of a paired t-test given the paired differences (one-sample test against 0); NaN for n < 2."""
    values = pd.Series(differences, dtype=float).dropna()
    if len(values) < 2:
        return np.nan
    with warnings.catch_warnings():  # identical differences: scipy warns, and returns p = 0 (or NaN if all are 0)
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(scipy_stats.ttest_1samp(values, 0.0).pvalue)


def judge(test: str, mean: float, n: int, p: float, expected: Optional[float] = 1, missing: int = 0,
          absent: str = "not run") -> tuple[str, str]:
    """(verdict, reason) of one row under the module's rule; ``expected`` is the claim's sign (+1 / -1; None: none)."""
    if n == 0:
        return "inconclusive", absent
    if missing:
        return "inconclusive", f"{missing} of {n + missing} pairs missing"
    if n < MIN_PAIRS:
        return "inconclusive", f"n={n}"
    significant = not np.isnan(p) and p < ALPHA
    if test == "no_lower":
        return ("contradicted", "") if significant and mean < 0 else ("reproduced", "")
    if test == "ratio":
        if RATIO_BOUNDS[0] <= mean <= RATIO_BOUNDS[1]:
            return "reproduced", ""
        return ("contradicted", "") if significant else ("inconclusive", _p_reason(p))
    if not expected or np.isnan(expected):
        return "inconclusive", "no paper value"
    if not significant:
        return "inconclusive", _p_reason(p)
    return ("reproduced", "") if np.sign(mean) == np.sign(expected) else ("contradicted", "")


def _p_reason(p: float) -> str:
    return "p undefined (all differences 0)" if np.isnan(p) else f"p={p:.2g}"


def _row(finding: Finding, dataset: str, setting: str, differences, *, expected: Optional[float] = 1,
         paper_value: Optional[float] = None, p: Optional[float] = None, absent: str = "not run",
         detail: bool = False) -> dict:
    """One table row from the per-pair differences (NaN = a missing pair); ``p`` overrides the t-test on them."""
    differences = pd.Series(differences, dtype=float)
    summary = mean_std_n(differences)
    p = paired_p(differences) if p is None else p
    verdict, reason = judge(finding.test, summary["mean"], summary["n"], p, expected,
                            int(differences.isna().sum()), absent)
    return {"finding": finding.id, "statement": finding.statement, "dataset": dataset, "setting": setting,
            "unit": finding.unit, **summary, "p_value": p,
            "paper": np.nan if paper_value is None else paper_value, "verdict": verdict, "reason": reason,
            "detail": detail}


def paired(frame: pd.DataFrame, side: str, left, right, keys: list[str]) -> pd.Series:
    """``left - right`` of column ``value`` between rows whose ``side`` is ``left`` / ``right``, matched on ``keys``.

    Rows sharing keys and side are averaged first (e.g. over layers); a key with no (or a NaN) partner gives NaN,
    so callers see it as a missing pair.
    """
    frame = frame[frame[side].isin([left, right])]
    if frame.empty:
        return pd.Series(dtype=float)
    table = frame.groupby(keys + [side])["value"].mean().unstack(side).reindex(columns=[left, right])
    return table[left] - table[right]


def _difference(a: Optional[float], b: Optional[float]) -> float:
    return np.nan if a is None or b is None else a - b


def _mean_or_nan(values: list[float]) -> float:
    # the paper's value is comparable only when it has every setting we averaged over
    return float(np.mean(values)) if values and not np.isnan(values).any() else np.nan


def _net(network: str) -> str:
    return "" if network == "linear" else f"{network} "


# ----------------------------------------------------------------------------- per-run values
def _number(value) -> float:
    return np.nan if value is None else float(value)


def _with_value(frame: pd.DataFrame, value: Callable[[dict], float]) -> pd.DataFrame:
    """``frame`` with column ``value`` = ``value(metrics)`` of done runs, NaN for the others (they count as missing)."""
    values = [value(m) if s == "done" else np.nan for m, s in zip(frame.metrics, frame.status)]
    return frame.drop(columns=["metrics", "paths"]).assign(value=pd.Series(values, index=frame.index, dtype=float))


def _train_values(runs: pd.DataFrame, value: Callable[[dict], float]) -> pd.DataFrame:
    """The main grid's training runs (no backdoor) of the paper's rules, with ``value(metrics)``."""
    main = runs[(runs.kind == "train") & runs.poison_rate.isna() & runs.rule.isin(RULES)]
    return _with_value(main, value)


def _backdoor_values(runs: pd.DataFrame) -> pd.DataFrame:
    """The backdoor runs of the paper's rules with their attack success rate in %."""
    backdoor = runs[(runs.kind == "train") & runs.poison_rate.notna() & runs.rule.isin(RULES)]
    return _with_value(backdoor, lambda m: 100 * _number((m.get("backdoor") or {}).get("attack_success_rate")))


def _accuracy(metrics: dict) -> float:
    return 100 * _number(metrics.get("test_acc"))


def _fgsm_mean(keep: Callable[[float], bool]) -> Callable[[dict], float]:
    """A run's FGSM accuracy in %, averaged over its epsilons that ``keep`` accepts (NaN if none)."""
    def value(metrics: dict) -> float:
        accuracies = [100 * float(a) for e, a in (metrics.get("fgsm") or {}).items() if keep(float(e))]
        return float(np.mean(accuracies)) if accuracies else np.nan
    return value


def _epsilons(runs: pd.DataFrame, dataset: str) -> list[float]:
    """The FGSM epsilons recorded by any run of ``dataset``."""
    return sorted({float(e) for m, d in zip(runs.metrics, runs.dataset) if d == dataset for e in (m.get("fgsm") or {})})


def _both_archs(group: pd.DataFrame) -> bool:
    return {"ff", "rec"} <= set(group.arch)


def _paper_asr(rule: str, dataset: str, arch: str, rate: float) -> Optional[float]:
    ref = paper.table_v(rule, dataset, arch, rate)
    return ref[1] if ref else None


def _last_epoch(fisher: pd.DataFrame) -> pd.DataFrame:
    """Each run's rows of its last recorded epoch."""
    last = fisher.groupby(["dataset", "rule", "arch", "seed"])["epoch"].transform("max")
    return fisher[fisher.epoch == last]


# ----------------------------------------------------------------------------- the findings
def accuracy_order(runs: pd.DataFrame) -> list[dict]:
    """Finding 1: test accuracy of consecutive present rules (bptt - eprop, eprop - decolle), paired by seed."""
    finding, rows = FINDINGS["accuracy_order"], []
    values = _train_values(runs, _accuracy)
    for (dataset, network, arch), group in values.groupby(["dataset", "network", "arch"], sort=False):
        present = [r for r in RULES if r in set(group.rule)]
        for left, right in zip(present, present[1:]):
            ref = _difference(paper.table_iii(left, dataset, arch, network), paper.table_iii(right, dataset, arch, network))
            rows.append(_row(finding, dataset, f"{_net(network)}{arch.upper()}: {left} - {right}",
                             paired(group, "rule", left, right, ["seed"]), paper_value=ref))
    return rows


def rec_vs_ff_accuracy(runs: pd.DataFrame) -> list[dict]:
    """Finding 2: test accuracy REC - FF per rule, expected sign = the paper's own difference in that cell."""
    finding, rows = FINDINGS["rec_vs_ff_accuracy"], []
    values = _train_values(runs, _accuracy)
    for (dataset, network, rule), group in values.groupby(["dataset", "network", "rule"], sort=False):
        if not _both_archs(group):
            continue
        ref = _difference(paper.table_iii(rule, dataset, "rec", network), paper.table_iii(rule, dataset, "ff", network))
        rows.append(_row(finding, dataset, f"{_net(network)}{rule}: REC - FF", paired(group, "arch", "rec", "ff", ["seed"]),
                         expected=None if np.isnan(ref) else np.sign(ref), paper_value=ref))
    return rows


def _paper_fgsm(rule_left: str, arch_left: str, rule_right: str, arch_right: str, dataset: str, network: str,
                epsilons: list[float]) -> float:
    """The paper's Table IV difference (left - right) averaged over ``epsilons`` (linear nets only)."""
    if network != "linear":
        return np.nan
    return _mean_or_nan([_difference(paper.table_iv(rule_left, dataset, arch_left, e),
                                     paper.table_iv(rule_right, dataset, arch_right, e)) for e in epsilons])


def rec_fgsm_robust(runs: pd.DataFrame) -> list[dict]:
    """Finding 3: FGSM accuracy REC - FF per rule over eps > 0 (plus per-eps detail rows), paired by seed."""
    finding, rows = FINDINGS["rec_fgsm_robust"], []
    values = _train_values(runs, _fgsm_mean(lambda e: e > 0))
    # per-eps values are cheap (one more number per run); their rows stay out of the report's table (detail)
    at_eps = {eps: _train_values(runs, _fgsm_mean(lambda e, eps=eps: bool(np.isclose(e, eps))))
              for eps in sorted({e for d in set(values.dataset) for e in _epsilons(runs, d) if e > 0})}
    for (dataset, network, rule), group in values.groupby(["dataset", "network", "rule"], sort=False):
        if not _both_archs(group):
            continue
        epsilons = [e for e in _epsilons(runs, dataset) if e > 0]
        rows.append(_row(finding, dataset, f"{_net(network)}{rule}: REC - FF, mean over eps > 0",
                         paired(group, "arch", "rec", "ff", ["seed"]),
                         paper_value=_paper_fgsm(rule, "rec", rule, "ff", dataset, network, epsilons)))
        for eps in epsilons:
            at = at_eps[eps].loc[group.index]  # the same runs, valued at this eps only
            rows.append(_row(finding, dataset, f"{_net(network)}{rule}: REC - FF, eps={eps:g}",
                             paired(at, "arch", "rec", "ff", ["seed"]),
                             paper_value=_paper_fgsm(rule, "rec", rule, "ff", dataset, network, [eps]), detail=True))
    return rows


def local_fgsm_robust(runs: pd.DataFrame) -> list[dict]:
    """Finding 4: FGSM accuracy local - bptt per arch, averaged over eps >= HIGH_EPS within a run, paired by seed."""
    finding, rows = FINDINGS["local_fgsm_robust"], []
    values = _train_values(runs, _fgsm_mean(lambda e: e >= HIGH_EPS - 1e-12))
    for (dataset, network, arch), group in values.groupby(["dataset", "network", "arch"], sort=False):
        all_eps = _epsilons(runs, dataset)
        epsilons = [e for e in all_eps if e >= HIGH_EPS - 1e-12]
        absent = f"no eps >= {HIGH_EPS:g} run" if all_eps and not epsilons else "not run"
        for rule in LOCAL_RULES:
            if not {rule, "bptt"} <= set(group.rule):
                continue
            rows.append(_row(finding, dataset, f"{_net(network)}{arch.upper()}: {rule} - bptt, eps >= {HIGH_EPS:g}",
                             paired(group, "rule", rule, "bptt", ["seed"]), absent=absent,
                             paper_value=_paper_fgsm(rule, arch, "bptt", arch, dataset, network, epsilons)))
    return rows


def backdoor_no_local_advantage(runs: pd.DataFrame) -> list[dict]:
    """Finding 5: ASR local - bptt per arch over every poison rate, paired by (pair, rate)."""
    finding, rows = FINDINGS["backdoor_no_local_advantage"], []
    values = _backdoor_values(runs)
    for (dataset, arch), group in values.groupby(["dataset", "arch"], sort=False):
        rates = sorted(group.poison_rate.unique())
        for rule in LOCAL_RULES:
            if not {rule, "bptt"} <= set(group.rule):
                continue
            ref = _mean_or_nan([_difference(_paper_asr(rule, dataset, arch, r), _paper_asr("bptt", dataset, arch, r))
                                for r in rates])
            rows.append(_row(finding, dataset, f"{arch.upper()}: {rule} - bptt ASR, poison {', '.join(f'{r:g}' for r in rates)}",
                             paired(group, "rule", rule, "bptt", ["pair", "poison_rate"]), paper_value=ref))
    return rows


def rec_lower_asr(runs: pd.DataFrame) -> list[dict]:
    """Finding 6: ASR REC - FF per rule at poison rates LOW_RATES only, paired by (pair, rate)."""
    finding, rows = FINDINGS["rec_lower_asr"], []
    for (dataset, rule), group in _backdoor_values(runs).groupby(["dataset", "rule"], sort=False):
        if not _both_archs(group):
            continue
        low = group[group.poison_rate.map(lambda r: bool(np.isclose(r, LOW_RATES).any()))]
        rates = sorted(low.poison_rate.unique())
        ref = _mean_or_nan([_difference(_paper_asr(rule, dataset, "rec", r), _paper_asr(rule, dataset, "ff", r))
                            for r in rates])
        absent = f"poison rates {'/'.join(f'{r:g}' for r in LOW_RATES)} not run" if low.empty else "not run"
        rows.append(_row(finding, dataset, f"{rule}: REC - FF ASR, poison {' and '.join(f'{r:g}' for r in LOW_RATES)}",
                         paired(low, "arch", "rec", "ff", ["pair", "poison_rate"]), expected=-1, paper_value=ref,
                         absent=absent))
    return rows


def rec_adv_cka_positive(runs: pd.DataFrame) -> list[dict]:
    """Finding 7: Figure 3's REC - FF CKA(clean, FGSM) per rule and layer, averaged over eps within a seed."""
    finding, rows = FINDINGS["rec_adv_cka_positive"], []
    frame = adversarial_cka_per_seed(runs)
    per_layer = frame[frame.rule.isin(RULES)].groupby(["dataset", "rule", "layer", "seed"], sort=False).cka.mean()
    for (dataset, rule), group in per_layer.reset_index().groupby(["dataset", "rule"], sort=False):
        for layer in layer_order(group):
            rows.append(_row(finding, dataset, f"{rule} {layer}: REC - FF, mean over eps", group[group.layer == layer].cka))
    return rows


def rec_adv_cka_bptt_largest(runs: pd.DataFrame) -> list[dict]:
    """Finding 8: bptt's REC - FF CKA gain minus eprop's / decolle's (means over eps and layers), paired by seed."""
    finding, rows = FINDINGS["rec_adv_cka_bptt_largest"], []
    frame = adversarial_cka_per_seed(runs).rename(columns={"cka": "value"})
    for dataset, group in frame.groupby("dataset", sort=False):
        for rule in LOCAL_RULES:
            if {rule, "bptt"} <= set(group.rule):
                rows.append(_row(finding, dataset, f"bptt - {rule}: REC - FF gain, mean over eps and layers",
                                 paired(group, "rule", "bptt", rule, ["seed"])))
    return rows


def rw_as_informative_as_lw(runs: pd.DataFrame) -> list[dict]:
    """Finding 9: RW / LW normalized Fisher of REC nets per hidden layer (last epoch, mean over t), paired by seed."""
    finding, rows = FINDINGS["rw_as_informative_as_lw"], []
    fisher = fisher_per_seed(runs)
    fisher = _last_epoch(fisher[(fisher.arch == "rec") & fisher.rule.isin(RULES)])
    for (dataset, rule), group in fisher.groupby(["dataset", "rule"], sort=False):
        table = group.groupby(["layer", "seed", "weights"]).fisher_normalized.mean().unstack("weights")
        if "RW" not in table or "LW" not in table:
            continue
        ratios = (table.RW / table.LW).dropna()  # RW exists on hidden layers only: those layers stay
        for layer in layer_order(ratios.reset_index()):
            ratio = ratios.xs(layer, level="layer")
            with np.errstate(divide="ignore", invalid="ignore"):
                p = paired_p(np.log(ratio))  # = paired t-test of log RW against log LW
            rows.append(_row(finding, dataset, f"{rule} REC {layer}: RW / LW", ratio, p=p))
    return rows


def lw_rises_to_output(runs: pd.DataFrame) -> list[dict]:
    """Finding 10: LW normalized Fisher (last epoch, mean over t) of the last minus the first layer, paired by seed."""
    finding, rows = FINDINGS["lw_rises_to_output"], []
    fisher = fisher_per_seed(runs)
    lw = _last_epoch(fisher[(fisher.weights == "LW") & fisher.rule.isin(RULES)]).rename(columns={"fisher_normalized": "value"})
    for (dataset, rule, arch), group in lw.groupby(["dataset", "rule", "arch"], sort=False):
        layers = layer_order(group)
        if len(layers) < 2:
            continue
        rows.append(_row(finding, dataset, f"{rule} {arch.upper()}: LW {layers[-1]} - {layers[0]}",
                         paired(group, "layer", layers[-1], layers[0], ["seed"])))
    return rows


def conversion_far(runs: pd.DataFrame) -> list[dict]:
    """Finding 11: mean CKA(rule, conversion) minus mean CKA(rule, rule) over layers, per arch, paired by seed."""
    finding, rows = FINDINGS["conversion_far"], []
    cka = cka_per_seed(runs)
    cka = cka[cka.rule.isin(RULES) & cka.reference.isin(RULES + ("conversion",))]
    cka = cka.assign(side=np.where(cka.reference == "conversion", "conversion", "direct"), value=cka.cka)
    for (dataset, arch), group in cka.groupby(["dataset", "arch"], sort=False):
        absent = "conversion not compared" if "conversion" not in set(group.side) else "no pair of direct rules"
        rows.append(_row(finding, dataset, f"{arch.upper()}: conversion - direct rules, mean over layers",
                         paired(group, "side", "conversion", "direct", ["seed"]), expected=-1, absent=absent))
    return rows


COMPUTE = {
    "accuracy_order": accuracy_order, "rec_vs_ff_accuracy": rec_vs_ff_accuracy, "rec_fgsm_robust": rec_fgsm_robust,
    "local_fgsm_robust": local_fgsm_robust, "backdoor_no_local_advantage": backdoor_no_local_advantage,
    "rec_lower_asr": rec_lower_asr, "rec_adv_cka_positive": rec_adv_cka_positive,
    "rec_adv_cka_bptt_largest": rec_adv_cka_bptt_largest, "rw_as_informative_as_lw": rw_as_informative_as_lw,
    "lw_rises_to_output": lw_rises_to_output, "conversion_far": conversion_far,
}


def findings(runs: pd.DataFrame) -> pd.DataFrame:
    """Every finding's rows (columns :data:`COLUMNS`), in :data:`FINDINGS` order; "not run" rows for absent ones."""
    rows = []
    for finding_id, finding in FINDINGS.items():
        found = COMPUTE[finding_id](runs)
        if all(row["n"] == 0 for row in found):  # never dropped, and one row when its analysis is absent altogether
            reasons = {row["reason"] for row in found}
            found = [_row(finding, "", "", [], absent=reasons.pop() if len(reasons) == 1 else "not run")]
        rows += found
    return pd.DataFrame(rows, columns=COLUMNS)


# ----------------------------------------------------------------------------- markdown
def _ours(row) -> str:
    if row.n == 0:
        return "–"
    digits = 2 if row.unit == "pp" else 3  # percentage points vs CKA, ratios and normalized Fisher
    return f"{row['mean']:+.{digits}f} ± {row['std']:.{digits}f} {row.unit} (n={int(row.n)})"


def _setting(row) -> str:
    return ", ".join(part for part in (title(row.dataset) if row.dataset else "", row.setting) if part) or "–"


def section(table: pd.DataFrame) -> list[str]:
    """The report's ``## Findings`` section (markdown lines): the verdict rule, the statements and the table."""
    shown = table[~table.detail.astype(bool)]
    frame = pd.DataFrame({
        "finding": shown.finding, "setting": shown.apply(_setting, axis=1), "ours mean ± std (n)": shown.apply(_ours, axis=1),
        "p": shown.p_value.map(lambda p: "–" if pd.isna(p) else f"{p:.2g}"),
        "paper": shown.paper.map(lambda v: "–" if pd.isna(v) else f"{v:+.2f}"),
        "verdict": [f"{v} ({r})" if r else v for v, r in zip(shown.verdict, shown.reason)],
    })
    legend = [f"- `{f.id}`: {f.statement}" for f in FINDINGS.values()]
    return ["## Findings", "", VERDICT_RULE[0], "", VERDICT_RULE[1], "", *legend, "", markdown(frame), "",
            "Differences are left - right (pp: percentage points). Per-epsilon rows of `rec_fgsm_robust` and every "
            "number unrounded: findings.csv; the rules in detail: lightning_local/benchmark/findings.py.", ""]
