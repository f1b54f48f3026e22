"""Compute layer: models, data, engines and the training loop (plain PyTorch + DeepSpeed)."""
