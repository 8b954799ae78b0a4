"""foundation.features lays its panel out without stacking: the same frame, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runner.stages.foundation import TRADING_DAYS, compute_features


def _stacked(prices: pd.DataFrame) -> pd.DataFrame:
    """The panel by its definition: each wide feature frame stacked, then joined."""
    logp = np.log(prices)
    ret = logp.diff()
    wide = {
        "ret_1": ret, "rev_5": logp.diff(5), "mom_21": logp.diff(21), "mom_63": logp.diff(63),
        "mom_252": logp.shift(21) - logp.shift(TRADING_DAYS),
        "vol_21": ret.rolling(21).std() * np.sqrt(TRADING_DAYS),
        "vol_63": ret.rolling(63).std() * np.sqrt(TRADING_DAYS),
        "dd_252": logp - logp.rolling(TRADING_DAYS, min_periods=1).max(),
    }
    panel = pd.DataFrame({name: frame.stack() for name, frame in wide.items()})
    panel.index = panel.index.set_names(["date", "ticker"])
    return panel.astype("float64")


@pytest.mark.parametrize("gaps", [False, True])
def test_the_panel_is_the_stacked_definition_exactly(gaps: bool) -> None:
    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2020-01-01", periods=400, name="date")
    tickers = ["ZZ", "AAPL", "MSFT", "B", "A1"]  # not sorted: the column order stays
    prices = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (400, 5)), axis=0)),
                          index=dates, columns=tickers)
    if gaps:
        prices.iloc[30:35, 1] = np.nan
        prices.iloc[300, 4] = np.nan
    panel = compute_features(prices)
    expected = _stacked(prices)
    pd.testing.assert_frame_equal(panel, expected, check_exact=True)
    assert panel.index.equals(expected.index)
    assert list(panel.index.get_level_values("ticker")[:5]) == tickers
