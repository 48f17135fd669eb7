"""Helpers shared by every stage: atomic file output, Arrow schemas, dataset configs, CLI plumbing."""
