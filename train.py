"""Instruction-tune (or continually pretrain) a base model; every run tracked in W&B.

python train.py                                                   # demo: tiny GPT-NeoX + LoRA, offline
python train.py base_model=tiny_llama quantization=nf4 trainer.max_steps=50   # QLoRA on tiny Llama
python train.py -m base_model=tiny_gptneox,tiny_llama quantization=none,nf4   # 4 runs
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from medtune.cli import quiet_known_warnings
from medtune.config import TrainConfig, register_configs, to_plain_dict, to_train_config
from medtune.run_dir import previous_run
from medtune.sweep import done_elsewhere

register_configs()
quiet_known_warnings()  # before transformers/peft/bitsandbytes load (inside main)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
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
    from medtune.tiny import ensure_tiny_model
    from medtune.training import run

    ensure_tiny_model(config.base_model, config.cache_dir)  # a tiny base is built on first use
    return run(config, output_dir)


if __name__ == "__main__":
    main()
