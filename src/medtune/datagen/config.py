"""Typed schema of generate_data.py's config, registered in Hydra's ConfigStore as `generate_data_schema`.

Hydra checks every key and type at composition; `validate()` checks values before any file is read
or any call is made. Code below the entry script receives a `GenerateConfig`, never a DictConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from omegaconf import MISSING, DictConfig

from medtune.api_client import TEMPERATURE, TOP_P, ApiConfig
from medtune.config import EvalConfig, EvalSource, WandbConfig, register_resolvers, store_once, to_typed
from medtune.errors import ConfigError
from medtune.ranges import AT_LEAST_1, POSITIVE, UNIT, ranged


class ChunkMethod(StrEnum):
    lines = "lines"  # the study: fixed line counts
    sentences = "sentences"  # whole sentences packed to max_chars


@dataclass
class SourceConfig:
    paths: list[str] = MISSING  # UTF-8 text files (journal articles, guidelines, ...)
    encoding: str = "utf-8"


@dataclass
class ChunkingConfig:
    method: ChunkMethod = ChunkMethod.lines
    lines_per_chunk: int = 10  # method=lines
    max_chars: int = 1200  # method=sentences: characters per chunk; a longer sentence stays whole
    min_chars: int = 40  # shorter chunks (headings, page numbers) are skipped, never sent


@dataclass
class PromptConfig:
    # A text file with {passage} and optionally {n_pairs}; null: the bundled Japanese prompt
    # (src/medtune/assets/datagen_prompt_ja.txt, the study's prompt in our words).
    template_path: str | None = None
    pairs_per_chunk: int = 15  # the study asked for 15 pairs per chunk


@dataclass
class PricingConfig:
    # USD per 1M tokens (defaults: gpt-4o-mini list prices); 0 for a local server.
    input_per_1m: float = 0.15
    output_per_1m: float = 0.60
    # dry_run estimates without a tokenizer: tokens ≈ characters × this (Japanese: ~1 per character)
    tokens_per_char: float = 1.0
    reply_tokens_per_pair: int = 100  # dry_run: expected reply tokens per requested pair
    # generator.batch=true: the Batch API bills this share of the prices above (OpenAI: half, for every model)
    batch_price_share: float = ranged(0.5, UNIT)


@dataclass
class GeneratorConfig(ApiConfig):
    """The server and model (fields shared with evaluate.py in medtune.api_client.ApiConfig) and sampling."""

    model: str = MISSING  # generator=openai: gpt-4o-mini; generator=local: the name your server serves
    temperature: float | None = ranged(0.7, TEMPERATURE)
    top_p: float | None = ranged(1.0, TOP_P)
    max_tokens: int = ranged(4096, AT_LEAST_1)  # per reply; 15 pairs need ~1500-3000 tokens of Japanese
    # true: send the requests as OpenAI Batch API jobs (/v1/files + /v1/batches): half price, answered within 24 h
    # (medtune.datagen.batch); a rerun of the same command reattaches to its batch instead of paying again
    batch: bool = False
    batch_poll_s: float = ranged(30.0, POSITIVE)  # seconds between two status checks of a batch
    pricing: PricingConfig = field(default_factory=PricingConfig)  # the model's prices


@dataclass
class FilterConfig:
    min_instruction_chars: int = 5
    max_instruction_chars: int = 400
    min_output_chars: int = 1
    max_output_chars: int = 1500
    min_japanese_ratio: float = 0.5  # kana/kanji share of the letters in instruction + output
    # A question containing one of these leans on a passage the trained model never sees.
    passage_markers: list[str] = field(
        default_factory=lambda: [
            "本文",
            "この文章",
            "上記",
            "上述",
            "以下の文",
            "この論文",
            "本論文",
            "本稿",
            "本研究",
            "この研究",
            "文中",
            "この記事",
            "筆者",
            "著者ら",
            "the passage",
            "the text",
        ]
    )


@dataclass
class DedupConfig:
    ngram: int = 3  # character n-grams: Japanese has no spaces, so words are the wrong unit
    near_threshold: float = 0.8  # Jaccard of character n-grams of instruction + output; 1.0 = exact only


@dataclass
class DecontaminationConfig:
    # Evaluation suites (same fields as train.py's eval group) whose questions must not leak.
    eval_sets: list[EvalConfig] = field(default_factory=lambda: [EvalConfig(suite="demo", source=EvalSource.demo)])
    threshold: float = 0.5  # Jaccard of character n-grams, record instruction vs question text
    shared_chars: int = 30  # also flag a verbatim run of this many characters shared with a question
    remove: bool = True  # false: keep flagged records, still list the matches in the manifest


@dataclass
class GenerateConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    output_dir: str | None = None  # null: the Hydra run dir; an existing dir resumes it
    dry_run: bool = False  # chunk and estimate requests, tokens and cost; no calls
    reparse: bool = False  # rebuild records from the raw log in output_dir; no calls
    progress: bool = True  # tqdm bar on stderr


def _positive(value: float, key: str) -> None:
    if value <= 0:
        raise ConfigError(f"{key} must be positive (got {value}).")


def _fraction(value: float, key: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key} must be in [0, 1] (got {value}).")


def validate(cfg: GenerateConfig) -> None:
    """Reject values that cannot work, before any file is read or any call is made."""
    if not cfg.source.paths and not cfg.reparse:
        raise ConfigError("source.paths is empty: pass source.paths=[file.txt,...].")
    if cfg.dry_run and cfg.reparse:
        raise ConfigError("dry_run=true and reparse=true exclude each other: a reparse makes no calls anyway.")
    if cfg.reparse and not cfg.output_dir:
        raise ConfigError("reparse=true rebuilds an earlier run: pass output_dir=<that run's dir>.")
    for key, value in (
        ("chunking.lines_per_chunk", cfg.chunking.lines_per_chunk),
        ("chunking.max_chars", cfg.chunking.max_chars),
        ("prompt.pairs_per_chunk", cfg.prompt.pairs_per_chunk),
        ("dedup.ngram", cfg.dedup.ngram),
        ("decontamination.shared_chars", cfg.decontamination.shared_chars),
    ):
        _positive(value, key)
    _fraction(cfg.dedup.near_threshold, "dedup.near_threshold")
    _fraction(cfg.decontamination.threshold, "decontamination.threshold")
    _fraction(cfg.filters.min_japanese_ratio, "filters.min_japanese_ratio")


def to_generate_config(cfg: DictConfig | GenerateConfig) -> GenerateConfig:
    return to_typed(cfg, GenerateConfig, validate)


def register_configs() -> None:
    """Register the schema; conf/generate_data.yaml names it first in its defaults list."""
    register_resolvers()
    store_once("generate_data_schema", GenerateConfig)
