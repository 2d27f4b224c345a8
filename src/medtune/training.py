"""One training run, top to bottom: check inputs → load base → score base → tune → score tuned → save.

Everything a run writes lands in its run dir:
    resolved_config.yaml   the config that produced it (evaluate.py and the report read it)
    run_status.json        the run's state (medtune.run_dir.RunState), so a crash never looks finished
    checkpoints/           Trainer checkpoints; `resume=<run dir>` continues from the last one
    model/                 the adapter (safetensors) or full weights, plus the tokenizer; medtune_adapter.json
                           names an adapter's method
    adapter_init/          PiSSA/OLoRA only: the adapter before step 1 (model/ is saved as a plain LoRA from it)
    eva_state.pt           EVA only: the SVD of the layers' inputs (computed once; a resume reads it)
    eval/base, eval/tuned  QA metrics.json + predictions.jsonl
    results.json           the final figures (same keys as the W&B summary), written when the work is done
    metrics.jsonl          every figure logged to W&B, one flushed line per log call (survives kill -9)
    train.log              the job log, including every logging step's figures
    wandb/                 the W&B run files (offline by default; WANDB_DIR elsewhere)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from accelerate import PartialState
from omegaconf import DictConfig, OmegaConf
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import (
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from medtune.adapters import AdapterTrainer, prepare_adapter, save_trained
from medtune.config import (
    EvalMode,
    TrainConfig,
    WandbMode,
    to_plain_dict,
    to_train_config,
    tuning_method,
)
from medtune.console import bar
from medtune.data import Splits, build_datasets, collator_for, load_splits
from medtune.enums import AdapterMethod, QuantMode, Stage
from medtune.errors import ConfigError
from medtune.lineage import (
    MODEL_ARTIFACT_KEY,
    RESULTS_ARTIFACT_KEY,
    log_trained_model,
    results_artifact,
    use_training_inputs,
)
from medtune.metric_keys import (
    BASE_PREFIX,
    EVAL_LOSS,
    TRAIN_GLOBAL_STEP,
    TRAIN_LOSS,
    TRAIN_LOSS_RUN_MEAN,
    TRAIN_RUNTIME_S,
    TRAIN_TOKENS_PER_S,
    TRAIN_TOKENS_SEEN,
    qa_key,
)
from medtune.models import attach_adapter, chat_key, count_parameters, load_base_model
from medtune.packing import PackingChoice, choose_packing, model_reads_position_ids
from medtune.preemption import StopRequest, preemptible
from medtune.qa_data import load_questions
from medtune.run_dir import (
    BASE_EVAL_SUBDIR,
    CHECKPOINT_SUBDIR,
    MODEL_SUBDIR,
    PREDICTIONS_FILE,
    RESOLVED_CONFIG,
    RESULTS_FILE,
    STEP_EVAL_SUBDIR,
    TUNED_EVAL_SUBDIR,
    Preempted,
    Pruned,
    RunState,
    claimed,
    lifecycle,
    previous_run,
    write_json,
)
from medtune.tracking import define_training_axes, memory_metrics, metric_name, start_wandb_run, wandb_locations
from medtune.training_args import training_arguments

log = logging.getLogger(__name__)
steps_log = logging.getLogger("medtune.steps")  # every logging step's figures: job log file only, not the console

STEP_METRICS = ("accuracy", "official_accuracy")  # logged by the in-training (loglik) QA evaluation


def run(cfg: DictConfig | TrainConfig, output_dir: str | Path, splits: Splits | None = None) -> dict[str, Any]:
    """Train and evaluate as configured; returns (and writes) results.json's content. `splits`: the run's data,
    when the caller has loaded it already (train.py does, before importing torch, so bad data fails in seconds).

    Under `accelerate launch` every process trains, but only the main one writes files, tracks in W&B
    and scores QA (all of them must be given the same run dir: pass hydra.run.dir=...).
    """
    tc = to_train_config(cfg)
    out = Path(output_dir)
    main = PartialState().is_main_process
    plain_config = to_plain_dict(tc)
    if tc.resume and not (out / RESOLVED_CONFIG).exists():
        raise ConfigError(f"resume={out} is not a medtune run dir ({RESOLVED_CONFIG} is missing).")
    check_gpu_memory(tc, _cuda_memory_gb())  # a preset too big for this GPU stops before any weights load
    if not main:
        splits = splits or load_splits(tc.dataset, tc.stage, tc.trainer.seed)
        return _run_tracked(tc, plain_config, splits, out, main, None)
    with claimed(out):
        done = previous_run(out, plain_config)
        if done is not None:
            return done
        splits = splits or load_splits(tc.dataset, tc.stage, tc.trainer.seed)  # bad data stops here, before weights
        if tc.stage == Stage.sft and (tc.eval.at_end or tc.eval.every_steps):
            load_questions(tc.eval)  # so does a missing or empty evaluation set (reading it takes milliseconds)
        with preemptible() as stop, lifecycle(out):  # results.json is written before "finished"
            OmegaConf.save(OmegaConf.create(plain_config), out / RESOLVED_CONFIG)
            return _run_tracked(tc, plain_config, splits, out, main, stop)


def check_gpu_memory(tc: TrainConfig, device_gb: float | None) -> None:
    """A preset that cannot fit the GPU stops before any weights load, with what would make it fit."""
    need = tc.gpu_memory.needed_gb(tc.trainer.batch_size)
    if device_gb is None or not tc.gpu_memory.floor_gb or need <= device_gb:
        return
    stated = (
        f"experiment '{tc.experiment_name}' needs about {need:.1f} GB of GPU memory at trainer.batch_size="
        f"{tc.trainer.batch_size} (gpu_memory: {tc.gpu_memory.floor_gb} GB weights and optimizer state + "
        f"activations); this GPU has {device_gb:.1f} GB"
    )
    fitting = [b for b in range(tc.trainer.batch_size, 0, -1) if tc.gpu_memory.needed_gb(b) <= device_gb]
    if not fitting:
        raise ConfigError(f"{stated}: it does not fit even at trainer.batch_size=1; use a larger GPU")
    fits = fitting[0]
    accum = -(-tc.trainer.batch_size * tc.trainer.grad_accum // fits)
    raise ConfigError(
        f"{stated}: use trainer.batch_size={fits} trainer.grad_accum={accum} (about the same examples per step)"
    )


def _cuda_memory_gb() -> float | None:
    """Total memory of this process's CUDA device in GB (1e9 bytes, as the presets state it); None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 1e9


