"""``redblue predict``: offline batch prediction of a model over CSV / Parquet files with Ray Data.

``rules`` holds the argument and schema rules (pure, tested without Ray); ``plan`` resolves the
model and checks the input against it before Ray starts; ``batch`` is the per-actor predictor;
``run`` is the Ray Data pipeline and its summary.
"""
