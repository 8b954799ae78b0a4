"""A benchmark universe: the bundled prices extended to a few hundred synthetic tickers.

The bundled 20 stocks make each forecasting branch of ``alpha.parallel`` about a
second: too little work to show what parallel branches give. This module adds
synthetic tickers that behave like the bundled ones, generated deterministically
(same seed, same prices, on every machine), so the shipped pipelines can run on
a universe a user would recognise as real work::

    python -m runner.stages.universe --tickers 300 -o prices.parquet
    runner run alpha.parallel --data prices.parquet

How the synthetic tickers are made (a factor model calibrated on the bundled
data, on the bundled trading days):

- the market factor is the bundled stocks' equal-weight daily log return, and
  each sector's factor is its stocks' mean residual to the market: the real
  2013-2022 history (its calm years, the 2020 crash), shared by every ticker of
  the sector, so tickers are correlated as stocks are;
- each synthetic ticker copies the market beta, sector loading, drift and
  idiosyncratic volatility of a bundled stock of its sector, each jittered
  (beta and volatility by a log-normal factor), and adds idiosyncratic noise
  from a Student-t with 5 degrees of freedom (fat tails) scaled to that volatility;
- prices are ``start * exp(cumulative log return)``, starting between 10 and 500.

The bundled 20 keep their real prices; the synthetic tickers are named
``<SECTOR><number>`` (``TEC021``, ``FIN022``...).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pandas as pd

from runner.stages.foundation import log_returns, read_prices

__all__ = ["SECTORS", "extended_prices", "main"]

SECTORS = {
    "TEC": ("AAPL", "AMD", "MSFT"),
    "FIN": ("BAC", "JPM"),
    "ENE": ("CVX", "XOM", "RRC"),
    "HEA": ("JNJ", "LLY", "MRK", "PFE", "UNH"),
    "STA": ("KO", "PEP", "PG", "WMT"),
    "CON": ("BBY", "HD"),
    "IND": ("GE",),
}
"""Sector of each bundled ticker (GICS, abridged): synthetic tickers copy one of them."""

_DOF = 5  # Student-t degrees of freedom of the idiosyncratic noise


def _calibrate(rets: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
    """The market factor, the sector factors, and per bundled ticker its sector, beta,
    sector loading, daily drift and idiosyncratic volatility."""
    market = rets.mean(axis=1)
    var_m = float(market.var())
    beta = rets.apply(lambda r: float(r.cov(market)) / var_m)
    resid = rets - np.outer(market.to_numpy(), beta.to_numpy())
    sector_of = {t: s for s, names in SECTORS.items() for t in names if t in rets.columns}
    factors = pd.DataFrame({s: resid[[t for t in names if t in resid.columns]].mean(axis=1)
                            for s, names in SECTORS.items()
                            if any(t in resid.columns for t in names)})
    rows = []
    for ticker, sector in sector_of.items():
        f = factors[sector]
        load = float(resid[ticker].cov(f)) / float(f.var()) if float(f.var()) > 0 else 0.0
        idio = resid[ticker] - load * f
        rows.append({"ticker": ticker, "sector": sector, "beta": float(beta[ticker]),
                     "load": load, "drift": float(idio.mean()), "vol": float(idio.std())})
    return market, factors, pd.DataFrame(rows).set_index("ticker")


def extended_prices(tickers: int = 300, *, seed: int = 0,
                    base: pd.DataFrame | None = None) -> pd.DataFrame:
    """The bundled prices (or ``base``) and synthetic tickers up to ``tickers`` columns.

    Wide daily prices (a ``DatetimeIndex`` named ``date``, one float column per
    ticker), positive, no NaN; the same ``seed`` gives the same prices.
    """
    prices = (read_prices() if base is None else base).sort_index().ffill().dropna()
    if tickers <= prices.shape[1]:
        return prices.iloc[:, :max(1, tickers)].copy()
    rets = log_returns(prices)
    market, factors, params = _calibrate(rets)
    rng = np.random.default_rng(seed)
    n_new, days = tickers - prices.shape[1], len(rets)
    templates = params.iloc[rng.integers(0, len(params), size=n_new)]
    beta = templates["beta"].to_numpy() * rng.lognormal(0.0, 0.25, n_new)
    load = templates["load"].to_numpy() * rng.uniform(0.5, 1.5, n_new)
    vol = templates["vol"].to_numpy() * rng.lognormal(0.0, 0.3, n_new)
    drift = templates["drift"].to_numpy() + rng.normal(0.0, 2e-4, n_new)
    noise = rng.standard_t(_DOF, size=(days, n_new)) * np.sqrt((_DOF - 2) / _DOF)
    sector = factors[templates["sector"].to_list()].to_numpy()
    daily = (drift + np.outer(market.to_numpy(), beta) + sector * load + noise * vol)
    start = np.exp(rng.uniform(np.log(10.0), np.log(500.0), n_new))
    path = np.vstack([np.zeros(n_new), np.cumsum(daily, axis=0)])
    first = prices.shape[1] + 1
    names = [f"{s}{first + i:03d}" for i, s in enumerate(templates["sector"])]
    synthetic = pd.DataFrame(start * np.exp(path), index=prices.index, columns=names)
    out = pd.concat([prices, synthetic], axis=1)
    out.columns = pd.Index([str(c) for c in out.columns], name="ticker")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m runner.stages.universe --tickers 300 -o prices.parquet``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=300, help="columns in all (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True,
                        help="a .parquet or .csv(.gz) file for --data")
    args = parser.parse_args(argv)
    frame = extended_prices(args.tickers, seed=args.seed)
    if args.output.lower().endswith((".parquet", ".pq")):
        frame.to_parquet(args.output)
    else:
        frame.to_csv(args.output)
    print(f"{frame.shape[1]} tickers x {frame.shape[0]} days -> {args.output}")


if __name__ == "__main__":
    main()
