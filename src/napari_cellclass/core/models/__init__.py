"""Architectures: the registry (one file per family, timm-style) and model weights."""
