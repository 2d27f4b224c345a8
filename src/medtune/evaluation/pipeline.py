"""The one evaluation pipeline, for every backend: load the suite → prompt → answer → score → write; and
evaluate.py's run around it (status file, W&B run, the model or server to ask)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medtune.config import EvalConfig, to_plain_dict
from medtune.console import evaluation_summary
from medtune.evaluation.answer import Answerer
from medtune.evaluation.config import EvaluateConfig, OpenAIConfig, to_evaluate_config
from medtune.evaluation.prompts import build_prompts
from medtune.evaluation.scoring import finish_evaluation
from medtune.evaluation.tracking import log_eval_to_wandb, log_failure, start_eval_run
from medtune.preemption import preemptible
from medtune.qa_data import Question, load_questions
from medtune.run_dir import PREDICTIONS_FILE, RESOLVED_CONFIG, claimed, lifecycle
from medtune.tracking import wandb_locations

log = logging.getLogger(__package__)  # the package's one logger: console lines read [medtune.evaluation]


def evaluate(
    backend: Answerer, eval_cfg: EvalConfig, output_dir: str | Path, questions: list[Question] | None = None
) -> dict[str, float]:
    """Score a backend on the suite (`questions`: the suite when the caller has already loaded it); writes
    metrics.json and predictions.jsonl into output_dir.

    Raises ApiFailed when more than the backend's max_failed_share of the questions have no answer.
    """
    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    questions = load_questions(eval_cfg) if questions is None else questions
    prompts = build_prompts(questions, eval_cfg, backend.chat_format)
    answers = backend.answer(questions, prompts)
    seconds = time.perf_counter() - start
    metrics = finish_evaluation(questions, prompts, answers, output_dir, seconds, backend.max_failed_share)
    log.info("QA accuracy %.3f on %d questions (%d failed)", metrics["accuracy"], len(questions), metrics["n_failed"])
    return metrics


def evaluate_model(
    model: Any, tokenizer: Any, eval_cfg: EvalConfig, output_dir: str | Path, template_kwargs: dict | None = None
) -> dict[str, float]:
    """Score a local model (train.py's scoring during and after training, evaluate.py backend=local);
    `template_kwargs`: the chat template's variables (base_model.chat_template_kwargs)."""
    from medtune.evaluation.local import LocalBackend  # torch: imported only once a model is to be scored

    return evaluate(LocalBackend(model, tokenizer, eval_cfg, template_kwargs), eval_cfg, output_dir)


def evaluate_openai(
    openai_cfg: OpenAIConfig, eval_cfg: EvalConfig, output_dir: str | Path, progress: bool = False
) -> dict[str, float]:
    """Score an API model; answers already in output_dir/api_answers.jsonl are reused, not paid for again.

    Raises ApiStopped when the server cannot serve the run, ApiFailed when too many questions failed.
    """
    from medtune.evaluation.api import ApiBackend  # openai: imported only once a server is to be asked

    return evaluate(ApiBackend(openai_cfg, Path(output_dir), progress), eval_cfg, output_dir)


def run(cfg: DictConfig | EvaluateConfig, output_dir: str | Path) -> dict[str, float]:
    """evaluate.py: score a trained run, a base model or an API model, tracked in its own W&B run.

    run_status.json says failed, and the W&B run exits 1, when the run stopped or too many questions failed.
    """
    typed = to_evaluate_config(cfg)
    output_dir = Path(output_dir)
    questions = load_questions(typed.eval)  # a bad data file fails here, before any weights load or W&B run starts
    with claimed(output_dir):  # a second evaluate.py on the same dir would ask (and pay for) the same questions
        # The config as evaluated (a model folder named after itself, see as_model_folder): the report reads it.
        OmegaConf.save(OmegaConf.create(to_plain_dict(typed)), output_dir / RESOLVED_CONFIG)
        return _evaluate_claimed(typed, output_dir, questions)


def _evaluate_claimed(typed: EvaluateConfig, output_dir: Path, questions: list[Question]) -> dict[str, float]:
    with preemptible(), lifecycle(output_dir):  # SIGTERM: preempted; resume= asks only what has no answer
        run_ = start_eval_run(typed, output_dir)
        wandb_where = wandb_locations(run_)
        try:
            metrics = evaluate(_backend(typed, output_dir, run_), typed.eval, output_dir, questions)
            if run_ is not None:
                log_eval_to_wandb(run_, typed.eval.suite, metrics, output_dir / PREDICTIONS_FILE)
                run_.finish(exit_code=0)
        except BaseException:
            if run_ is not None:
                log_failure(run_, typed.eval.suite, output_dir)
                run_.finish(exit_code=1)
            raise
    print(evaluation_summary(metrics, output_dir, typed.eval.suite, wandb_where), flush=True)
    return metrics


def _backend(cfg: EvaluateConfig, output_dir: Path, run_: Any) -> Answerer:
    """The server to ask, or the local model loaded (a trained run's base + adapter, or an untuned base)."""
    if cfg.backend == "openai":
        from medtune.evaluation.api import ApiBackend

        return ApiBackend(cfg.openai, output_dir, cfg.progress)
    from medtune.evaluation.local import LocalBackend
    from medtune.models import load_base_model, load_trained

    if cfg.run_dir is None:
        chat_key = "eval.chat_template=true" if cfg.eval.chat_template else None
        model, tokenizer = load_base_model(cfg.base_model, cfg.quantization, chat_key=chat_key)
        return LocalBackend(model, tokenizer, cfg.eval, cfg.base_model.chat_template_kwargs)
    from medtune.lineage import use_trained_model

    model, tokenizer, trained = load_trained(cfg.run_dir)
    log.info("evaluating %s + %s from %s", trained.base_model.name, trained.adapter.method, cfg.run_dir)
    if run_ is not None:
        use_trained_model(run_, Path(cfg.run_dir))  # the W&B graph links this score to the adapter it scored
    return LocalBackend(model, tokenizer, as_trained(cfg.eval, trained.eval), trained.base_model.chat_template_kwargs)


def as_trained(eval_cfg: EvalConfig, trained: EvalConfig) -> EvalConfig:
    """A trained run is asked in the format it was trained in (its chat template and system prompt) unless
    evaluate.py's eval.chat_template / eval.system_prompt say otherwise."""
    chat = trained.chat_template if eval_cfg.chat_template is None else eval_cfg.chat_template
    return replace(eval_cfg, chat_template=chat, system_prompt=eval_cfg.system_prompt or trained.system_prompt)
