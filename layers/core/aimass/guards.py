"""The guards of a rollout: pure judgements of the version rolled out against the stable version on
the live figures counted since the rollout started (aimass.serving.live), each `waiting` until its
minimum sample is reached, then `passed` or `tripped`. docs/rollout.md states each with its numbers.

- error_rate: the canary's error rate above the stable's plus `max_error_rate_increase`.
- latency_p99: the canary's p99 above `max_p99_ratio` times the stable's. Both p99s are the upper
  bounds of the histogram buckets they fall in (1, 2, 5, 10, 20, 50 ms ...), so the ratio compares
  buckets: with the default 2, one bucket above passes where the bounds double (20 ms against 10)
  and trips where they are 2.5x apart (50 against 20); two buckets above always trips, a change
  within one bucket never does.
- agreement: the shadow's share of compared answers that agreed with the stable's, below
  `min_agreement`.
- accuracy: live accuracy from feedback labels, significantly below the stable's at
  `accuracy_confidence`: a classifier by a one-sided two-proportion z-test (pooled), a regressor by
  a one-sided Welch t-test on absolute errors.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from aimass.contracts.registry import GuardResult, Guards, LiveFigures
from aimass.serving import live as live_counts

# The guards that must have passed (not be waiting) for a rollout to move to its next step: a step
# widens the canary only on figures that show it serving as well as the stable. Accuracy and
# agreement need labels and shadowed requests that a model may never get: they hold a step back
# only by tripping.
TO_ADVANCE = ("error_rate", "latency_p99")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def error_rate(stable: LiveFigures, canary: LiveFigures, guards: Guards) -> GuardResult:
    figures: dict[str, float | int | None] = {
        "stable_requests": stable.requests,
        "canary_requests": canary.requests,
        "stable_error_rate": stable.error_rate,
        "canary_error_rate": canary.error_rate,
        "max_increase": guards.max_error_rate_increase,
        "min_requests": guards.min_requests,
    }
    short = _short(stable, canary, guards)
    if short or stable.error_rate is None or canary.error_rate is None:
        return GuardResult(guard="error_rate", status="waiting", detail=short, figures=figures)
    limit = stable.error_rate + guards.max_error_rate_increase
    tripped = canary.error_rate > limit
    detail = (
        f"canary error rate {_pct(canary.error_rate)} over {canary.requests} requests "
        f"{'>' if tripped else '<='} stable {_pct(stable.error_rate)} over {stable.requests} + "
        f"{_pct(guards.max_error_rate_increase)} = {_pct(limit)}"
    )
    return GuardResult(
        guard="error_rate", status="tripped" if tripped else "passed", detail=detail, figures=figures
    )


def latency_p99(stable: LiveFigures, canary: LiveFigures, guards: Guards) -> GuardResult:
    figures: dict[str, float | int | None] = {
        "stable_requests": stable.requests,
        "canary_requests": canary.requests,
        "stable_p99_ms": stable.latency_p99_ms,
        "canary_p99_ms": canary.latency_p99_ms,
        "max_p99_ratio": guards.max_p99_ratio,
        "min_requests": guards.min_requests,
    }
    short = _short(stable, canary, guards)
    if short or stable.latency_p99_ms is None or canary.latency_p99_ms is None:
        return GuardResult(guard="latency_p99", status="waiting", detail=short, figures=figures)
    limit = guards.max_p99_ratio * stable.latency_p99_ms
    tripped = canary.latency_p99_ms > limit
    detail = (
        f"canary p99 <= {canary.latency_p99_ms:g} ms {'>' if tripped else '<='} {guards.max_p99_ratio:g} x "
        f"stable p99 <= {stable.latency_p99_ms:g} ms = {limit:g} ms (bucket upper bounds)"
    )
    return GuardResult(
        guard="latency_p99", status="tripped" if tripped else "passed", detail=detail, figures=figures
    )


def _short(stable: LiveFigures, canary: LiveFigures, guards: Guards) -> str:
    """Why errors and latency cannot be judged yet ('' when they can)."""
    short = [
        f"{role} {figures.requests}/{guards.min_requests} requests"
        for role, figures in (("canary", canary), ("stable", stable))
        if figures.requests < guards.min_requests
    ]
    return ("too few yet: " + ", ".join(short)) if short else ""


def agreement(shadow: LiveFigures | None, guards: Guards) -> GuardResult:
    compared = shadow.compared if shadow is not None else 0
    share = shadow.agreement if shadow is not None else None
    figures: dict[str, float | int | None] = {
        "compared": compared,
        "agreement": share,
        "min_agreement": guards.min_agreement,
        "min_compared": guards.min_compared,
    }
    if shadow is None:
        return GuardResult(guard="agreement", status="waiting", detail="no shadow traffic", figures=figures)
    if compared < guards.min_compared or share is None:
        detail = f"too few yet: {compared}/{guards.min_compared} shadowed instances compared"
        return GuardResult(guard="agreement", status="waiting", detail=detail, figures=figures)
    tripped = share < guards.min_agreement
    detail = (
        f"shadow agreed with stable on {_pct(share)} of {compared} instances "
        f"{'<' if tripped else '>='} {_pct(guards.min_agreement)}"
    )
    return GuardResult(
        guard="agreement", status="tripped" if tripped else "passed", detail=detail, figures=figures
    )


def z_two_proportions(correct_a: int, n_a: int, correct_b: int, n_b: int) -> float:
    """The pooled two-proportion z statistic of a's share minus b's (0 when both are all right or
    all wrong: nothing tells them apart)."""
    pooled = (correct_a + correct_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return 0.0 if se == 0 else (correct_a / n_a - correct_b / n_b) / se


def welch(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int) -> tuple[float, float]:
    """Welch's t statistic of a's mean minus b's, and its Welch-Satterthwaite degrees of freedom
    (t 0 and df inf when neither varies)."""
    va, vb = sd_a * sd_a / n_a, sd_b * sd_b / n_b
    if va + vb == 0:
        return (0.0 if mean_a == mean_b else math.copysign(math.inf, mean_a - mean_b)), math.inf
    df = (va + vb) ** 2 / (va * va / (n_a - 1) + vb * vb / (n_b - 1))
    return (mean_a - mean_b) / math.sqrt(va + vb), df


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile by the Cornish-Fisher expansion around the normal's (Abramowitz & Stegun
    26.7.5): within 0.1 % of the exact value from 10 degrees of freedom on, where the accuracy guard
    judges (its minimum sample is the degrees of freedom's floor); the standard library has no t."""
    z = NormalDist().inv_cdf(p)
    if math.isinf(df):
        return z
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def accuracy(stable: LiveFigures, canary: LiveFigures, guards: Guards) -> GuardResult:
    figures: dict[str, float | int | None] = {
        "stable_labelled": stable.labelled,
        "canary_labelled": canary.labelled,
        "stable_accuracy": stable.accuracy,
        "canary_accuracy": canary.accuracy,
        "stable_mae": stable.mae,
        "canary_mae": canary.mae,
        "confidence": guards.accuracy_confidence,
        "min_labelled": guards.min_labelled,
    }
    short = [
        f"{role} {f.labelled}/{guards.min_labelled} labelled"
        for role, f in (("canary", canary), ("stable", stable))
        if f.labelled < guards.min_labelled
    ]
    if short:
        return GuardResult(
            guard="accuracy", status="waiting", detail="too few yet: " + ", ".join(short), figures=figures
        )
    confidence = guards.accuracy_confidence
    if canary.accuracy is not None and stable.accuracy is not None:
        correct_c = round(canary.accuracy * canary.labelled)
        correct_s = round(stable.accuracy * stable.labelled)
        z = z_two_proportions(correct_c, canary.labelled, correct_s, stable.labelled)
        critical = -NormalDist().inv_cdf(confidence)
        tripped = z < critical
        figures |= {"z": z, "critical": critical}
        detail = (
            f"canary accuracy {_pct(canary.accuracy)} of {canary.labelled} vs stable "
            f"{_pct(stable.accuracy)} of {stable.labelled}: z = {z:.3f} "
            f"{'<' if tripped else '>='} {critical:.3f} (one-sided, {confidence * 100:g} %)"
        )
    elif None not in (canary.mae, stable.mae, canary.abs_error_sd, stable.abs_error_sd):
        assert canary.mae is not None and stable.mae is not None
        assert canary.abs_error_sd is not None and stable.abs_error_sd is not None
        t, df = welch(
            canary.mae, canary.abs_error_sd, canary.labelled, stable.mae, stable.abs_error_sd, stable.labelled
        )
        critical = t_quantile(confidence, df)
        tripped = t > critical
        figures |= {"t": t, "df": df, "critical": critical}
        detail = (
            f"canary MAE {canary.mae:.4g} of {canary.labelled} vs stable {stable.mae:.4g} of "
            f"{stable.labelled}: Welch t = {t:.3f} {'>' if tripped else '<='} {critical:.3f} "
            f"(df {df:.1f}, one-sided, {confidence * 100:g} %)"
        )
    else:
        return GuardResult(
            guard="accuracy", status="waiting", detail="labels without a score to compare", figures=figures
        )
    return GuardResult(
        guard="accuracy", status="tripped" if tripped else "passed", detail=detail, figures=figures
    )


def judge(live: dict[str, LiveFigures], guards: Guards) -> list[GuardResult]:
    """Every guard on a rollout's live figures (`stable`, `canary`, and `shadow` while one runs)."""
    empty = LiveFigures.model_validate(live_counts.summary({}))
    stable, canary = live.get("stable", empty), live.get("canary", empty)
    return [
        error_rate(stable, canary, guards),
        latency_p99(stable, canary, guards),
        agreement(live.get("shadow"), guards),
        accuracy(stable, canary, guards),
    ]


def may_advance(judgement: list[GuardResult], canary_percent: float) -> bool:
    """Whether the guards let a rollout take its next step: none tripped, and errors and latency
    judged, unless the canary takes every request already (the stable gets none to reach its sample
    with: the canary's own sample is enough then)."""
    for result in judgement:
        if result.status == "tripped":
            return False
        if result.guard in TO_ADVANCE and result.status == "waiting":
            if canary_percent < 100:
                return False
            canary_requests = result.figures.get("canary_requests") or 0
            if canary_requests < (result.figures.get("min_requests") or 0):
                return False
    return True


def tripped(judgement: list[GuardResult]) -> GuardResult | None:
    return next((result for result in judgement if result.status == "tripped"), None)
