"""Features stage: join frames, faces, labels/splits and approved captions into the training cache (``python -m stages.features``)."""
