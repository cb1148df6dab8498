"""Comparisons that stop when decided: B against A, timed call by call in turn, in rounds, looked at a few planned times.

Each round times A and B in ABBA order (``quads`` times A, B, B, A), so neither side always runs
first or after itself, and keeps each side's median: a round's statistic is
``d = ln(median B) - ln(median A)``, the log of B's time as a multiple of A's. The rounds' mean
``d`` gets a Student-t interval, looked at after ``LOOKS`` rounds. The false-claim rate over every
look together stays within ``1 - confidence``: the looks share it by a Pocock-type spending
rule (Lan & DeMets 1983), each look's interval at its share, so a verdict may be claimed at
any look without inflating it (a union bound; an interval recomputed after every round would
not be).

A look decides when the interval lies wholly above the band (B is slower by more than the
practical minimum), wholly below it (faster), or wholly inside it (the same, for any practical
purpose). The band is the finding's practical minimum, widened to the difference two identical
sides show in the same run (its mean log ratio) when a calibration side A' (A again: a second
load, the same call) is timed in the same rounds: no difference smaller than that is claimed.
When the two sides run in two processes, each process's own level (where its threads landed, what
the host did to it) is one draw that no number of rounds averages away: ``between_sd``, the sd of
a process's log speed between fresh processes measured in the same run, adds its variance twice
(one draw a side) to the interval's, so a claim holds against the next pair of processes too. At
the cap (``max_rounds``, or ``max_seconds`` once the first look's rounds are in) the last look
spends what is left; a comparison it does not decide is **undecided**, which is no claim at all.

Those two draws also put a floor under the interval's width that no number of rounds lowers. When
that floor alone is wider than the band, "the same" can never be decided, and a look whose interval
from the rounds alone (where more rounds would centre it) lies wholly where the floor keeps any claim
out stops the comparison **futile**: undecided now, as it would be at the cap. Stopping only ever
drops a claim, so it spends none of the false-claim rate.

``decide`` is pure and replays exactly from the rounds' medians kept in the measurements, so a
judge decides what the measuring decided.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from tfaudit.api import Measure, PracticalMinimum

LOOKS = (5, 10, 20, 40, 80, 160)  # rounds at which the interval is looked at; planned, whatever the data
ROUND_MS = 20.0  # a round's length: long enough that its medians are stable, short enough for many rounds
MAX_QUADS = 50  # ABBA quads in a round (a 0.05 ms call)
OUTCOMES = ("slower", "faster", "same", "undecided")


@dataclass(frozen=True)
class Decision:
    """What one comparison decided, and on what evidence."""

    outcome: str  # one of OUTCOMES, B against A
    ratio: Measure  # B's time as a multiple of A's, with the deciding look's interval
    rounds: int
    looks: int
    confidence: float  # the level the whole sequence of looks holds
    band: float  # the band's half-width as a ratio - 1 (0.10: ±10 %), after any widening
    minimum: float  # the practical minimum alone, the same way
    bias: float | None  # how far A' (A again) read from A, as a ratio - 1, when a calibration side ran
    support: float  # 1 - p of "the difference is within the practical minimum" at the deciding look (for slower/faster)
    method: str = ""
    between_sd: float = 0.0  # a process's log-speed sd between processes, when the sides ran in two of them
    futile: bool = False  # undecided, and no later look could decide it (see the module's docstring)

    @property
    def decided(self) -> bool:
        return self.outcome != "undecided"

    @property
    def settled(self) -> bool:
        """Nothing more to time for: decided, or futile."""
        return self.decided or self.futile

    def describe(self, b: str, a: str) -> str:
        """One sentence for a report: "``b`` takes 0.15× [0.14–0.16] the time of ``a``: faster past the ±10 % band (5 rounds, 99 %)"."""
        where = {"slower": "slower past", "faster": "faster past", "same": "the same within", "undecided": "undecided against"}[self.outcome]
        ratio = self.ratio
        widened = f", widened from ±{self.minimum:.0%} by the calibration" if self.band > self.minimum else ""
        processes = f"; two processes, each ±{100 * self.between_sd:.1f} % between processes" if self.between_sd else ""
        futile = "; stopped: the spread between processes alone keeps any look from deciding" if self.futile else ""
        return (f"{b} takes {ratio.value:.3f}× [{ratio.low:.3f}–{ratio.high:.3f}] the time of {a}: {where} the ±{self.band:.0%} "
                f"band{widened} ({self.rounds} rounds, {self.confidence:.1%} confidence over {self.looks} look{'s' * (self.looks != 1)}"
                f"{processes}{futile})")

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome, "ratio": [self.ratio.value, self.ratio.low, self.ratio.high], "rounds": self.rounds,
            "looks": self.looks, "confidence": self.confidence, "band": self.band, "minimum": self.minimum, "bias": self.bias,
            "support": self.support, "method": self.method, **({"between_sd": self.between_sd} if self.between_sd else {}),
            **({"futile": True} if self.futile else {}),
        }


def spent(k: int, looks: int, alpha: float) -> float:
    """The false-claim rate look ``k`` (1-based) of ``looks`` may spend: Pocock-type α·ln(1 + (e - 1)·t)."""
    def cumulative(t: float) -> float:
        return alpha * math.log(1 + (math.e - 1) * min(t, 1.0))

    return cumulative(k / looks) - cumulative((k - 1) / looks)


def t_within(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with an integer ``df`` (Abramowitz & Stegun 26.7.3-4): exact, no SciPy import."""
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:
        term = total = 1.0
        for k in range(2, df - 1, 2):
            term *= c2 * (k - 1) / k
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    term = total = math.cos(theta)
    for k in range(3, df - 1, 2):
        term *= c2 * (k - 1) / k
        total += term
    return 2 / math.pi * (theta + s * total)


