"""Training toolkit: config, data, augmentation, backbones, model, optimization,
devices, training loop, export, evaluation and experiments.

Entry points: ``python -m training.train``, ``python -m training.evaluate`` and
``python -m training.experiment``.
"""
