"""Hyper-parameter search over Optuna 5 behind the `hydra/sweeper=medtune_optuna` plugin (src/hydra_plugins). Modules:
space       Hydra's override grammar → Optuna distributions; plain comma lists are outer axes (one study each)
objectives  the objective keys a trial writes, checked before any training
settings    the sweeper's config (n_trials, n_jobs, sampler, pruner, objective, direction, storage)
study       the study's storage in the sweep dir, samplers, pruners, recovery of a killed search's trials
runner      ask a batch of trials, launch them through Hydra's launcher, tell each from its run dir
pruning     the trial's side: in-training QA accuracy reported to the study storage, pruned → status pruned
status      one line per trial for `python -m medtune.sweep status` and the search's closing summary
"""
