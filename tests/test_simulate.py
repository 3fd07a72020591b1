"""The churn simulator: deterministic, and its effects are the intended ones."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from jupyter_opx import simulate as S


def test_same_seed_same_customers_and_outcomes():
    a = S.daily_customers(3, 500, seed=11, price_change_day=2)
    b = S.daily_customers(3, 500, seed=11, price_change_day=2)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(S.outcomes_for(a, "email", 11), S.outcomes_for(b, "email", 11))
    assert not a.equals(S.daily_customers(3, 500, seed=12, price_change_day=2))
    assert not a.equals(S.daily_customers(4, 500, seed=11, price_change_day=2))
    # a day does not depend on which other days were drawn, nor on the volume asked before
    assert S.daily_customers(3, 100, seed=11)["customer_id"].tolist() == [
        f"d3-{i}" for i in range(100)
    ]
    pd.testing.assert_frame_equal(S.customer_history(300, seed=5), S.customer_history(300, seed=5))


def test_columns_and_types():
    day = S.daily_customers(0, 200, seed=1)
    assert list(day.columns) == ["customer_id", "day", *S.FEATURES]
    assert day["customer_id"].is_unique
    assert list(day["contract"].cat.categories) == list(S.CONTRACTS)
    assert day["tenure"].between(0, 72).all() and (day["support_calls"] >= 0).all()
    history = S.customer_history(400, seed=1)
    assert (history["day"] < 0).all() and set(history["churned"]) == {0, 1}
    assert len(S.daily_customers(0, 0)) == 0
    with pytest.raises(ValueError):
        S.daily_customers(0, -1)


def test_dates_and_days():
    assert S.date_of(0) == S.START == date(2026, 3, 2) and S.START.weekday() == 0
    assert S.day_of("2026-03-16") == 14 and S.day_of(S.date_of(-5)) == -5


def test_price_change_raises_charges_from_its_day_only():
    before = S.daily_customers(4, 3000, seed=2, price_change_day=5)
    unchanged = S.daily_customers(4, 3000, seed=2, price_change_day=None)
    pd.testing.assert_frame_equal(before, unchanged)
    on = S.daily_customers(5, 3000, seed=2, price_change_day=5)
    base = S.daily_customers(5, 3000, seed=2)
    np.testing.assert_allclose(
        on["monthly_charges"], (base["monthly_charges"] * 1.15).round(2), atol=0.011
    )
    # everything else about the customers stays the same
    pd.testing.assert_frame_equal(
        on.drop(columns="monthly_charges"), base.drop(columns="monthly_charges")
    )
    later = S.daily_customers(9, 3000, seed=2, price_change_day=5, price_change=0.3)
    assert later["monthly_charges"].mean() > 1.25 * base["monthly_charges"].mean()


def test_email_lowers_churn_in_the_responsive_segment_only():
    people = S.daily_customers(1, 20_000, seed=3)
    effect = S.email_effect(people)
    seg = pd.Series(effect).groupby(S.segment(people)).mean()
    assert seg["month-to-month, charges >= 70"] < -0.15
    assert seg["month-to-month, charges >= 70"] < seg["month-to-month, charges < 70"] < 0
    assert seg["two-year"] == 0.0
    assert -0.05 < seg["one-year"] < 0
    assert (effect <= 0).all()
    # the same in realised outcomes, drawn with common random numbers
    emailed = S.outcomes_for(people, "email", seed=3)
    control = S.outcomes_for(people, "control", seed=3)
    assert (emailed["churned"] <= control["churned"]).all()
    two_year = S.segment(people) == "two-year"
    assert (emailed["churned"][two_year] == control["churned"][two_year]).all()
    responsive = S.segment(people) == "month-to-month, charges >= 70"
    drop = control["churned"][responsive].mean() - emailed["churned"][responsive].mean()
    assert drop == pytest.approx(-seg["month-to-month, charges >= 70"], abs=0.03)


def test_churn_drivers_and_the_competitor():
    people = S.daily_customers(2, 20_000, seed=4)
    p = S.churn_probability(people)
    contract = people["contract"].astype(str)
    assert p[contract == "month-to-month"].mean() > p[contract == "two-year"].mean() + 0.15
    assert np.corrcoef(people["tenure"], p)[0, 1] < -0.2
    courted = (contract == "month-to-month") & (people["monthly_charges"] > 80)
    without = S.churn_probability(people, competitor_day=None)
    assert (p[courted] > without[courted]).all() and (p[~courted] == without[~courted]).all()
    # the history predates the competitor: its churn follows the old world
    history = S.customer_history(500, seed=4)
    np.testing.assert_array_equal(
        S.churn_probability(history), S.churn_probability(history, competitor_day=None)
    )


def test_outcomes_arrive_with_a_delay():
    people = pd.concat([S.daily_customers(d, 1000, seed=5) for d in (0, 1)], ignore_index=True)
    arms = np.where(np.arange(len(people)) % 2 == 0, "email", None)
    out = S.outcomes_for(people, arms, seed=5)
    assert out["delay"].between(*S.DELAY).all()
    assert set(out["delay"]) == set(range(S.DELAY[0], S.DELAY[1] + 1))
    assert (out["known_day"] == out["day"] + out["delay"]).all()
    assert out["customer_id"].tolist() == people["customer_id"].tolist()
    assert out["arm"].tolist()[:2] == ["email", None]
    short = S.outcomes_for(people, arms, seed=5, delay=(1, 2))
    assert short["delay"].between(1, 2).all()
    # the churn draw does not depend on the delay asked for
    assert short["churned"].tolist() == out["churned"].tolist()
    # realised churn follows the true probability
    assert out["churned"].mean() == pytest.approx(out["p_churn"].mean(), abs=0.02)
    with pytest.raises(ValueError):
        S.outcomes_for(people, None, delay=(3, 2))
    with pytest.raises(ValueError):
        S.outcomes_for(people, ["email"])
