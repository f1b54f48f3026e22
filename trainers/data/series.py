"""Time-series data (``data.kind: series``): one series, a row per time step ordered by
``data.time``, cut into windows of ``data.window`` steps of history and the ``data.horizon``
steps of ``data.target`` that follow them.

The split is by **contiguous blocks of time**: T is the last block, V the one before it, and the
training time before V is cut into ``data.blocks`` pairs of a red and a blue block (red first,
sized by ``strategy.red_ratio``). A window belongs to a part only when all its steps, history and
horizon, lie inside one block of that part, so no step of T or V is inside any training window
and nothing leaks between parts through overlapping windows.

A window is a sample ``[window, columns + 1]`` (every value column, targets and covariates, and a
last mask channel of ones, as ``trainers.data.sequences.pad`` makes them), so the recurrent families
take windows as sequences; its label is ``[horizon, targets]``. The naive and seasonal naive
forecasts of the test windows are scored here, once, as the plan is made
(``trainers.data.forecast_scores``). No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.config import DataConfig
from trainers.data.forecast_scores import baselines
from trainers.data.splits import check_parts
from trainers.dataset import Dataset, Split
from trainers.errors import DataError, InputError
from trainers.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

CO2 = "co2"  # bundled: statsmodels' Mauna Loa CO2, as a monthly series
BUNDLED_SERIES = {CO2: {"time": "month", "target": "co2"}}


@dataclass(frozen=True)
class SeriesInput:
    """A history of at least ``window`` steps of the ``feature_names`` columns (in training
    order), the last ``window`` of which a forecaster reads: what pyfunc, serving and the
    evaluation give it, checked once here.

    ``rows`` takes the series frame as trained from (``time_column`` and every value column;
    other columns are ignored): one history, its last steps by time; a list of steps (lists of
    numbers): one history; or an array ``[histories, steps, columns]``. It returns the windows
    ``[histories, window, columns + 1]`` with the mask channel.
    """

    feature_names: tuple[str, ...]
    time_column: str
    window: int
    horizon: int
    targets: tuple[str, ...]

    @classmethod
    def of_model(cls, spec: ModelSpec) -> SeriesInput:
        """The schema a forecaster stores (``ModelSpec.preprocessing["series"]``)."""
        entry = dict(spec.preprocessing["series"])
        names, targets = tuple(entry.pop("feature_names")), tuple(entry.pop("targets"))
        return cls(feature_names=names, targets=targets, **entry)

    @property
    def width(self) -> int:
        return len(self.feature_names)

    @property
    def target_index(self) -> list[int]:
        return [self.feature_names.index(name) for name in self.targets]

    def rows(self, model_input: Any) -> np.ndarray:
        import pandas as pd

        if isinstance(model_input, Mapping):
            model_input = pd.DataFrame(model_input)
        if isinstance(model_input, pd.DataFrame):
            histories = [self._history("the series", self.from_frame(model_input))]
        else:
            try:
                values = np.asarray(model_input, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError(
                    f"a history is a list of steps, each a list of {self.width} numbers "
                    f"{list(self.feature_names)}"
                ) from None
            if values.ndim == 2:
                values = values[None]
            if values.ndim != 3:
                raise InputError(
                    f"a history is a list of steps of {self.width} numbers; got an array of "
                    f"shape {values.shape}"
                )
            histories = [self._history(f"history {i}", h) for i, h in enumerate(values)]
        if not histories:
            raise InputError("no history given")
        windows = np.ones((len(histories), self.window, self.width + 1), dtype=np.float32)
        windows[..., :-1] = np.stack(histories)
        return windows

    def from_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """The value columns of a series frame, ordered by time."""
        import pandas as pd

        needed = [self.time_column, *self.feature_names]
        missing = [name for name in needed if name not in frame.columns]
        if missing:
            raise InputError(
                f"missing column(s) {missing}; a forecaster takes the series columns {needed} "
                "(other columns are ignored)"
            )
        duplicated = frame[self.time_column].duplicated()
        if duplicated.any():
            raise InputError(f"{int(duplicated.sum())} duplicate {self.time_column!r} value(s)")
        text = [c for c in self.feature_names if not pd.api.types.is_numeric_dtype(frame[c])]
        if text:
            raise InputError(f"column(s) {text} must hold numbers")
        ordered = frame.sort_values(self.time_column, kind="stable")
        return ordered[list(self.feature_names)].to_numpy(dtype=np.float64)

    def _history(self, name: str, values: np.ndarray) -> np.ndarray:
        if values.ndim != 2 or values.shape[1] != self.width:
            raise InputError(
                f"{name}: steps of {self.width} values {list(self.feature_names)} expected, got "
                f"shape {values.shape}"
            )
        if len(values) < self.window:
            raise InputError(
                f"{name} has {len(values)} step(s); a forecast needs at least {self.window} "
                "(data.window)"
            )
        recent = values[-self.window :]
        if not np.isfinite(recent).all():
            raise InputError(f"{name}: NaN or infinite values in its last {self.window} steps")
        return recent

    def raw_rows(self, dataset: Dataset, indices: np.ndarray) -> np.ndarray:
        """The histories of the windows at ``indices``: ``[n, window, columns]``."""
        return dataset.features[indices][..., :-1]

    def sample_input(self, dataset: Dataset, indices: np.ndarray) -> pd.DataFrame:
        """The series up to the end of the first window's history (``Dataset.raw``)."""
        assert dataset.raw is not None
        end = int(indices[0]) + self.window
        return dataset.raw.iloc[end - self.window : end].reset_index(drop=True)

    def forecast_frame(self, values: np.ndarray) -> pd.DataFrame:
        """Forecasts ``[histories, horizon, targets]`` as a frame: ``step`` (1 to horizon) and
        one column per target, and ``history`` when there are several."""
        import pandas as pd

        count = len(values)
        frame = pd.DataFrame(values.reshape(-1, len(self.targets)), columns=list(self.targets))
        frame.insert(0, "step", np.tile(np.arange(1, self.horizon + 1), count))
        if count > 1:
            frame.insert(0, "history", np.repeat(np.arange(count), self.horizon))
        return frame


