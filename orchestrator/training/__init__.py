"""``redblue train``: one training run on Ray Train (the driver's side and the launch)."""
