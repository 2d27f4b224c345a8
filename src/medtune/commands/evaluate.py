"""`medtune evaluate` and evaluate.py: score a model on Japanese medical QA, tracked in W&B.

The module is named evaluate so that Hydra names the job (and its log file) as it did for evaluate.py.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from medtune.cli import quiet_known_warnings
from medtune.commands.hydra_entry import hydra_main
from medtune.evaluation.config import Backend, register_configs, to_evaluate_config

register_configs()
quiet_known_warnings()  # before transformers/peft/bitsandbytes load (inside main)


@hydra_main("evaluate")
def main(cfg: DictConfig) -> float | None:
    from medtune.cli import run_job

    def job() -> dict[str, float]:
        config = to_evaluate_config(cfg)  # config mistakes show here, before torch is imported
        from medtune.evaluation.pipeline import run

        if config.backend == Backend.local:
            from medtune.config import load_run_config
            from medtune.tiny_paths import ensure_tiny_model  # torch-free: a bad questions file fails in seconds

            source = load_run_config(Path(config.run_dir)) if config.run_dir else config  # a trained run: its base
            ensure_tiny_model(source.base_model, source.cache_dir)  # a tiny base is built on first use
        return run(config, HydraConfig.get().runtime.output_dir)

    metrics = run_job(job)
    return metrics["accuracy"] if metrics else None
