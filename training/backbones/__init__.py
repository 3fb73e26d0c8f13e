"""Backbones chosen by name, and their ImageNet weights (EfficientNet-Lite's read from PyTorch checkpoints)."""
