"""Training toolkit, one sub-package per concern: ``data``, ``backbones``, ``fitting``, ``export``,
``evaluation`` and ``experiments``; the model and its head in ``model``, every knob in ``config``.

Entry points: ``python -m training.train``, ``python -m training.evaluate`` and
``python -m training.experiment``.
"""