def _run_tracked(
    tc: TrainConfig, plain_config: dict[str, Any], splits: Splits, out: Path, main: bool, stop: StopRequest | None
) -> dict[str, Any]:
    # an unloadable id, or a tokenizer without the chat template asked for, stops before W&B starts
    model, tokenizer = load_base_model(tc.base_model, tc.quantization, chat_key=chat_key(tc))
    kwargs = tc.base_model.chat_template_kwargs
    train_set, heldout_set = build_datasets(splits, tokenizer, tc.dataset, tc.stage, kwargs)
    method, tuning = tc.adapter.method, tuning_method(tc.adapter.method, tc.quantization.mode)
    coordinates = {"tuning": tuning, "seed": tc.trainer.seed, "max_steps": tc.trainer.max_steps}
    run = start_wandb_run(
        tc.wandb if main else replace(tc.wandb, mode=WandbMode.disabled),
        out,
        plain_config | coordinates,  # the matrix axes as top-level keys (base_model.name is already one)
        tags=list(
            dict.fromkeys(
                [tc.base_model.name, tuning, method, f"quant-{tc.quantization.mode}", tc.experiment_name, tc.stage]
                + ([f"trial-{tc.search.trial}"] if tc.search.study else [])
            )
        ),
        group=tc.experiment_name,
        name=f"{tc.base_model.name}-{tuning}-{tc.trainer.max_steps}-seed{tc.trainer.seed}",
        job_type=tc.stage,
    )
    define_training_axes(run)
    results: dict[str, Any] = {"status": RunState.finished, "run_dir": str(out), "wandb_run_id": run.id}
    results |= wandb_locations(run)
    try:
        use_training_inputs(run, tc)
        scores_qa = main and tc.stage == Stage.sft and tc.eval.at_end
        if scores_qa:
            results |= _evaluate_qa(model, tokenizer, tc, out / BASE_EVAL_SUBDIR, run, prefix=BASE_PREFIX, step=0)
        # Seeded here, right before the first draw (the adapter's initialisation), so nothing that ran before it
        # (a first-use tiny-model build, the base scoring) shifts the random streams of one run against another.
        set_seed(tc.trainer.seed, deterministic=tc.trainer.deterministic)
        if method == AdapterMethod.none:
            model.requires_grad_(False)
        else:
            model = attach_adapter(model, tc.adapter, tc.quantization.mode != QuantMode.none)
        trainable, total = count_parameters(model)
        results |= {
            "params/trainable": trainable,
            "params/total": total,
            "params/trainable_pct": 100 * trainable / total,
        }
        packing = _choose_packing(tc, model, run)
        results |= {"packing": str(packing.strategy), "packing_reason": packing.reason}
        trainer = _build_trainer(tc, model, tokenizer, train_set, heldout_set, out, run, stop, packing)
        if method != AdapterMethod.none:
            prepare_adapter(trainer.model, tc.adapter, trainer.get_train_dataloader, out, main)
            results |= _train(trainer, out)
            if stop is not None and stop.signum is not None:
                raise stop.preempted(f"stopped at step {trainer.state.global_step}; checkpoint saved")
            _stop_if_pruned(trainer)
            save_trained(trainer, tc.adapter, tc.quantization.mode, out / MODEL_SUBDIR, out)  # main process only
            if main:
                tokenizer.save_pretrained(str(out / MODEL_SUBDIR))
        if heldout_set is not None:
            results[EVAL_LOSS] = trainer.evaluate()["eval_loss"]
        if scores_qa:
            if method == AdapterMethod.none:  # the untuned base is the model: reuse its scores
                results |= {
                    key.replace(f"/{BASE_PREFIX}", "/"): value
                    for key, value in list(results.items())
                    if f"/{BASE_PREFIX}" in key
                }
            else:
                step = trainer.state.global_step
                results |= _evaluate_qa(
                    trainer.model, tokenizer, tc, out / TUNED_EVAL_SUBDIR, run, prefix="", step=step
                )
        results |= memory_metrics()
        results["objective"] = results.get(qa_key(tc.eval.suite, "accuracy"), results.get(EVAL_LOSS))
        if main:
            _record_outputs(run, tc, out, results)
        run.summary.update({k: v for k, v in results.items() if isinstance(v, int | float)})
        run.finish(exit_code=0)
    except Preempted:
        run.mark_preempting()  # W&B shows the run preempted, and the resumed process continues it
        run.finish(exit_code=1)
        raise
    except Pruned:
        run.run.tags = (*run.run.tags, str(RunState.pruned))
        run.finish(exit_code=0)  # stopped on purpose: not a crashed run in W&B
        raise
    except BaseException:
        run.finish(exit_code=1)  # marked failed in W&B; a multirun's next job gets a fresh run
        raise
    return results


