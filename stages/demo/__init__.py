"""Embedded demo data: short expression clips synthesised from scikit-image's public-domain astronaut photo.

The clips are a smoke test that the whole pipeline learns something, not a benchmark: every clip shows the
same face, moved along its 68 landmarks by hand-written, FACS-like displacement patterns.
"""
