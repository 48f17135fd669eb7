"""Captions stage: a short description of the facial movements in each clip, from a pluggable backend.

:mod:`stages.captions.backend` defines the interface (:class:`~stages.captions.backend.CaptionBackend`) and frame
sampling; :mod:`stages.captions.video_llava` is the paper's backend (Video-LLaVA-7B-hf from a local folder).
"""
