"""`medtune train` and train.py: instruction-tune (or continually pretrain) a base model; every run tracked in W&B.

The module is named train so that Hydra names the job (and its log file, train.log) as it did for train.py.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from medtune.cli import quiet_known_warnings
from medtune.commands.hydra_entry import hydra_main
from medtune.config import TrainConfig, register_configs, to_plain_dict, to_train_config
from medtune.run_dir import previous_run
from medtune.sweep import done_elsewhere

register_configs()
quiet_known_warnings()  # before transformers/peft/bitsandbytes load (inside main)


@hydra_main("train")
def main(cfg: DictConfig) -> float:
    from medtune.cli import default_cuda_allocator, run_job

    def job() -> dict:
        default_cuda_allocator()  # in the job's own process (a submitit worker too), before CUDA starts
        config = to_train_config(cfg)  # config mistakes show here, before torch is imported
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        finished = previous_run(output_dir, to_plain_dict(config))  # a re-run sweep skips a finished cell here
        if finished is not None:
            return finished | {"skipped": True}
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return train(config, output_dir)
        with done_elsewhere(Path(HydraConfig.get().sweep.dir), output_dir, to_plain_dict(config)) as same:
            return (same | {"skipped": True}) if same is not None else train(config, output_dir)

    results = run_job(job)
    if not results:
        return float("nan")  # a failed cell: sweepers that optimise need a number, not None
    if not results.get("skipped"):
        from accelerate import PartialState

        from medtune.console import training_summary

        if PartialState().is_main_process:
            print(training_summary(results, cfg.eval.suite), flush=True)
    objective = results.get("objective")
    return float("nan") if objective is None else objective


def train(config: TrainConfig, output_dir: Path) -> dict:
    from medtune.data import load_splits
    from medtune.tiny_paths import ensure_tiny_model

    splits = load_splits(config.dataset, config.stage, config.trainer.seed)  # bad data fails before torch is imported
    ensure_tiny_model(config.base_model, config.cache_dir)  # a tiny base is built on first use
    from medtune.training import run

    return run(config, output_dir, splits)
