"""When a candidate may replace the production model: the paired held-out comparison.

Both models classify the same held-out windows (devices or time blocks the candidate never trained or
selected on). Per window there are four outcomes; only the discordant ones carry evidence:
    b = windows the candidate gets right and the base gets wrong,
    c = windows the base gets right and the candidate gets wrong.
Under "the candidate is no more accurate than the base", each discordant window is a fair coin, so
the exact one-sided McNemar test gives p = P(X >= b), X ~ Binomial(b + c, 1/2). The candidate is
promoted automatically only when all hold:
  1. at least `min_heldout` held-out windows;
  2. b > c and p < alpha (default 0.05): it is more accurate by more than the held-out size explains;
  3. its held-out macro-F1 is not lower than the base's (accuracy gained on one big class must not
     hide a class lost).
Otherwise it stays a candidate, with the reason; an operator may still promote it by hand. A
regression (c >= b) can never pass rule 2. The held-out windows are paired and overlap in time
(hop < window), so they are not fully independent: the test is, if anything, optimistic, which is
why rule 3 and a minimum size stand beside it (docs/finetune.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import comb

import numpy as np


def mcnemar_exact_p(b: int, c: int) -> float:
    """One-sided exact McNemar p-value of 'the first model is more accurate' (b: only it right, c: only the other)."""
    n = b + c
    if n == 0:
        return 1.0
    return float(sum(comb(n, k) for k in range(b, n + 1)) / 2**n)


@dataclass
class Decision:
    promote: bool
    reason: str
    heldout_windows: int
    candidate_only_right: int  # b
    base_only_right: int  # c
    p_value: float
    alpha: float

    def to_dict(self) -> dict:
        return asdict(self)


def decide(base_correct: np.ndarray, candidate_correct: np.ndarray, base_macro_f1: float, candidate_macro_f1: float,
           *, alpha: float = 0.05, min_heldout: int = 20) -> Decision:
    base_correct, candidate_correct = np.asarray(base_correct, bool), np.asarray(candidate_correct, bool)
    n = len(base_correct)
    b = int((candidate_correct & ~base_correct).sum())
    c = int((base_correct & ~candidate_correct).sum())
    p = mcnemar_exact_p(b, c)
    acc_base, acc_cand = (float(base_correct.mean()), float(candidate_correct.mean())) if n else (0.0, 0.0)
    summary = (f"held-out accuracy {acc_cand:.3f} vs base {acc_base:.3f}, macro-F1 {candidate_macro_f1:.3f} vs "
               f"{base_macro_f1:.3f} on {n} windows; discordant: candidate-only right {b}, base-only right {c}, "
               f"exact one-sided McNemar p = {p:.2g}")
    if n < min_heldout:
        promote, why = False, f"not promoted: only {n} held-out windows (need {min_heldout})"
    elif b <= c:
        promote, why = False, "not promoted: not more accurate than the base"
    elif p >= alpha:
        promote, why = False, f"not promoted: the gain is not significant (p >= {alpha:g})"
    elif candidate_macro_f1 < base_macro_f1:
        promote, why = False, "not promoted: macro-F1 lower than the base's"
    else:
        promote, why = True, f"promoted: significantly more accurate (p < {alpha:g}) and macro-F1 not lower"
    return Decision(promote, f"{why}; {summary}", n, b, c, p, alpha)
