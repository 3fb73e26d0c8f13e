"""Training toolkit: data, backbones, model, training loop, export, evaluation.

Entry points: ``python -m training.train`` and ``python -m training.evaluate``.
"""
