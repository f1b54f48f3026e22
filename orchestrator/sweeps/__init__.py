"""``redblue sweep``: Ray Tune trials of the training run, their MLflow record, the champion."""
