"""A researcher's own prices through ``--data``, as they meet them at the command line:
CSV and Parquet files written the way a user writes them, the CLI in a subprocess.

Long (tidy) files are read as well as wide ones, to the same portfolio; a file the
stages cannot use is refused before the run starts (exit 2, one message with what is
wrong and the expected shape, no run folder); what the stages fix is said up front.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runner.errors import DataError
from runner.stages.foundation import read_prices

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "configs" / "manifest.json"
EXPECTED = "expected: wide: a date column, then one column of adjusted closes per ticker"


def cli(*args, cwd, columns=80):
    env = {k: v for k, v in os.environ.items() if k != "RUNNER_DEBUG"}
    env.update(PYTHONPATH=str(ROOT), COLUMNS=str(columns))
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600, check=False)


def run(tmp_path, data, pipeline="alpha.full", *extra):
    return cli("run", pipeline, "-m", MANIFEST, "--artifacts", tmp_path / "artifacts",
               "--data", data, *extra, cwd=tmp_path)


@pytest.fixture(scope="module")
def prices():
    """Six tickers, 2016-2022, from the bundled data: a user's own wide prices."""
    return read_prices().loc["2016-01-01":, ["AAPL", "JPM", "KO", "MSFT", "PFE", "XOM"]]


def refused(proc, tmp_path, *phrases):
    """Exit 2, one error block (the problem, then the expected shape), no run started."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "bug in runner" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    assert not (tmp_path / "artifacts" / "runs").exists()  # refused before the run's id
    return errors[0]


# ---------------------------------------------------------------- wide and long


def test_a_long_file_gives_the_portfolio_of_its_wide_twin(tmp_path, prices):
    """Yesterday: a one-asset portfolio named ``close``, exit 0."""
    prices.to_csv(tmp_path / "wide.csv")
    long = prices.stack().rename("Adj Close").reset_index()
    long.columns = ["Date", "Symbol", "Adj Close"]
    long["Close"] = long["Adj Close"] * 1.01  # a raw close beside it: the adjusted one wins
    long.sample(frac=1.0, random_state=0).to_csv(tmp_path / "long.csv", index=False)
    docs = []
    for name in ("wide.csv", "long.csv"):
        proc = run(tmp_path, name, "alpha.full", "--json")
        assert proc.returncode == 0, proc.stderr
        docs.append(json.loads(proc.stdout))
    wide, tidy = (d["result"]["weights"] for d in docs)
    assert sorted(tidy) == sorted(prices.columns)
    assert tidy == pytest.approx(wide, abs=1e-9)
    assert "used column 'Adj Close' for prices (not 'Close')" in proc.stderr


def test_a_long_parquet_file_with_a_symbol_column_is_read(tmp_path, prices):
    long = prices.stack().rename("price").reset_index()
    long.columns = ["timestamp", "symbol", "price"]
    long["price"] = long["price"].map(str)  # prices stored as text, as some exports do
    long.loc[7, "price"] = "n.a."  # a vendor's placeholder: read as missing, and said
    long.to_parquet(tmp_path / "long.parquet")
    proc = run(tmp_path, "long.parquet", "dataops.full")
    assert proc.returncode == 0, proc.stderr
    assert "note: long.parquet: 1 price that is not a number, read as missing" in proc.stderr


@pytest.mark.parametrize(("content", "phrases"), [
    ("date,ticker,volume\n2021-01-04,AAPL,100\n",
     ["a ticker column ('ticker') but no price column among volume"]),
    ("date,open,high,low,close,volume\n2021-01-04,1,2,0.5,1.5,100\n",
     ["no ticker column", "open, high, low, close and 1 more are price fields"]),
    ("date,ticker,close\n", ["0 rows x 3 columns: no prices"]),
])
def test_a_file_of_the_wrong_shape_is_refused_with_the_expected_shape(tmp_path, content,
                                                                      phrases):
    (tmp_path / "prices.csv").write_text(content)
    proc = run(tmp_path, "prices.csv")
    refused(proc, tmp_path, "error: prices.csv: ", *phrases)
    assert EXPECTED in proc.stderr


# ---------------------------------------------------------------- degenerate data


def test_too_few_rows_say_how_many_the_pipeline_needs(tmp_path, prices):
    """Yesterday: ``NaTType does not support strftime`` deep in a stage, exit 1."""
    prices.iloc[:10].to_csv(tmp_path / "ten.csv")
    refused(run(tmp_path, "ten.csv"), tmp_path,
            "10 days of prices (2016-01-04 to 2016-01-15)",
            "walk-forward forecasts of alpha.full need about 778",
            "param 'min_train_months'")
    prices.iloc[:1].to_csv(tmp_path / "one.csv")
    refused(run(tmp_path, "one.csv", "dataops.full"), tmp_path,
            "1 day of prices (2016-01-04 to 2016-01-04): at least 2 are needed")
    # the DataOps pillar fits no model: ten days are enough for it
    assert run(tmp_path, "ten.csv", "dataops.full").returncode == 0


def test_what_can_be_fixed_is_fixed_and_said(tmp_path, prices):
    """Empty and constant tickers are dropped (yesterday: "run foundation.ingest first"
    and scikit-learn's "Input X contains infinity"), a repeated column with the same
    prices is kept once (yesterday: renamed ``AAPL.1``), duplicate dates keep their
    last row, non-positive prices are read as missing: each said before the run."""
    frame = prices.copy()
    frame["EMPTY"] = np.nan
    frame["FLAT"] = 10.0
    frame.iloc[100, frame.columns.get_loc("KO")] = 0.0
    frame = pd.concat([frame, frame.iloc[[200, 201]]])
    frame.insert(1, "AAPL", prices["AAPL"], allow_duplicates=True)
    frame.to_csv(tmp_path / "messy.csv")
    proc = run(tmp_path, "messy.csv", "alpha.full", "--json")
    assert proc.returncode == 0, proc.stderr
    weights = json.loads(proc.stdout)["result"]["weights"]
    assert sorted(weights) == sorted(prices.columns)  # no AAPL.1, EMPTY or FLAT
    notes = [line for line in proc.stderr.splitlines() if "note: messy.csv: " in line]
    said = " | ".join(notes)
    for phrase in ("ticker AAPL appears in more than one column with the same prices: "
                   "kept one", "dropped 2 duplicate dates, keeping the last row",
                   "treated 1 non-positive price as missing (KO 1)",
                   "dropped EMPTY: no prices at all",
                   "dropped FLAT: the price never changes", "sorted the rows by date",
                   "forward-filled 1 missing price"):
        assert phrase in said, proc.stderr
    assert len(notes) == len(set(notes)) == 7, notes  # each once, before the run


@pytest.mark.parametrize("case", ["different", "empty", "flat"])
def test_what_cannot_be_fixed_is_refused(tmp_path, prices, case):
    frame = prices.copy()
    if case == "different":
        frame.insert(1, "AAPL", prices["MSFT"], allow_duplicates=True)
        phrases = ["ticker AAPL appears in more than one column with different prices"]
    elif case == "empty":
        frame[:] = np.nan
        phrases = ["no ticker is left to use: dropped AAPL, JPM, KO, MSFT, PFE, XOM: no "
                   "prices at all"]
    else:
        frame[:] = 5.0
        phrases = ["no ticker is left to use", "the price never changes"]
    frame.to_csv(tmp_path / "prices.csv")
    refused(run(tmp_path, "prices.csv"), tmp_path, *phrases)


def test_multiindex_columns_are_refused_with_how_to_keep_one_field(tmp_path, prices):
    """Yesterday: accepted, with tuples for tickers."""
    download = pd.concat({"Close": prices, "Volume": prices * 1000}, axis=1)
    download.to_parquet(tmp_path / "download.parquet")
    refused(run(tmp_path, "download.parquet"), tmp_path,
            "the columns have 2 levels (Close, Volume; AAPL, JPM, KO and 3 more)",
            "frame.xs('Close', axis=1, level=0)")
    download.to_csv(tmp_path / "download.csv")  # the same download saved to CSV
    refused(run(tmp_path, "download.csv"), tmp_path, "are not dates",
            "the file seems to have several header rows")


def test_unparseable_dates_are_refused_naming_the_rows(tmp_path, prices):
    text = prices.iloc[:30].to_csv().splitlines()
    text[5] = "2016-02-30" + text[5][10:]
    text[9] = "" + text[9][10:]
    (tmp_path / "prices.csv").write_text("\n".join(text) + "\n")
    refused(run(tmp_path, "prices.csv", "dataops.full"), tmp_path,
            "2 values of column 'date' are not dates (row 6 '2016-02-30', row 10 empty)",
            "use one date format")


def test_a_missing_file_is_exit_2(tmp_path):
    refused(run(tmp_path, "nowhere.csv"), tmp_path, "error: nowhere.csv: file not found")


# ---------------------------------------------------------------- the SDK, the shipped example


def test_the_sdk_checks_the_data_before_the_run(tmp_path, prices):
    from runner import QuantSDK
    from runner.stages.contexts import PortfolioContext

    prices.iloc[:10].to_csv(tmp_path / "ten.csv")
    sdk = QuantSDK(MANIFEST, artifacts=tmp_path / "artifacts")
    with pytest.raises(DataError, match="need about 778") as info:
        sdk.run_pipeline("alpha.full",
                         PortfolioContext(params={"data": str(tmp_path / "ten.csv")}))
    assert info.value.exit_code == 2
    assert not (tmp_path / "artifacts" / "runs").exists()


def test_the_example_file_is_long_and_accepted(tmp_path):
    example = ROOT / "configs" / "example_prices.csv"
    assert example.stat().st_size < 20_000
    assert example.read_text().splitlines()[0].lower().startswith("date,ticker,")
    proc = run(tmp_path, example, "dataops.full")
    assert proc.returncode == 0, proc.stderr
    help_text = cli("run", "--help", cwd=tmp_path, columns=300).stdout
    assert "date,ticker,close" in help_text and "example_prices.csv" in help_text
