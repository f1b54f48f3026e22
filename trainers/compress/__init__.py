"""Smaller models from a trained one (``redblue compress``): structured pruning of its hidden
units, or distillation of its answers into a student; both train on through the normal loop."""
