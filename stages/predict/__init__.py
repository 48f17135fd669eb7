"""Predict the expression of new videos or frame folders with a trained run (``python -m stages.predict``).

New clips take the pipeline's own path: frames (stages.frames), faces (stages.faces), captions and refinement
(stages.captions, stages.refine) for the models that read captions, the features table (stages.features), then the
trained model as ``stages.train`` built and selected it, with the stage settings of the run's config files.
"""
