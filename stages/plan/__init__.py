"""Which jobs a run would execute and why, with the changed settings by name (``python -m stages.plan``)."""
