"""Control plane: CLI, config, Ray Train launch, MLflow tracking."""