def _record_outputs(run: Any, tc: TrainConfig, out: Path, results: dict[str, Any]) -> None:
    """The model artifact, then results.json (which names it and the results artifact), then the results artifact
    that holds results.json."""
    if (out / MODEL_SUBDIR).is_dir():
        results[MODEL_ARTIFACT_KEY] = log_trained_model(run, tc, out, results)
    if not run.disabled:
        results[RESULTS_ARTIFACT_KEY] = f"results-{run.id}"
    write_json(out / RESULTS_FILE, results)
    if not run.disabled:
        run.log_artifact(results_artifact(out, run.id))


def _evaluate_qa(model: Any, tokenizer: Any, tc: TrainConfig, eval_dir: Path, run: Any, prefix: str, step: int) -> dict:
    from medtune.evaluation.pipeline import evaluate_model
    from medtune.evaluation.tracking import log_eval_to_wandb

    metrics = evaluate_model(model, tokenizer, tc.eval, eval_dir, tc.base_model.chat_template_kwargs)
    log_eval_to_wandb(run, tc.eval.suite, metrics, eval_dir / PREDICTIONS_FILE, prefix=prefix, step=step)
    return {qa_key(tc.eval.suite, key, prefix): value for key, value in metrics.items()}


def _stop_if_pruned(trainer: Trainer) -> None:
    """A search trial its pruner stopped ends here, its checkpoint saved, before the final scoring."""
    for callback in trainer.callback_handler.callbacks:
        if getattr(callback, "pruned_at", None) is not None:  # medtune.search.pruning.PruningCallback
            raise Pruned(callback.message())  # type: ignore[attr-defined]