@dataclass(frozen=True)
class Block:
    """Time steps ``[start, stop)`` of one part: test, val, red or blue."""

    part: str
    start: int
    stop: int


def time_blocks(
    steps: int, test_fraction: float, val_fraction: float, red_ratio: float, pairs: int
) -> list[Block]:
    """The series' blocks in time order: red and blue alternating, then V, then T."""
    test = round(steps * test_fraction)
    val = round((steps - test) * val_fraction)
    pool = steps - test - val
    blocks = []
    for pair in range(pairs):
        start, stop = round(pair * pool / pairs), round((pair + 1) * pool / pairs)
        middle = start + round((stop - start) * red_ratio)
        blocks += [Block("red", start, middle), Block("blue", middle, stop)]
    return [*blocks, Block("val", pool, pool + val), Block("test", pool + val, steps)]


def window_split(blocks: list[Block], span: int, num_workers: int) -> Split:
    """Windows (named by their first step) of ``span`` steps (history and horizon) lying wholly
    inside one block, by part."""
    parts: dict[str, list[int]] = {"test": [], "val": [], "red": [], "blue": []}
    for block in blocks:
        parts[block.part].extend(range(block.start, block.stop - span + 1))
    split = Split(**{name: np.asarray(starts, dtype=np.int64) for name, starts in parts.items()})
    for name, starts in parts.items():
        if not starts:
            sizes = [str(b.stop - b.start) for b in blocks if b.part == name]
            raise DataError(
                f"the {name} block{'s' if len(sizes) > 1 else ''} ({', '.join(sizes)} steps) "
                f"{'hold' if len(sizes) > 1 else 'holds'} no whole window of data.window + "
                f"data.horizon = {span} steps: use a longer series, a shorter window or horizon, "
                "fewer data.blocks, or larger fractions"
            )
    check_parts(split, num_workers, blocks[-1].stop)
    return split


def naive_scale(values: np.ndarray, blocks: list[Block]) -> np.ndarray:
    """Per target column, the mean absolute one-step change within the training blocks (the
    in-sample naive error MASE divides by)."""
    changes = [
        np.abs(np.diff(values[b.start : b.stop], axis=0))
        for b in blocks
        if b.part in ("red", "blue") and b.stop - b.start > 1
    ]
    scale = np.concatenate(changes).mean(axis=0)
    if not (scale > 0).all():
        raise DataError("a target column is constant over the training blocks: nothing to forecast")
    return scale


@dataclass(frozen=True)
class Series:
    """A prepared series: every window as a Dataset, and the time blocks it is split by."""

    dataset: Dataset
    blocks: list[Block]
    split: Split
    naive_scale: np.ndarray
    reference_metrics: dict[str, float]
    scaling: str
    season: int | None

    def spec_entries(self) -> dict:
        """What the model stores about its data (``ModelSpec.preprocessing``): plain JSON."""
        assert isinstance(self.dataset.schema, SeriesInput)
        return {
            "series": asdict(self.dataset.schema),
            "scaling": self.scaling,
            "naive_scale": self.naive_scale.tolist(),
            "season": self.season,
        }