@functools.lru_cache(maxsize=4096)
def t_quantile(alpha: float, df: int) -> float:
    """The t with P(|T| > t) = ``alpha`` (a two-sided interval's multiplier), by bisection."""
    low, high = 0.0, 1.0
    while t_within(high, df) < 1 - alpha:
        low, high = high, high * 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if t_within(middle, df) < 1 - alpha else (low, middle)
    return high


def _interval(d: np.ndarray, alpha: float, between_sd: float = 0.0) -> tuple[float, float, float, float]:
    """(mean, low, high, standard error) of the rounds' log ratios at level 1 - alpha; ``between_sd`` adds two processes' draws."""
    n = len(d)
    mean = float(np.mean(d))
    se = math.sqrt(float(np.var(d, ddof=1)) / n + 2 * between_sd ** 2) if n > 1 else math.inf
    half = t_quantile(alpha, n - 1) * se if n > 1 else math.inf
    return mean, mean - half, mean + half, se


def _futile(d: np.ndarray, alpha: float, alpha_left: float, band: float, between_sd: float) -> bool:
    """Whether no later look can decide: the floor two processes' draws put under every later interval (at the most any
    later look may spend, ``alpha_left``) is at least the band, and the rounds' own interval at the whole level ``alpha``
    (where more rounds would centre the estimate) lies wholly inside the band widened by that floor."""
    if not between_sd or len(d) < 2 or len(d) not in LOOKS[:-1] or alpha_left <= 0:  # at the cap: undecided, not futile
        return False
    floor = t_quantile(alpha_left, LOOKS[-1] - 1) * math.sqrt(2) * between_sd
    if floor < band:
        return False
    _, low, high, _ = _interval(d, alpha)
    return -band - floor < low and high < band + floor


