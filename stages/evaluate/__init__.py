"""Evaluation stage: UAR/WAR per fold, confusion and training-curve plots, fold summaries and the paper table."""