def _choose_packing(tc: TrainConfig, model: Any, run: Any) -> PackingChoice:
    """How this run lays out its batches, said in one console line and kept in the W&B config."""
    attn = tc.base_model.attn_implementation
    device = next(model.parameters()).device.type
    packing = choose_packing(tc.dataset.packing, attn, tc.stage, model_reads_position_ids(model), device)
    log.info(packing.line(tc.dataset.packing))
    run.config.update({"packing_strategy": str(packing.strategy)}, allow_val_change=True)
    return packing


def _build_trainer(
    tc: TrainConfig,
    model: PreTrainedModel,
    tokenizer: Any,
    train_set: Any,
    heldout_set: Any,
    out: Path,
    run: Any,
    stop: StopRequest | None,
    packing: PackingChoice,
) -> Trainer:
    search_callbacks: list[TrainerCallback] = []
    listeners: list[Callable] = []
    if tc.search.report:  # a search trial its pruner watches (medtune.search; optuna is imported only then)
        from medtune.search.pruning import PruningCallback

        pruning = PruningCallback(tc.search)
        search_callbacks, listeners = [pruning], [pruning.observe]
    qa_callbacks = (
        [QAEvalCallback(tc, tokenizer, out, run, listeners)]
        if tc.eval.every_steps > 0 and tc.stage == Stage.sft
        else []
    )
    stop_callbacks = [StopOnSignal(stop)] if stop is not None else []
    if hasattr(model, "config"):
        model.config.use_cache = False  # the KV cache is useless in training and would disable packed masks
    args = training_arguments(tc, out / CHECKPOINT_SUBDIR, evaluates=heldout_set is not None)
    trainer = AdapterTrainer(  # the Trainer, with LoRA+'s optimizer for adapter=loraplus
        model=model,
        adapter=tc.adapter,
        args=args,
        train_dataset=train_set,
        eval_dataset=heldout_set,
        data_collator=collator_for(tokenizer, packing, model),
        processing_class=tokenizer,
        callbacks=[WandbMetricsCallback(run), TrainingProgress(), *qa_callbacks, *stop_callbacks, *search_callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # its raw dict per log step; the bar and metrics.jsonl replace it
    return trainer


class WandbMetricsCallback(TrainerCallback):
    """Logs Trainer logs under medtune's names, plus tokens/s and memory, at each logging step."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self._mark: tuple[float, int] = (time.perf_counter(), 0)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._mark = (time.perf_counter(), state.num_input_tokens_seen)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        metrics = {metric_name(key): value for key, value in logs.items() if isinstance(value, int | float)}
        if "loss" in logs:
            now, tokens = time.perf_counter(), state.num_input_tokens_seen
            then, tokens_before = self._mark
            metrics["perf/tokens_per_s"] = (tokens - tokens_before) / max(now - then, 1e-9)
            self._mark = (now, tokens)
            metrics.update(memory_metrics())
        self.run.log(metrics, step=state.global_step)
        steps_log.info("step %d %s", state.global_step, json.dumps(metrics))  # the job log file (hydra/default)


class TrainingProgress(TrainerCallback):
    """One training bar: steps, rate and ETA, with the latest loss, learning rate and tokens/s as its postfix.

    Replaces the Trainer's PrinterCallback (its raw dict per log step); the figures go to metrics.jsonl and the
    job log instead (WandbMetricsCallback).
    """

    def __init__(self) -> None:
        self.bar: Any = None  # a tqdm bar on the main process
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = bar(state.max_steps, "train", "step", initial=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        shown = {"loss": "loss", "learning_rate": "lr", "train_tokens_per_second": "tok/s", "eval_loss": "eval_loss"}
        self.postfix |= {short: _short(logs[key]) for key, short in shown.items() if key in logs}
        self.bar.set_postfix(self.postfix, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class QAEvalCallback(TrainerCallback):
    """Cheap QA accuracy during training: log-likelihood scoring every `eval.every_steps` steps."""

    def __init__(
        self, tc: TrainConfig, tokenizer: Any, out: Path, run: Any, listeners: list[Callable] | None = None
    ) -> None:
        self.eval_cfg = replace(tc.eval, mode=EvalMode.loglik)
        self.template_kwargs = tc.base_model.chat_template_kwargs
        self.tokenizer, self.out, self.run = tokenizer, out, run
        self.listeners = listeners or []  # called with (step, the figures logged), e.g. a search's pruner

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.eval_cfg.every_steps or not state.is_world_process_zero:
            return
        from medtune.evaluation.pipeline import evaluate_model

        step_dir = self.out / STEP_EVAL_SUBDIR / f"step-{state.global_step}"
        metrics = evaluate_model(model, self.tokenizer, self.eval_cfg, step_dir, self.template_kwargs)
        suite = self.eval_cfg.suite
        figures = {qa_key(suite, name): metrics[name] for name in STEP_METRICS}
        self.run.log(figures, step=state.global_step)
        for listen in self.listeners:
            listen(state.global_step, figures)


def _train(trainer: Trainer, out: Path) -> dict[str, float]:
    """Train (from the last checkpoint, if any); tokens/s counts this process's tokens over this process's time, so
    a resumed run does not credit the tokens trained before the kill to the time since the restart."""
    checkpoint = last_complete_checkpoint(out / CHECKPOINT_SUBDIR)
    tokens_before = 0
    if checkpoint:
        log.info("resuming from %s", checkpoint)
        tokens_before = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME)).num_input_tokens_seen
    started = time.perf_counter()
    with logging_redirect_tqdm():  # log lines print above the progress bar, not through it
        output = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started
    state = trainer.state
    step_losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    return {
        TRAIN_LOSS: step_losses[-1] if step_losses else output.training_loss,  # the last logged step's loss
        TRAIN_LOSS_RUN_MEAN: output.training_loss,  # the Trainer's average over the whole run
        TRAIN_GLOBAL_STEP: state.global_step,
        TRAIN_TOKENS_SEEN: state.num_input_tokens_seen,
        TRAIN_RUNTIME_S: seconds,
        TRAIN_TOKENS_PER_S: (state.num_input_tokens_seen - tokens_before) / seconds,
    }


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint whose save finished: the Trainer writes trainer_state.json last, so a run killed
    while saving leaves a newer but incomplete directory behind, which must be skipped."""
    if not checkpoints.is_dir():
        return None
    complete = [p for p in checkpoints.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if (p / TRAINER_STATE_NAME).is_file()]
    return str(max(complete, key=lambda p: int(p.name.rsplit("-", 1)[1]))) if complete else None


class StopOnSignal(TrainerCallback):
    """Finish the optimizer step in progress, save a checkpoint, and stop training when a stop signal came."""

    def __init__(self, request: StopRequest) -> None:
        self.request = request

    def on_train_begin(self, args, state, control, **kwargs):
        self.request.deferred = True
        if self.request.signum is not None:  # a signal during start-up: stop before the first step
            control.should_training_stop = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.request.signum is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.request.deferred = False
