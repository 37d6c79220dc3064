"""Data: the manifest, images and their cache, the torch dataset, the split, validation; the
dataset kinds (``kinds/``) and the downloads they use (``fetch/``)."""
