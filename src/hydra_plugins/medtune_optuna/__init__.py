"""medtune's Hydra sweeper over Optuna (`hydra/sweeper=medtune_optuna`); the search itself is medtune.search.runner.

Hydra finds it as it finds every plugin: it imports the modules of the `hydra_plugins` namespace package (this
folder ships in medtune's wheel). Nothing here imports optuna or torch: Hydra loads plugins at every start.
"""
