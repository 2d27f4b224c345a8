"""Generate instruction records (question/answer pairs) from medical text through an OpenAI-compatible API.

python generate_data.py source.paths=[journals/jcs.txt] dry_run=true   # chunks, requests, token and cost estimate
python generate_data.py source.paths=[journals/jcs.txt] generator=local generator.model=qwen2.5:14b  # a local server
python generate_data.py source.paths=[journals/jcs.txt] output_dir=outputs/jcs  # OpenAI; rerun the same line to resume
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from medtune.datagen.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="generate_data")
def main(cfg: DictConfig) -> None:
    from medtune.cli import run_job
    from medtune.datagen.pipeline import run

    run_job(lambda: run(cfg, HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
