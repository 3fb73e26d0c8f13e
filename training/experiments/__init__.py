"""Experiments: training variants compared on a fixed group-aware K-fold split."""