def _support(mean: float, se: float, band: float, df: int) -> float:
    """1 - p of "|difference| <= band" (one-sided, on the side the mean lies): the evidence for a claim past the band."""
    if se == 0 or not math.isfinite(se):
        return 1.0 if se == 0 and abs(mean) > band else 0.0
    t = (abs(mean) - band) / se
    p = (1 - t_within(t, df)) / 2 if t > 0 else 1 - (1 - t_within(-t, df)) / 2
    return 1 - p


def decide(a_ms: Sequence[float], b_ms: Sequence[float], minimum: PracticalMinimum, confidence: float = 0.95,
           calibration_ms: Sequence[float] | None = None, between_sd: float = 0.0) -> Decision:
    """The verdict the looks reach over these rounds' medians (A, B, and A' when calibrated), as the measuring reached it;
    ``between_sd`` when A and B ran in two processes (see the module's docstring).

    The planned looks the rounds reached are taken in order until one decides; a round count that
    is not a planned look is where the cap stopped the measuring, and its look spends what is left.
    """
    a, b = np.asarray(a_ms, float), np.asarray(b_ms, float)
    n_total = min(len(a), len(b))
    alpha = 1 - confidence
    minimum_band = math.log1p(minimum.relative)
    looks = [n for n in LOOKS if n <= n_total]
    if n_total >= 2 and n_total not in LOOKS:
        looks.append(n_total)
    method = (f"t interval over per-round log ratios (ABBA order), {len(LOOKS)} planned looks sharing "
              f"{100 * alpha:.3g}% by a Pocock-type spending rule")
    spent_so_far = 0.0
    last = None
    for k, n in enumerate(looks, start=1):
        share = spent(k, len(LOOKS), alpha) if n in LOOKS else alpha - spent_so_far
        spent_so_far += share
        d = np.log(b[:n]) - np.log(a[:n])
        mean, low, high, se = _interval(d, share, between_sd)
        minimum_band = minimum.band(float(np.median(a[:n])))  # the rounds this look has, as the measuring saw them
        band, bias = minimum_band, None
        if calibration_ms is not None and len(calibration_ms) >= n:
            bias = abs(float(np.mean(np.log(np.asarray(calibration_ms[:n], float)) - np.log(a[:n]))))
            band = max(band, bias)
        if low > band:
            outcome = "slower"
        elif high < -band:
            outcome = "faster"
        elif -band <= low and high <= band:
            outcome = "same"
        else:
            outcome = "undecided"
        last = (outcome, mean, low, high, se, n, k, band, bias)
        if outcome != "undecided":
            break
    futile = last is not None and last[0] == "undecided" and _futile(
        np.log(b[:last[5]]) - np.log(a[:last[5]]), alpha, alpha - spent_so_far, last[7], between_sd)
    if last is None:  # fewer than two rounds: no interval at all
        ratio = float(np.exp(np.mean(np.log(b[:n_total]) - np.log(a[:n_total])))) if n_total else math.nan
        return Decision("undecided", Measure(ratio, 0.0, math.inf), n_total, 0, confidence, math.expm1(minimum_band),
                        math.expm1(minimum_band), None, 0.0, method, between_sd)
    outcome, mean, low, high, se, n, k, band, bias = last
    support = _support(mean, se, band, n - 1) if outcome in ("slower", "faster") else 0.0
    return Decision(outcome, Measure(math.exp(mean), math.exp(low), math.exp(high)), n, k, confidence, math.expm1(band),
                    math.expm1(minimum_band), None if bias is None else math.expm1(bias), support, method, between_sd, futile)


@dataclass
class Rounds:
    """Per-round medians of each side (and every call's time, for charts and percentiles)."""

    a_ms: list[float] = field(default_factory=list)
    b_ms: list[float] = field(default_factory=list)
    calibration_ms: list[float] | None = None
    quads: int = 1
    between_sd: float = 0.0
    calls_a: list[float] = field(default_factory=list)
    calls_b: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The medians unrounded: ``decide`` replays them to the measuring's own decision."""
        data: dict[str, Any] = {"a_ms": self.a_ms, "b_ms": self.b_ms, "quads": self.quads}
        if self.calibration_ms is not None:
            data["calibration_ms"] = self.calibration_ms
        if self.between_sd:
            data["between_sd"] = self.between_sd
        return data


