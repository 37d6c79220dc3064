"""sdl: Semantic Diversity Learning for zero-shot multi-label image tagging.

The core library of sdl-pipeline (Ben-Cohen et al., "Semantic Diversity Learning for
Zero-Shot Multi-label Classification", ICCV 2021). It depends on torch, timm, numpy and
pyarrow; it never imports an orchestration package (prefect, dvc).
"""

__version__ = "0.1.0"
