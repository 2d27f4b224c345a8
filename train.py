"""Instruction-tune (or continually pretrain) a base model; every run tracked in W&B.

python train.py                                                   # demo: tiny GPT-NeoX + LoRA, offline
python train.py base_model=tiny_llama quantization=nf4 trainer.max_steps=50   # QLoRA on tiny Llama
python train.py -m base_model=tiny_gptneox,tiny_llama quantization=none,nf4   # 4 runs
"""

import math

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from medtune.cli import quiet_known_warnings
from medtune.config import register_configs, to_train_config

register_configs()
quiet_known_warnings()  # before transformers/peft/bitsandbytes load (inside main)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from medtune.cli import run_job

    def job() -> dict:
        config = to_train_config(cfg)  # config mistakes show here, before torch is imported
        from medtune.tiny import ensure_tiny_model
        from medtune.training import run

        ensure_tiny_model(config.base_model, config.cache_dir)  # a tiny base is built on first use
        return run(config, HydraConfig.get().runtime.output_dir)

    results = run_job(job)
    if not results:
        return math.nan  # a failed cell: optimising sweepers (Optuna, W&B) take NaN, not None, as a failed trial
    from accelerate import PartialState

    from medtune.console import training_summary

    if PartialState().is_main_process:
        print(training_summary(results, cfg.eval.suite), flush=True)
    objective = results.get("objective")
    return math.nan if objective is None else objective


if __name__ == "__main__":
    main()
