"""Datasets: manifests, images, the embedded default set, splits and torch datasets."""
