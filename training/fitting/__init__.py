"""Fitting a classifier: the training run, its stages, callbacks, optimisation, devices, checkpoints and the
linear probe that initialises the head."""
