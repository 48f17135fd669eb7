"""Contrastive pre-training of the demo's tiny CLIP towers on a synthetic corpus of captioned facial actions.

The towers cannot be downloaded, and random ones map every clip to nearly the same embedding; this stage trains them
like CLIP on a corpus of its own (stages.pretrain.corpus) and writes an open_clip state dict that the demo loads
through the same weights path as a real CLIP checkpoint.
"""