def prepare_series(
    frame: pd.DataFrame, cfg: DataConfig, *, val_fraction: float, red_ratio: float, workers: int
) -> Series:
    """Validate a series table, cut it into windows and split them by time blocks; every problem
    is one DataError."""
    defaults = BUNDLED_SERIES.get(cfg.source, {})
    time_column = cfg.time or defaults.get("time")
    targets = cfg.targets or ([defaults["target"]] if "target" in defaults else [])
    if time_column is None or not targets:
        unset = [k for k, v in (("data.time", time_column), ("data.target", targets)) if not v]
        raise DataError(f"data.kind series needs {' and '.join(unset)} (columns of {cfg.source})")
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    named = [time_column, *targets, *cfg.drop]
    absent = [name for name in named if name not in frame.columns]
    if absent:
        raise DataError(
            f"column(s) {absent} not found in {cfg.source}; columns are: {', '.join(frame.columns)}"
        )
    columns = [c for c in frame.columns if c not in (time_column, *cfg.drop)]
    ordered = _ordered_by_time(frame, time_column, cfg.source)
    values = _values(ordered, columns, cfg.source)
    window, horizon = int(cfg.window or 0), cfg.horizon
    count = len(values) - window - horizon + 1
    if count < 1:
        raise DataError(
            f"{cfg.source} has {len(values)} steps, fewer than data.window + data.horizon "
            f"({window + horizon})"
        )
    schema = SeriesInput(tuple(columns), time_column, window, horizon, tuple(targets))
    windows = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)[:count]
    features = np.ones((count, window, len(columns) + 1), dtype=np.float32)
    features[..., :-1] = windows.transpose(0, 2, 1)
    target_values = values[:, schema.target_index]
    labels = np.stack([target_values[s + window : s + window + horizon] for s in range(count)])
    blocks = time_blocks(len(values), cfg.test_fraction, val_fraction, red_ratio, cfg.blocks)
    split = window_split(blocks, window + horizon, workers)
    scale = naive_scale(target_values, blocks)
    dataset = Dataset(
        features=features,
        labels=labels.astype(np.float32),
        task="forecast",
        feature_names=columns,
        classes=[],
        raw=ordered[[time_column, *columns]].reset_index(drop=True),
        schema=schema,
    )
    test = split.test
    reference = baselines(features[test], labels[test], schema.target_index, scale, cfg.season)
    return Series(dataset, blocks, split, scale, reference, cfg.scaling, cfg.season)


def _ordered_by_time(frame: pd.DataFrame, time_column: str, source: str) -> pd.DataFrame:
    import pandas as pd

    times = frame[time_column]
    if times.isna().any():
        raise DataError(f"{int(times.isna().sum())} row(s) of {source} have no {time_column!r}")
    if not (pd.api.types.is_numeric_dtype(times) or pd.api.types.is_datetime64_any_dtype(times)):
        try:
            times = pd.to_datetime(times)
        except (ValueError, TypeError):
            raise DataError(
                f"data.time column {time_column!r} must hold numbers or dates; it holds "
                f"{frame[time_column].iloc[0]!r}"
            ) from None
    duplicated = times.duplicated()
    if duplicated.any():
        raise DataError(
            f"{int(duplicated.sum())} duplicate {time_column!r} value(s) in {source} (first: "
            f"{frame[time_column][duplicated].iloc[0]!r}); a series has one row per time step"
        )
    order = np.argsort(times.to_numpy(), kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def _values(frame: pd.DataFrame, columns: list[str], source: str) -> np.ndarray:
    import pandas as pd

    text = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise DataError(f"series columns must be numbers; not numeric: {', '.join(text)}")
    values = frame[columns].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        counts = ", ".join(f"{c} ({n})" for c, n in zip(columns, bad.sum(axis=0), strict=True) if n)
        raise DataError(
            f"NaN or infinite values in {source}: {counts}; fill or interpolate the gaps first "
            "(a forecaster reads every step)"
        )
    return values


def uneven_spacing(times: pd.Series) -> str | None:
    """What is uneven about the spacing of ordered ``times`` (numbers or dates), or None when
    the steps are evenly spaced (for dates: a frequency pandas can infer, so calendar months
    count as even)."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(times):
        dates = pd.DatetimeIndex(pd.to_datetime(times))
        if len(dates) < 3 or pd.infer_freq(dates) is not None:
            return None
        gaps = dates.to_series().diff().dropna()
        return f"the gaps between steps range from {gaps.min()} to {gaps.max()}"
    gaps = np.diff(times.to_numpy(dtype=np.float64))
    if len(gaps) == 0 or np.allclose(gaps, gaps[0]):
        return None
    return f"the gaps between steps range from {gaps.min():g} to {gaps.max():g}"


def block_spans(starts: np.ndarray, span: int) -> list[tuple[int, int]]:
    """The time steps ``(first, last)`` covered by each run of consecutive windows (one run per
    block of a part)."""
    if len(starts) == 0:
        return []
    breaks = np.flatnonzero(np.diff(starts) > 1)
    firsts = np.concatenate([[starts[0]], starts[breaks + 1]])
    lasts = np.concatenate([starts[breaks], [starts[-1]]])
    return [(int(a), int(b) + span - 1) for a, b in zip(firsts, lasts, strict=True)]
