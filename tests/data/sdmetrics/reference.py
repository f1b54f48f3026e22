"""Writes a real and a generated table (numbers with gaps, categories with gaps, a category only
the generated rows have) and SDMetrics' quality report on them (``expected.json``), which
tests/unit/test_table_quality.py matches. Run in an environment with ``sdmetrics`` (it pins
pandas below 3, so not the project's): ``python -m venv /tmp/sdm && /tmp/sdm/bin/pip install
sdmetrics==0.32.0 && /tmp/sdm/bin/python tests/data/sdmetrics/reference.py``."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import sdmetrics
from sdmetrics.reports import QualityReport

HERE = Path(__file__).parent
ROWS = 400


def table(rng: np.random.Generator, shift: float, colours: list[str]) -> pd.DataFrame:
    x = rng.normal(shift, 1.0, ROWS)
    frame = pd.DataFrame(
        {
            "x": x,
            "y": 0.6 * x + rng.normal(0.0, 0.8, ROWS) * (1 + shift),
            "size": rng.choice(["s", "m", "l"], ROWS, p=[0.5, 0.3, 0.2]),
            "colour": rng.choice(colours, ROWS),
        }
    )
    frame.loc[rng.choice(ROWS, 20, replace=False), "y"] = np.nan
    frame.loc[rng.choice(ROWS, 15, replace=False), "size"] = np.nan
    return frame


def main() -> None:
    real = table(np.random.default_rng(0), 0.0, ["red", "blue"])
    generated = table(np.random.default_rng(1), 0.4, ["red", "blue", "green"])
    real.to_csv(HERE / "real.csv", index=False)
    generated.to_csv(HERE / "generated.csv", index=False)
    real, generated = pd.read_csv(HERE / "real.csv"), pd.read_csv(HERE / "generated.csv")
    columns = {"x": "numerical", "y": "numerical", "size": "categorical", "colour": "categorical"}
    table_metadata = {"columns": {name: {"sdtype": sdtype} for name, sdtype in columns.items()}}
    metadata = {"tables": {"table": table_metadata}}
    report = QualityReport()
    # Every pair scored and averaged (SDMetrics' property with its thresholds at 0); the unified
    # report's defaults average only pairs whose real correlation passes 0.5 (association 0.3).
    report.real_correlation_threshold = report.real_association_threshold = 0
    report.generate({"table": real}, {"table": generated}, metadata, verbose=False)
    shapes = report.get_details("Column Shapes")
    trends = report.get_details("Column Pair Trends")
    expected = {
        "sdmetrics": sdmetrics.__version__,
        "quality": report.get_score(),
        "column_shapes": float(shapes["Score"].mean()),
        "column_pair_trends": float(trends["Score"].mean()),
        "shapes": dict(zip(shapes["Column"], shapes["Score"].astype(float), strict=True)),
        "pairs": {
            f"{first}|{second}": float(score)
            for first, second, score in zip(
                trends["Column 1"], trends["Column 2"], trends["Score"], strict=True
            )
        },
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":
    main()
