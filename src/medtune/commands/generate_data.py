"""`medtune generate-data` and generate_data.py: instruction records from medical text through an OpenAI-compatible API.

The module is named generate_data so that Hydra names the job (and its log file) as it did for generate_data.py.
"""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from medtune.commands.hydra_entry import hydra_main
from medtune.datagen.config import register_configs

register_configs()


@hydra_main("generate_data")
def main(cfg: DictConfig) -> None:
    from medtune.cli import run_job
    from medtune.datagen.pipeline import run

    run_job(lambda: run(cfg, HydraConfig.get().runtime.output_dir))
