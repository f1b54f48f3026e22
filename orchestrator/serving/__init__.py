"""``redblue deploy``: a registered model on Ray Serve (keys, TLS, ingress, roll-outs)."""
