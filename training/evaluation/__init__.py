"""Evaluating exported models: predictions on labelled photos, metrics, reports, the known-model test's
fitting, suspect labels and Kaggle submissions."""
