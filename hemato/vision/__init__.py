"""The networks: models, features, augmentation, prediction, export, evaluation, explanations, neurons."""
