"""Refine stage: strip emotion words and emotion-inferring clauses from captions, flag label leakage."""
