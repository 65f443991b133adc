"""Anomaly scores that keep the ordering of the evidence all the way to the top.

A model's score is one minus a p-value, so ``score >= 1 - alpha`` flags a share ``alpha`` of
in-control windows. Computed as ``1 - p`` that score saturates: every p below about 1e-16 is
exactly 1.0, so a window ten standard deviations out and one a thousand out tie, and neither
a threshold nor a top-k review can tell them apart. :func:`evidence_score` is ``1 - p`` down to
``p = TAIL_P`` (1e-6; every threshold up to 0.999999 flags the windows it flagged before) and
beyond it a tail in ``L = -log10 p`` that keeps rising and stays below 1.0 for every finite
float ``L``. The p-values behind it are computed in log space here, so they never underflow:
the models take the plain p-value on the common path and these functions only in the tail.

>>> evidence_score(-2.0)  # p = 0.01
0.99
>>> evidence_score(-6.0) == 1 - TAIL_P
True
>>> evidence_score(-20.0) < evidence_score(-2000.0) < evidence_score(-2e300) < 1.0
True
>>> round(log10_p_of_score(evidence_score(-40.0)), 6)
-40.0
>>> round(log10_normal_two_sided(1e6))  # z = 1e6: erfc underflows long before
-217147240958
"""

from __future__ import annotations

import math

from scipy import special

#: below this p-value the score leaves ``1 - p`` for the tail (which ``1 - p`` cannot resolve)
TAIL_P = 1e-6
_TAIL_L = 6.0  # -log10(TAIL_P)
_LN10 = math.log(10.0)
_LN2 = math.log(2.0)
#: below this the plain p-values are left for the log-space computations (no subnormals)
_TINY = 1e-300


def evidence_score(log10_p: float) -> float:
    """The score of a p-value given as ``log10 p``: strictly increasing in ``-log10 p``.

    ``1 - p`` while ``p >= TAIL_P``; beyond, with ``L = -log10 p``,
    ``1 - TAIL_P / (1 + ln(L / 6))``: continuous at the knee, below 1.0 for every finite float
    ``L`` (at the largest, ``1 - 1.4e-9``) and resolving a relative change in ``L`` of about
    1e-7 at ``L`` = 1e11 (a z-score of 1e6). A p-value above 1 (a Bonferroni product) scores 0.
    """
    if log10_p >= -_TAIL_L:
        return 1.0 - 10.0 ** min(log10_p, 0.0)
    if math.isnan(log10_p):  # no evidence
        return 0.0
    tail = -max(log10_p, -1.7976931348623157e308)  # -inf: as far out as a float goes
    return 1.0 - TAIL_P / (1.0 + math.log(tail / _TAIL_L))


def log10_p_of_score(score: float) -> float:
    """The inverse of :func:`evidence_score`: the ``log10 p`` whose score is ``score``, for
    ``0 <= score < 1`` (a threshold given as a score, moved in p; -inf at 1.0)."""
    if score <= 1.0 - TAIL_P:
        return math.log10(max(1.0 - score, _TINY))
    if score >= 1.0:
        return -math.inf
    return -_TAIL_L * math.exp(TAIL_P / (1.0 - score) - 1.0)


def log10_normal_two_sided(z: float) -> float:
    """``log10 P(|Z| > z)`` for a standard normal ``Z`` (``erfc(z / sqrt 2)``), any ``z >= 0``."""
    p = math.erfc(z / math.sqrt(2.0))
    if p >= _TINY:
        return math.log10(p)
    return (_LN2 + float(special.log_ndtr(-z))) / _LN10


def log10_t_two_sided(t: float, df: float) -> float:
    """``log10 P(|T| > t)`` for Student-t ``T`` with ``df`` degrees of freedom, any ``t >= 0``.

    >>> from scipy import stats
    >>> round(log10_t_two_sided(3.0, 5.0) - math.log10(2 * stats.t.sf(3.0, 5.0)), 12)
    0.0
    >>> log10_t_two_sided(100.0, 999.0) < -300  # stats.t.logsf: -inf
    True
    """
    p = 2.0 * float(special.stdtr(df, -t))
    if p >= _TINY:
        return math.log10(p)
    # P(|T| > t) = I_x(df / 2, 1 / 2), x = df / (df + t²)
    log_x, log_1mx = _log_ratio(df, t * t) if t < 1e150 else (math.log(df) - 2 * math.log(t), 0.0)
    return _log_betainc_tail(df / 2.0, 0.5, log_x, log_1mx) / _LN10


def log10_f_sf(x: float, dfn: float, dfd: float) -> float:
    """``log10 P(F > x)`` for ``F`` with (``dfn``, ``dfd``) degrees of freedom, any ``x >= 0``.

    >>> from scipy import stats
    >>> round(log10_f_sf(5.0, 3.0, 50.0) - math.log10(stats.f.sf(5.0, 3.0, 50.0)), 12)
    0.0
    >>> log10_f_sf(1e300, 3.0, 50.0) < -7000  # stats.f.logsf: -inf
    True
    """
    p = float(special.fdtrc(dfn, dfd, x))
    if p >= _TINY:
        return math.log10(p)
    # P(F > x) = I_w(dfd / 2, dfn / 2), w = dfd / (dfd + dfn x)
    if dfn * x < 1e300:
        log_w, log_1mw = _log_ratio(dfd, dfn * x)
    else:
        log_w, log_1mw = math.log(dfd) - math.log(dfn) - math.log(x), 0.0
    return _log_betainc_tail(dfd / 2.0, dfn / 2.0, log_w, log_1mw) / _LN10


def _log_ratio(a: float, b: float) -> tuple[float, float]:
    """``ln(a / (a + b))`` and ``ln(b / (a + b))`` without cancellation."""
    log_sum = math.log(a + b)
    return math.log(a) - log_sum, math.log(b) - log_sum


def _log_betainc_tail(a: float, b: float, log_x: float, log_1mx: float) -> float:
    """``ln I_x(a, b)`` (regularized incomplete beta) far in its lower tail.

    ``I_x(a, b) = x^a (1 - x)^b / (a B(a, b)) * CF`` with the continued fraction of Numerical
    Recipes (6.4), evaluated by Lentz's method; it converges quickly for
    ``x < (a + 1) / (a + b + 2)``, which a p-value below 1e-300 always is.
    """
    x = math.exp(log_x)
    log_front = (
        a * log_x
        + b * log_1mx
        - math.log(a)
        - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    )
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return log_front + math.log(h)
