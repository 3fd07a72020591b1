"""A churn world in simulated time, deterministic by seed (the churn example's data).

Each simulated day brings new customers to score (:func:`daily_customers`).
Whether a customer churns follows a known *truth model*
(:func:`churn_probability`), so tests and the demo can check what the
monitoring finds against what really happened:

- churn rises with monthly charges, support calls and a falling usage trend,
  falls with tenure and longer contracts, and is higher for electronic checks;
- from ``competitor_day`` (day 0 by default, when production starts) a
  competitor courts month-to-month customers paying more than 80 a month, and
  their churn rises: the customer history (:func:`customer_history`, days
  before 0) does not show this, so a model trained on it is a little stale
  from the first production day, and retraining on recent labelled
  feedback can do better;
- from ``price_change_day`` every monthly charge is ``price_change`` higher
  (15% by default): real drift of ``monthly_charges`` that also pushes more
  customers into the segment the competitor courts;
- the retention email lowers churn for month-to-month customers, most for
  those paying 70 or more, a little for one-year contracts and not at all for
  two-year contracts (:func:`email_effect` is the true per-customer effect);
- an outcome (churned or not) becomes known ``delay`` days after the
  customer was scored, drawn per customer between the two bounds
  (:func:`outcomes_for`).

Days are whole numbers: day 0 is :data:`START` (a Monday, so weekly windows
line up with simulated weeks); :func:`date_of` and :func:`day_of` convert.
Everything is vectorised numpy/pandas: a day of 10,000 customers takes
milliseconds.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENTS = ("card", "bank-transfer", "electronic-check", "mailed-check")
FEATURES = [
    "tenure",
    "monthly_charges",
    "contract",
    "payment_method",
    "support_calls",
    "usage_trend",
]
START = date(2026, 3, 2)  # day 0
PRICE_CHANGE = 0.15
COMPETITOR_DAY = 0
#: days from scoring until the outcome is known (inclusive bounds)
DELAY = (7, 14)
ARMS = ("email", "control")
# the churn logit's shifts (see churn_probability)
_CONTRACT_LOGIT = {"month-to-month": 1.1, "one-year": 0.0, "two-year": -1.0}
_COMPETITOR_LOGIT = 1.4
_EMAIL_LOGIT = {"month-to-month": -0.35, "one-year": -0.15, "two-year": 0.0}
_EMAIL_HIGH_CHARGES_LOGIT = -0.9  # more, for month-to-month customers paying >= 70
# independent random streams per (seed, day, purpose)
_FEATURES_STREAM, _OUTCOME_STREAM, _HISTORY_STREAM = 0, 1, 2


def date_of(day: int) -> date:
    """The calendar date of simulated ``day`` (day 0 is :data:`START`)."""
    return START + timedelta(days=int(day))


def day_of(when: str | date) -> int:
    """The simulated day of a date (``"2026-03-16"`` → 14)."""
    d = date.fromisoformat(when) if isinstance(when, str) else when
    return (d - START).days


def _rng(seed: int, day: int, stream: int) -> np.random.Generator:
    # SeedSequence entropy must be non-negative: fold negative (history) days
    return np.random.default_rng([int(seed), stream, int(day) + 1_000_000])


def _draw(
    rng: np.random.Generator,
    n: int,
    days: np.ndarray,
    price_change_day: int | None,
    price_change: float,
) -> dict[str, Any]:
    tenure = rng.gamma(2.0, 12.0, n).round().clip(0, 72).astype(int)
    contract = rng.choice(CONTRACTS, n, p=[0.55, 0.25, 0.20])
    payment = rng.choice(PAYMENTS, n, p=[0.3, 0.25, 0.3, 0.15])
    base = rng.normal(65.0, 20.0, n).clip(18.0, 120.0)
    raised = days >= price_change_day if price_change_day is not None else np.zeros(n, dtype=bool)
    charges = (base * np.where(raised, 1.0 + price_change, 1.0)).round(2)
    calls = rng.poisson(1.2, n).astype(int)
    usage = rng.normal(0.0, 1.0, n).round(3)
    return {
        "tenure": tenure,
        "monthly_charges": charges,
        "contract": pd.Categorical(contract, categories=CONTRACTS),
        "payment_method": pd.Categorical(payment, categories=PAYMENTS),
        "support_calls": calls,
        "usage_trend": usage,
    }


def daily_customers(
    day: int,
    n: int,
    seed: int = 0,
    price_change_day: int | None = None,
    price_change: float = PRICE_CHANGE,
) -> pd.DataFrame:
    """The customers to score on simulated ``day``.

    Parameters
    ----------
    day : int
        Simulated day (0 = :data:`START`; see :func:`day_of`).
    n : int
        How many customers.
    seed : int
        The same ``(seed, day, n)`` always gives the same customers; every
        day draws from a stream of its own.
    price_change_day : int, optional
        From this day on, monthly charges are ``price_change`` higher.
    price_change : float
        The relative rise, e.g. 0.15 for +15%.

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` (``"d{day}-{i}"``, unique across days), ``day`` and the
        :data:`FEATURES`.
    """
    if n < 0:
        raise ValueError("n must be zero or more customers")
    rng = _rng(seed, day, _FEATURES_STREAM)
    days = np.full(n, int(day))
    cols = _draw(rng, n, days, price_change_day, price_change)
    ids = [f"d{int(day)}-{i}" for i in range(n)]
    return pd.DataFrame({"customer_id": ids, "day": days, **cols})


def churn_logit(
    customers: pd.DataFrame,
    arm: Any = None,
    *,
    competitor_day: int | None = COMPETITOR_DAY,
) -> np.ndarray:
    """The true log-odds of churn of each customer (see :func:`churn_probability`)."""
    c = customers
    contract = np.asarray(c["contract"], dtype=object)
    m2m = contract == "month-to-month"
    charges = np.asarray(c["monthly_charges"], dtype=float)
    logit = (
        -1.3
        - 0.045 * np.asarray(c["tenure"], dtype=float)
        + 0.025 * (charges - 65.0)
        + 0.35 * np.asarray(c["support_calls"], dtype=float)
        - 0.6 * np.asarray(c["usage_trend"], dtype=float)
        + np.select([contract == k for k in _CONTRACT_LOGIT], list(_CONTRACT_LOGIT.values()), 0.0)
        + np.where(np.asarray(c["payment_method"], dtype=object) == "electronic-check", 0.5, 0.0)
    )
    if competitor_day is not None:
        courted = m2m & (charges > 80.0) & (np.asarray(c["day"]) >= competitor_day)
        logit = logit + np.where(courted, _COMPETITOR_LOGIT, 0.0)
    if arm is not None:
        emailed = np.asarray(_broadcast(arm, len(c)), dtype=object) == "email"
        shift = np.select(
            [contract == k for k in _EMAIL_LOGIT], list(_EMAIL_LOGIT.values()), 0.0
        ) + np.where(m2m & (charges >= 70.0), _EMAIL_HIGH_CHARGES_LOGIT, 0.0)
        logit = logit + np.where(emailed, shift, 0.0)
    return np.asarray(logit, dtype=float)


def churn_probability(
    customers: pd.DataFrame,
    arm: Any = None,
    *,
    competitor_day: int | None = COMPETITOR_DAY,
) -> np.ndarray:
    """The true probability that each customer churns.

    Parameters
    ----------
    customers : pandas.DataFrame
        From :func:`daily_customers` or :func:`customer_history` (needs the
        features and ``day``).
    arm : str or array-like, optional
        ``"email"`` for customers who got the retention email; anything else
        (``"control"``, None) means no email. One value for all or one each.
    competitor_day : int or None
        From this day the competitor's offer raises the churn of
        month-to-month customers paying more than 80; None: never.

    Returns
    -------
    numpy.ndarray
    """
    return 1.0 / (1.0 + np.exp(-churn_logit(customers, arm, competitor_day=competitor_day)))


def email_effect(
    customers: pd.DataFrame, *, competitor_day: int | None = COMPETITOR_DAY
) -> np.ndarray:
    """The true effect of the email on each customer's churn probability.

    ``P(churn | email) − P(churn | no email)``: negative means the email keeps
    the customer; 0 for two-year contracts.
    """
    return churn_probability(customers, "email", competitor_day=competitor_day) - churn_probability(
        customers, None, competitor_day=competitor_day
    )


def segment(customers: pd.DataFrame) -> np.ndarray:
    """Each customer's segment for the email: ``"month-to-month, charges >= 70"``,
    ``"month-to-month, charges < 70"``, ``"one-year"`` or ``"two-year"``."""
    contract = np.asarray(customers["contract"], dtype=object)
    high = np.asarray(customers["monthly_charges"], dtype=float) >= 70.0
    m2m = contract == "month-to-month"
    return np.where(
        m2m,
        np.where(high, "month-to-month, charges >= 70", "month-to-month, charges < 70"),
        contract,
    ).astype(object)


def _broadcast(value: Any, n: int) -> Any:
    if value is None or isinstance(value, str):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"got {len(values)} arms for {n} customers")
    return values


def outcomes_for(
    customers: pd.DataFrame,
    arms: Any = None,
    seed: int = 0,
    *,
    delay: tuple[int, int] = DELAY,
    competitor_day: int | None = COMPETITOR_DAY,
) -> pd.DataFrame:
    """Whether each customer churned, and the day that becomes known.

    The draw uses one uniform number per customer from a stream of its own
    (by seed and day), whatever the arms: the same customer given the email
    or not churns under common random numbers, so the email's effect is not
    blurred by sampling noise between two calls.

    Parameters
    ----------
    customers : pandas.DataFrame
        From :func:`daily_customers` (one or several days, in their order).
    arms : str or array-like, optional
        What each customer got (``"email"``, ``"control"``, None = not targeted).
    seed : int
        The seed the customers were drawn with.
    delay : (int, int)
        Fewest and most days from scoring until the outcome is known.
    competitor_day : int or None
        See :func:`churn_probability`.

    Returns
    -------
    pandas.DataFrame
        ``customer_id, day, arm, churned`` (0/1), ``p_churn`` (the true
        probability), ``delay`` and ``known_day`` (= day + delay), in the
        order of ``customers``.
    """
    lo, hi = int(delay[0]), int(delay[1])
    if lo < 0 or hi < lo:
        raise ValueError(f"delay {delay!r}: give (fewest, most) days with 0 <= fewest <= most")
    n = len(customers)
    arm = pd.Series(_broadcast(arms, n), dtype=object)
    p = churn_probability(customers, arm.to_numpy(), competitor_day=competitor_day)
    days = np.asarray(customers["day"], dtype=int)
    u = np.empty(n)
    waits = np.empty(n, dtype=int)
    for d in np.unique(days):
        at = np.flatnonzero(days == d)
        rng = _rng(seed, int(d), _OUTCOME_STREAM)
        u[at] = rng.random(len(at))
        waits[at] = rng.integers(lo, hi + 1, len(at))
    return pd.DataFrame(
        {
            "customer_id": np.asarray(customers["customer_id"]),
            "day": days,
            "arm": arm,  # a Series keeps object dtype: None stays None
            "churned": (u < p).astype(int),
            "p_churn": p,
            "delay": waits,
            "known_day": days + waits,
        }
    )


def customer_history(
    n: int = 5000,
    seed: int = 0,
    days: tuple[int, int] = (-120, 0),
    *,
    competitor_day: int | None = COMPETITOR_DAY,
) -> pd.DataFrame:
    """Labelled past customers to train a first model on: nobody got an email.

    Parameters
    ----------
    n : int
        How many customers.
    seed : int
        Random seed.
    days : (int, int)
        The customers' days, from the first to before the second (by default
        the 120 days before production starts, before the competitor's offer).

    Returns
    -------
    pandas.DataFrame
        ``customer_id, day``, the :data:`FEATURES` and ``churned`` (0/1).
    """
    rng = _rng(seed, 0, _HISTORY_STREAM)
    day = np.sort(rng.integers(days[0], days[1], n))
    cols = _draw(rng, n, day, None, 0.0)
    frame = pd.DataFrame({"customer_id": [f"h{int(d)}-{i}" for i, d in enumerate(day)]})
    frame["day"] = day
    for key, value in cols.items():
        frame[key] = value
    p = churn_probability(frame, None, competitor_day=competitor_day)
    frame["churned"] = (rng.random(n) < p).astype(int)
    return frame
