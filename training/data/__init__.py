"""Training data: photos and their labels, the group-aware splits, the tf.data pipeline and augmentation."""
