"""Model code: adapters, CLIP towers and their adapted encoders, FineCLIPER and the DFER-CLIP baseline."""
