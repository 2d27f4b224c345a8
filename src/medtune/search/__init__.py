"""Hyper-parameter search over Optuna (issue 20): search space, study storage, and the trial's pruning report."""
