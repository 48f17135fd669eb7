"""Faces stage: 68 landmarks and an 11-class parsing map (FaceXFormer's label order) per stored frame.

``python -m stages.faces --frames F --config-json J --out O`` reads a frames shard and writes a faces shard
(``FACES_SCHEMA``). Backends are pluggable (:mod:`stages.faces.backends`); the offline default is dlib.
"""
