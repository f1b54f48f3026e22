"""Where data comes from: a bundled data set by name (``trainers.data.bundled``, scikit-learn's
and palmerpenguins' tables), or a .csv / .parquet file by path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trainers.data.bundled import co2_monthly, digits_rows
from trainers.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

# pandas and scikit-learn are imported where they are used: workers receive a ready Dataset and
# Split, and skipping those imports shortens every worker's start (about 1 s each).
SKLEARN = ("digits", "breast_cancer", "wine", "diabetes")  # scikit-learn's load_<name>
BUNDLED_LABELS = {name: "target" for name in SKLEARN} | {
    "penguins": "species",
    "digits_rows": "digit",
    "co2": "co2",
}
BUNDLED = tuple(BUNDLED_LABELS)


def read_table(source: str) -> pd.DataFrame:
    """Read a bundled data set by name, or a .csv/.parquet file by path."""
    import pandas as pd

    if source == "digits_rows":
        return digits_rows()
    if source == "co2":
        return co2_monthly()
    if source == "penguins":  # palmerpenguins ships the CSV: 344 rows, strings and gaps
        from importlib import metadata

        # Located, not imported: the package's __init__ needs pkg_resources.
        csv = metadata.distribution("palmerpenguins").locate_file(
            "palmerpenguins/data/penguins.csv"
        )
        return pd.read_csv(str(csv))
    if source in SKLEARN:
        from sklearn import datasets

        return getattr(datasets, f"load_{source}")(as_frame=True).frame
    path = Path(source).expanduser()
    if path.suffix.lower() not in {".csv", ".parquet"}:
        raise DataError(
            f"data.source {source!r} is neither a bundled data set ({', '.join(BUNDLED)}) "
            "nor a .csv or .parquet file"
        )
    if not path.is_file():
        raise DataError(f"data file not found: {path.resolve()}")
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # any parser error is a property of the user's file
        raise DataError(f"cannot read data file {path}: {exc}") from exc
