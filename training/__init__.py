"""Training toolkit, one sub-package per concern: ``data``, ``backbones``, ``fitting``, ``export``,
``evaluation`` and ``experiments``; the model and its head in ``model``, every knob in ``config``.

The command: ``carclf`` (``training.cli``), e.g. ``carclf train``, ``carclf evaluate``, ``carclf experiment``.
"""