def rounds_of_calls(a_ms: Sequence[float], b_ms: Sequence[float], per_round: int = 5) -> dict[str, Any]:
    """Rounds (``Rounds.to_json()``) made of calls timed one by one in turn, ``per_round`` pairs a round: how a record
    from before the rounds is judged by ``decide``."""
    n = min(len(a_ms), len(b_ms)) // per_round
    a = [float(np.median(a_ms[i * per_round:(i + 1) * per_round])) for i in range(n)]
    b = [float(np.median(b_ms[i * per_round:(i + 1) * per_round])) for i in range(n)]
    return {"a_ms": a, "b_ms": b, "quads": 0}


def _timed(call: Callable[[], object], self_timed: bool = False) -> float:
    start = time.perf_counter()
    answer = call()
    return float(answer) if self_timed else (time.perf_counter() - start) * 1000.0  # type: ignore[arg-type]


def compare_in_turn(a: Callable[[], object], b: Callable[[], object], minimum: PracticalMinimum | Sequence[PracticalMinimum], *,
                    warmup: int, max_seconds: float, confidence: float = 0.95, calibration: Callable[[], object] | None = None,
                    max_rounds: int = LOOKS[-1], self_timed: bool = False, between_sd: float = 0.0) -> tuple[Decision, Rounds]:
    """Time ``b`` against ``a`` (and ``calibration``, A again, beside them) in ABBA rounds until a planned look decides or the cap.

    ``self_timed``: each side returns its own time in ms (work in another process, timed there, without the pipe).
    ``between_sd``: the sides run in two processes; see ``decide``.

    Several minimums (a finding's, and the one its severity turns on) keep the rounds going until
    each is decided (or futile); each one's verdict is the first look that decided it (``decide`` replays it).
    A severity matters only for a claim: once the first minimum settles without one (the same, or futile), the rounds stop.
    The decision returned is the first minimum's.
    """
    minimums = [minimum] if isinstance(minimum, PracticalMinimum) else list(minimum)
    sides = [a, b] + ([calibration] if calibration is not None else [])
    for _ in range(max(warmup, 1)):
        for call in sides:
            call()
    per_call = max(min(_timed(call, self_timed) for _ in range(3)) for call in sides)
    quads = max(1, min(MAX_QUADS, math.ceil(ROUND_MS / (4 * max(per_call, 1e-3)))))
    rounds = Rounds(calibration_ms=[] if calibration is not None else None, quads=quads, between_sd=between_sd)
    deadline = time.perf_counter() + max_seconds
    while True:
        times: list[list[float]] = [[] for _ in sides]
        for _ in range(quads):
            order = (0, 1, 1, 0) if calibration is None else (0, 1, 2, 2, 1, 0)
            for side in order:
                times[side].append(_timed(sides[side], self_timed))
        rounds.a_ms.append(float(np.median(times[0])))
        rounds.b_ms.append(float(np.median(times[1])))
        rounds.calls_a.extend(times[0])
        rounds.calls_b.extend(times[1])
        if rounds.calibration_ms is not None:
            rounds.calibration_ms.append(float(np.median(times[2])))
        n = len(rounds.a_ms)
        at_cap = n >= max_rounds or (time.perf_counter() > deadline and n >= LOOKS[0])  # a slow model still gets its first look
        if n in LOOKS or at_cap:
            decisions = [decide(rounds.a_ms, rounds.b_ms, m, confidence, rounds.calibration_ms, between_sd) for m in minimums]
            claimed = decisions[0].outcome in ("slower", "faster")
            if at_cap or all(d.settled for d in decisions) or (decisions[0].settled and not claimed):
                return decisions[0], rounds
