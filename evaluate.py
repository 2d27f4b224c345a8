"""Score a model on Japanese medical QA (paper metrics + IgakuQA's official scoring), tracked in W&B.

python evaluate.py run_dir=outputs/2026-01-01/12-00-00-000000                   # a trained run (base + adapter)
python evaluate.py base_model=opencalm_7b eval=igakuqa eval.path=/data/IgakuQA   # an untuned base
python evaluate.py backend=openai openai.model=gpt-4o eval=igakuqa eval.path=/data/IgakuQA   # an API model
python evaluate.py -m backend=openai openai.model=gpt-4o,gpt-4o-mini   # a failed job is recorded, the others go on
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from medtune.cli import quiet_known_warnings
from medtune.evaluation.config import Backend, register_configs, to_evaluate_config

register_configs()
quiet_known_warnings()  # before transformers/peft/bitsandbytes load (inside main)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    from medtune.cli import run_job

    def job() -> dict[str, float]:
        config = to_evaluate_config(cfg)  # config mistakes show here, before torch is imported
        from medtune.evaluation.pipeline import run

        if config.backend == Backend.local:
            from medtune.models import load_run_config
            from medtune.tiny import ensure_tiny_model

            source = load_run_config(Path(config.run_dir)) if config.run_dir else config  # a trained run: its base
            ensure_tiny_model(source.base_model, source.cache_dir)  # a tiny base is built on first use
        return run(config, HydraConfig.get().runtime.output_dir)

    metrics = run_job(job)
    return metrics["accuracy"] if metrics else None


if __name__ == "__main__":
    main()
