"""Data sets built from data that packages ship (nothing is downloaded): scikit-learn's digits
as sequences of pixel rows, and statsmodels' Mauna Loa CO2 as a monthly series."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

FAINT_ROW_INK = 24  # of 8 pixels x 16 levels


def digits_rows() -> pd.DataFrame:
    """scikit-learn's 1,797 digits as sequences: each 8x8 image read row by row from the top
    (8 pixel features a step), its faint rows at the top and bottom (less ink than 1.5 full
    pixels) left out, so sequences hold 3 to 8 steps. Long format: ``image``, ``row``,
    ``p0``..``p7``, ``digit``."""
    import pandas as pd
    from sklearn.datasets import load_digits

    digits = load_digits()
    records = []
    for image, (pixels, digit) in enumerate(zip(digits.images, digits.target, strict=True)):
        inked = np.flatnonzero(pixels.sum(axis=1) > FAINT_ROW_INK)
        for row in range(inked.min(), inked.max() + 1):
            records.append([image, row, *pixels[row].tolist(), int(digit)])
    columns = ["image", "row", *[f"p{i}" for i in range(8)], "digit"]
    return pd.DataFrame(records, columns=columns)


def co2_monthly() -> pd.DataFrame:
    """statsmodels' weekly CO2 at Mauna Loa (March 1958 to December 2001) as monthly means, the
    weeks it lacks interpolated linearly: 526 months, columns ``month`` (a date) and ``co2``
    (ppm)."""
    import pandas as pd
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate()
    return pd.DataFrame({"month": monthly.index, "co2": monthly.to_numpy()})
