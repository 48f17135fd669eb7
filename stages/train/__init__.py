"""Training: models, data, trainer (python -m stages.train)."""
