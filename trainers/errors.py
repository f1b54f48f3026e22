"""The two errors a user's input can raise in the compute layer; the CLI, pyfunc, batch
prediction and serving turn each into one clear message (exit code 2, or an HTTP 422)."""


class DataError(ValueError):
    """The data cannot be used as configured; the message names the problem."""


class InputError(ValueError):
    """The input does not fit the model's schema; the message names the problem."""
