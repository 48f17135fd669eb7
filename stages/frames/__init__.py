"""Frames stage: segment sampling, selective decoding, face crop, JPEG shards (``python -m stages.frames``)."""
