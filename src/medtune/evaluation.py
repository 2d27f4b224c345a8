"""QA evaluation of local models (generate or log-likelihood) and API models, scored by medtune.metrics.

Two prompt styles (`eval.prompt`):
- `jmedlora`: the paper's Japanese instruction/input/response template (the `alpaca_ja` template
  training uses, so a tuned model is asked in the format it learned), 0/1-shot, answer = choice text;
- `igakuqa`: the benchmark's own style: choices labelled a, b, c, ..., answer = letters, k-shot.

Two local modes (`eval.mode`):
- `generate`: greedy decoding, batched with left padding and the KV cache, stopped at the first
  newline; the response is mapped to letters and choice texts (medtune.metrics.interpret);
- `loglik`: each choice's summed log-probability given the prompt, the prompt encoded once per
  question and its KV cache shared by all choices; the k best choices answer a k-answer question.
  Calculation questions (no choices) fall back to generation.

The API backend asks any OpenAI-compatible server with the official async client (its own retries
with backoff, a concurrency limit), appends every answer to `api_answers.jsonl` as it arrives, and on
a re-run in the same directory pays only for questions without an answer yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from medtune.config import (
    EVAL_MODES,
    EVAL_PROMPTS,
    AdapterConfig,
    BaseModelConfig,
    EvalConfig,
    QuantizationConfig,
    WandbConfig,
    check_wandb,
    to_plain_dict,
    to_typed,
)
from medtune.console import bar
from medtune.errors import ConfigError
from medtune.metrics import (
    ANSWER_SEPARATOR,
    Interpretation,
    QuestionScore,
    aggregate,
    score_interpretation,
    score_question,
)
from medtune.prompts import get_template
from medtune.qa_data import Question, check_source, load_questions

log = logging.getLogger(__name__)

BACKENDS = ("local", "openai")
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
API_ANSWERS_FILE = "api_answers.jsonl"  # append-only: one line per API answer or failure, for resume
IGAKUQA_SYSTEM = "医師国家試験を解きます。"  # the benchmark's system message
STOP_STRINGS = ["\n"]  # an answer is one line: choice text(s), letters or a number


# --------------------------------------------------------------------------------------------- config
@dataclass
class OpenAIConfig:
    model: str = "gpt-4o"
    base_url: str | None = None  # None: api.openai.com; any OpenAI-compatible server (vLLM, llama.cpp)
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key (never the key itself)
    concurrency: int = 8  # requests in flight at once
    max_retries: int = 5  # the client's retries (429, 5xx, timeouts) with exponential backoff
    timeout_s: float = 60.0  # per request
    temperature: float = 0.0
    max_tokens: int | None = None  # None: the server's default


@dataclass
class EvaluateConfig:
    base_model: BaseModelConfig = field(default_factory=BaseModelConfig)
    adapter: AdapterConfig = field(default_factory=lambda: AdapterConfig(method="none"))
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    backend: str = "local"  # local (transformers) | openai (any OpenAI-compatible API)
    run_dir: str | None = None  # a finished train.py run: its base model + adapter are evaluated
    resume: str | None = None  # a previous evaluate.py run dir: continue there (API answers are reused)
    cache_dir: str = MISSING  # where offline tiny models are built


def register_configs() -> None:
    """Register the evaluate.py schema; conf/evaluate.yaml names it first in its defaults list."""
    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def validate(cfg: EvaluateConfig) -> None:
    """Reject configs that cannot run, before any weights load or any API call."""
    for value, allowed, key in (
        (cfg.backend, BACKENDS, "backend"),
        (cfg.eval.mode, EVAL_MODES, "eval.mode"),
        (cfg.eval.prompt, EVAL_PROMPTS, "eval.prompt"),
    ):
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}.")
    if cfg.backend == "local" and cfg.run_dir is None and cfg.adapter.method != "none":
        raise ConfigError(
            f"adapter={cfg.adapter.method} has no trained weights to evaluate: pass run_dir=<a train.py run dir> "
            "for a tuned model, or adapter=none for the untuned base."
        )
    check_wandb(cfg.wandb)
    check_source(cfg.eval)
    if cfg.eval.shots < 0 or cfg.eval.batch_size < 1:
        raise ConfigError("eval.shots must be >= 0 and eval.batch_size >= 1.")
    if cfg.backend == "openai" and cfg.openai.concurrency < 1:
        raise ConfigError(f"openai.concurrency must be >= 1 (got {cfg.openai.concurrency}).")


def to_evaluate_config(cfg: DictConfig | EvaluateConfig) -> EvaluateConfig:
    return to_typed(cfg, EvaluateConfig, validate)


# -------------------------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Prompt:
    text: str  # for local causal LMs: the whole prompt; the answer continues it directly
    messages: list[dict[str, str]]  # for chat APIs
    continuations: list[str]  # loglik candidates, one per choice (choice texts or letters)


def build_prompts(questions: list[Question], eval_cfg: EvalConfig) -> list[Prompt]:
    """One prompt per question; exemplars come from the suite itself but never are the question asked."""
    pool = [q for q in questions if not q.is_calculation][: eval_cfg.shots + 1]
    build = _jmedlora_prompt if eval_cfg.prompt == "jmedlora" else _igakuqa_prompt
    return [build(q, [e for e in pool if e.problem_id != q.problem_id][: eval_cfg.shots]) for q in questions]


def answer_text(question: Question, prompt_style: str) -> str:
    """The gold answer as the exemplars write it: choice texts (jmedlora) or letters (igakuqa)."""
    gold = sorted(question.gold_sets[0])
    if question.is_calculation:
        return gold[0]
    if prompt_style == "jmedlora":
        return ANSWER_SEPARATOR.join(map(question.choice_text, gold))
    return ",".join(gold)


def _jmedlora_prompt(question: Question, exemplars: list[Question]) -> Prompt:
    shots = "".join(_jmedlora_query(e) + answer_text(e, "jmedlora") + "\n\n" for e in exemplars)
    text = shots + _jmedlora_query(question)
    return Prompt(text, [{"role": "user", "content": text}], list(question.choices))


def _jmedlora_query(question: Question) -> str:
    if question.is_calculation:
        instruction = "次の医学の問題に数値で答えてください。"
        return get_template("alpaca_ja").render(instruction, question.problem_text)
    instruction = (
        f"次の医学の問題について、選択肢の中から正しいものを{question.n_answers}つ選び、"
        "その選択肢をそのまま答えてください。"
    )
    options = "\n".join(f"・{choice}" for choice in question.choices)
    return get_template("alpaca_ja").render(instruction, f"{question.problem_text}\n\n選択肢:\n{options}")


def _igakuqa_prompt(question: Question, exemplars: list[Question]) -> Prompt:
    messages = [{"role": "system", "content": IGAKUQA_SYSTEM}]
    for exemplar in exemplars:
        messages += [
            {"role": "user", "content": _igakuqa_query(exemplar)},
            {"role": "assistant", "content": answer_text(exemplar, "igakuqa")},
        ]
    messages.append({"role": "user", "content": _igakuqa_query(question)})
    turns = [m["content"] + ("\n\n" if m["role"] != "user" else "") for m in messages]
    return Prompt("".join(turns), messages, list(question.labels))


def _igakuqa_query(question: Question) -> str:
    """The benchmark's own wording (scripts/generation/chatgpt.py), letters extended past e when needed."""
    lines = [f"問題: {question.problem_text}"]
    if not question.is_calculation:
        lines += [f"{label}: {choice}" for label, choice in zip(question.labels, question.choices, strict=True)]
        lines.append(f"必ず{','.join(question.labels)}の中からちょうど{question.n_answers}個選んでください。")
    lines.append("答え:")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- local models
@contextmanager
def inference(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the duration; the caller's train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _encode(tokenizer, text: str) -> list[int]:
    # No special tokens: training encodes prompt and response the same way (medtune.data.tokenize_record).
    return tokenizer.encode(text, add_special_tokens=False)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _context_limit(model: torch.nn.Module, reserve: int) -> int | None:
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return limit - reserve if limit else None


def _fit(ids: list[int], limit: int | None) -> list[int]:
    """Keep the end of an over-long prompt (the question and its response header)."""
    return ids[-limit:] if limit and len(ids) > limit else ids


def _pad(rows: Sequence[list[int]], pad_id: int, device: torch.device, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of ragged rows; prompts pad on the left so every prompt ends at the last column."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row)
        mask[i, span] = 1
    return ids.to(device), mask.to(device)


def _batches_by_length(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Indices in batches of similar length (longest first), so little compute goes to padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def generate_responses(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
    """Greedy continuations of each prompt up to its first newline (batched, left-padded, KV-cached)."""
    from transformers import GenerationConfig

    device, pad_id = _device(model), _pad_id(tokenizer)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        stop_strings=STOP_STRINGS,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )
    limit = _context_limit(model, max_new_tokens)
    encoded = [_fit(_encode(tokenizer, p), limit) for p in prompts]
    responses = [""] * len(prompts)
    with bar(len(prompts), "QA generate", "q", leave=False) as progress:
        for batch in _batches_by_length([len(e) for e in encoded], batch_size):
            ids, mask = _pad([encoded[i] for i in batch], pad_id, device, left=True)
            output = model.generate(input_ids=ids, attention_mask=mask, generation_config=config, tokenizer=tokenizer)
            for row, i in enumerate(batch):
                responses[i] = tokenizer.decode(output[row, ids.shape[1] :], skip_special_tokens=True)
            progress.update(len(batch))
    return responses


def loglik_scores(
    model, tokenizer, prompts: list[str], candidates: list[list[str]], batch_size: int, terminator: int | None
) -> list[list[float]]:
    """Summed log-probability of each candidate continuation (plus `terminator`, e.g. EOS) given its prompt."""
    device, pad_id = _device(model), _pad_id(tokenizer)
    conts = [
        [_encode(tokenizer, c) + ([terminator] if terminator is not None else []) for c in cs] for cs in candidates
    ]
    longest = max((len(c) for cs in conts for c in cs), default=1)
    limit = _context_limit(model, longest)
    encoded = [_fit(_encode(tokenizer, p), limit) for p in prompts]
    scores: list[list[float]] = [[] for _ in prompts]
    with bar(len(prompts), "QA loglik", "q", leave=False) as progress:
        for batch in _batches_by_length([len(e) for e in encoded], batch_size):
            batch_scores = _score_batch(model, [encoded[i] for i in batch], [conts[i] for i in batch], pad_id, device)
            for i, row in zip(batch, batch_scores, strict=True):
                scores[i] = row
            progress.update(len(batch))
    return scores


def _score_batch(
    model, prompts: list[list[int]], conts: list[list[list[int]]], pad_id: int, device
) -> list[list[float]]:
    """Score every choice of a batch of prompts: each token is encoded once.

    The prompts' common prefix (template + exemplar) is encoded once, their own tails once per prompt
    (left-padded between prefix and tail), and each prompt's KV cache is copied to its choices, so the
    choices only cost their own tokens.
    """
    prefix_len = _common_prefix_len(prompts)
    cache, mask = None, torch.ones((len(prompts), prefix_len), dtype=torch.long, device=device)
    if prefix_len:
        prefix = torch.tensor([prompts[0][:prefix_len]], device=device)
        cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).cache
        cache.batch_repeat_interleave(len(prompts))
    tails, tail_mask = _pad([p[prefix_len:] for p in prompts], pad_id, device, left=True)
    mask = torch.cat([mask, tail_mask], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # padding takes no position: count real tokens only
    out = model(
        input_ids=tails,
        attention_mask=mask,
        position_ids=positions[:, prefix_len:],
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    first = out.logits[:, -1].float().log_softmax(-1)  # next-token distribution after each prompt
    owner = torch.tensor([q for q, cs in enumerate(conts) for _ in cs], device=device)
    cont_ids, cont_mask = _pad([c for cs in conts for c in cs], pad_id, device, left=False)
    token_logprobs = first[owner].gather(1, cont_ids[:, :1])  # the first continuation token
    if cont_ids.shape[1] > 1:
        cache = out.cache
        cache.batch_select_indices(owner)  # each choice continues its own prompt's cache
        feed = cont_ids[:, :-1]
        rest = model(
            input_ids=feed,
            attention_mask=torch.cat([mask[owner], cont_mask[:, :-1]], dim=1),
            position_ids=positions[owner, -1:] + 1 + torch.arange(feed.shape[1], device=device),
            cache=cache,
            use_cache=True,
        ).logits.float()
        later = rest.log_softmax(-1).gather(2, cont_ids[:, 1:, None]).squeeze(2)
        token_logprobs = torch.cat([token_logprobs, later], dim=1)
    summed = (token_logprobs * cont_mask).sum(dim=1).tolist()
    scores: list[list[float]] = []
    for cs in conts:
        scores.append(summed[: len(cs)])
        summed = summed[len(cs) :]
    return scores


def _common_prefix_len(rows: list[list[int]]) -> int:
    """Tokens shared by the start of every row, leaving each row at least one token of its own."""
    shortest = min(len(row) for row in rows)
    for i in range(shortest - 1):
        if any(row[i] != rows[0][i] for row in rows):
            return i
    return max(shortest - 1, 0)


def top_choices(question: Question, scores: list[float]) -> Interpretation:
    """The n_answers highest-scoring choices as the model's answer."""
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[: question.n_answers]
    letters = tuple(sorted(question.labels[i] for i in ranked))
    return Interpretation(letters, ANSWER_SEPARATOR.join(map(question.choice_text, letters)))


@dataclass
class Answer:
    """One question's outcome before scoring: raw response (None: failed) and, in loglik mode, choice scores."""

    response: str | None
    interpretation: Interpretation | None = None  # set by loglik (no text to parse)
    choice_scores: list[float] | None = None


def answer_locally(
    model, tokenizer, questions: list[Question], prompts: list[Prompt], eval_cfg: EvalConfig
) -> list[Answer]:
    """Answers of a local model in eval.mode; the model's train/eval mode is restored afterwards."""
    answers: list[Answer | None] = [None] * len(questions)
    with inference(model):
        generate_idx = list(range(len(questions)))
        if eval_cfg.mode == "loglik":
            choice_idx = [i for i, q in enumerate(questions) if not q.is_calculation]
            generate_idx = [i for i, q in enumerate(questions) if q.is_calculation]
            terminator = tokenizer.eos_token_id if eval_cfg.prompt == "jmedlora" else None  # trained answers end in EOS
            scores = loglik_scores(
                model,
                tokenizer,
                [prompts[i].text for i in choice_idx],
                [prompts[i].continuations for i in choice_idx],
                eval_cfg.batch_size,
                terminator,
            )
            for i, row in zip(choice_idx, scores, strict=True):
                picked = top_choices(questions[i], row)
                answers[i] = Answer(picked.text, picked, row)
        if generate_idx:
            texts = [prompts[i].text for i in generate_idx]
            responses = generate_responses(model, tokenizer, texts, eval_cfg.batch_size, eval_cfg.max_new_tokens)
            for i, response in zip(generate_idx, responses, strict=True):
                answers[i] = Answer(response)
    return [a for a in answers if a is not None]


def evaluate_model(model, tokenizer, eval_cfg: EvalConfig, output_dir: str | Path) -> dict[str, float]:
    """Score a local model on the suite; writes metrics.json and predictions.jsonl into output_dir."""
    start = time.perf_counter()
    questions = load_questions(eval_cfg)
    prompts = build_prompts(questions, eval_cfg)
    answers = answer_locally(model, tokenizer, questions, prompts, eval_cfg)
    return finish_evaluation(questions, prompts, answers, Path(output_dir), time.perf_counter() - start)


def finish_evaluation(
    questions: list[Question], prompts: list[Prompt], answers: list[Answer], output_dir: Path, seconds: float
) -> dict[str, float]:
    """Score every answer, write predictions.jsonl and metrics.json, return the flat metrics."""
    scores = [_score(q, a) for q, a in zip(questions, answers, strict=True)]
    metrics = aggregate(questions, scores)
    metrics["eval_seconds"] = seconds
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = [_prediction_row(q, p, a, s) for q, p, a, s in zip(questions, prompts, answers, scores, strict=True)]
    _write_atomic(output_dir / PREDICTIONS_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    _write_atomic(output_dir / METRICS_FILE, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    log.info("QA accuracy %.3f on %d questions (%d failed)", metrics["accuracy"], len(questions), metrics["n_failed"])
    return metrics


def _score(question: Question, answer: Answer) -> QuestionScore:
    if answer.interpretation is not None:
        return score_interpretation(question, answer.interpretation)
    return score_question(question, answer.response)


def _prediction_row(question: Question, prompt: Prompt, answer: Answer, score: QuestionScore) -> dict[str, Any]:
    return {
        "problem_id": question.problem_id,
        "year": question.year,
        "exam": question.exam,
        "category": question.category,
        "prompt": prompt.text,
        "response": answer.response,
        "parsed": list(score.interpretation.letters),
        "parsed_text": score.interpretation.text,
        "gold": [sorted(gold) for gold in question.gold_sets],
        "gold_text": ANSWER_SEPARATOR.join(question.gold_texts()),
        "correct": score.correct,
        "official_correct": score.official_correct,
        "exact_match": score.exact_match,
        "gestalt": round(score.gestalt, 4),
        "points": score.points,
        "failed": score.failed,
        "choice_scores": answer.choice_scores,
    }


def _write_atomic(path: Path, text: str) -> None:
    """Readers never see half a file: write beside it, then rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ API models
def evaluate_openai(openai_cfg: OpenAIConfig, eval_cfg: EvalConfig, output_dir: str | Path) -> dict[str, float]:
    """Score an API model; answers already in output_dir/api_answers.jsonl are reused, not paid for again."""
    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    questions = load_questions(eval_cfg)
    prompts = build_prompts(questions, eval_cfg)
    keys = [request_key(openai_cfg, p) for p in prompts]
    answered = read_answer_log(output_dir / API_ANSWERS_FILE)
    todo = [i for i, key in enumerate(keys) if key not in answered]
    log.info("%d of %d questions already answered in %s", len(questions) - len(todo), len(questions), output_dir)
    if todo:
        asyncio.run(_ask_all(openai_cfg, [(keys[i], questions[i], prompts[i]) for i in todo], output_dir))
        answered = read_answer_log(output_dir / API_ANSWERS_FILE)
    answers = [Answer(answered.get(key)) for key in keys]
    return finish_evaluation(questions, prompts, answers, output_dir, time.perf_counter() - start)


def request_key(openai_cfg: OpenAIConfig, prompt: Prompt) -> str:
    """Identifies one paid request: same model, sampling and messages → its answer is reused (the server's
    address is left out, so a restarted local server on another port keeps its answers)."""
    payload = [openai_cfg.model, openai_cfg.temperature, openai_cfg.max_tokens, prompt.messages]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def read_answer_log(path: Path) -> dict[str, str]:
    """Successful answers by request key; failures are retried on resume, a torn last line is ignored."""
    answered: dict[str, str] = {}
    if not path.exists():
        return answered
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a write cut short by a crash: that question is simply asked again
            continue
        if record.get("response") is not None:
            answered[record["key"]] = record["response"]
    return answered


async def _ask_all(cfg: OpenAIConfig, jobs: list[tuple[str, Question, Prompt]], output_dir: Path) -> None:
    import openai

    client = openai.AsyncOpenAI(
        base_url=cfg.base_url,
        api_key=os.environ.get(cfg.api_key_env) or _missing_key(cfg),
        max_retries=cfg.max_retries,
        timeout=cfg.timeout_s,
    )
    limit = asyncio.Semaphore(cfg.concurrency)
    with _open_log(output_dir / API_ANSWERS_FILE) as answer_log:

        async def ask(key: str, question: Question, prompt: Prompt) -> None:
            async with limit:
                response, error = await _ask(client, cfg, prompt)
            record = {"key": key, "problem_id": question.problem_id, "response": response, "error": error}
            answer_log.write(json.dumps(record, ensure_ascii=False) + "\n")
            answer_log.flush()  # on disk before the next answer: a crash loses nothing paid for

        try:
            await asyncio.gather(*(ask(*job) for job in jobs))
        finally:
            await client.close()


def _open_log(path: Path):
    """Append mode, after closing a line torn by a crash so the next record starts on its own line."""
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    handle = path.open("a", encoding="utf-8")
    if torn:
        handle.write("\n")
    return handle


def _missing_key(cfg: OpenAIConfig) -> str:
    if cfg.base_url:  # local OpenAI-compatible servers usually accept any key
        return "none"
    raise ConfigError(f"backend=openai needs an API key in the environment variable {cfg.api_key_env}.")


async def _ask(client, cfg: OpenAIConfig, prompt: Prompt) -> tuple[str | None, str | None]:
    """(response, None) or (None, error) once the client's retries are spent; auth errors stop the run."""
    import openai

    extra = {"max_tokens": cfg.max_tokens} if cfg.max_tokens is not None else {}
    try:
        completion = await client.chat.completions.create(
            model=cfg.model, messages=prompt.messages, temperature=cfg.temperature, **extra
        )
    except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
        raise ConfigError(f"the API refused {cfg.model!r} at {cfg.base_url or 'api.openai.com'}: {err}") from err
    except openai.OpenAIError as err:
        return None, f"{type(err).__name__}: {err}"
    content = completion.choices[0].message.content if completion.choices else None
    return (content, None) if content is not None else (None, "empty completion")


# ------------------------------------------------------------------------------------------------ W&B
def log_eval_to_wandb(
    run, suite: str, metrics: dict[str, float], predictions_path: Path | None, prefix: str = "", step: int | None = None
) -> dict[str, float]:
    """Summary `eval/<suite>/<prefix><metric>`, a predictions table and per-category accuracy bars."""
    import wandb

    scalars = {f"eval/{suite}/{prefix}{name}": value for name, value in metrics.items()}
    logged: dict[str, Any] = dict(scalars)
    if predictions_path is not None and Path(predictions_path).exists():
        rows = [json.loads(line) for line in Path(predictions_path).read_text(encoding="utf-8").splitlines()]
        columns: list[str | int] = [
            "problem_id",
            "category",
            "year",
            "response",
            "parsed_text",
            "gold_text",
            "correct",
            "gestalt",
        ]
        logged[f"eval/{suite}/{prefix}predictions"] = wandb.Table(
            columns=columns, data=[[_cell(row.get(str(c))) for c in columns] for row in rows]
        )
    categories = _category_accuracy(metrics)
    if categories:
        table = wandb.Table(columns=["category", "accuracy"], data=sorted(categories.items()))
        title = f"{suite} {prefix}accuracy by category"
        logged[f"eval/{suite}/{prefix}category_accuracy"] = wandb.plot.bar(table, "category", "accuracy", title=title)
    run.log(logged, step=step)  # step: the training step, when scored inside train.py
    run.summary.update(scalars)
    return scalars


def _cell(value: Any) -> Any:
    return (
        value if value is None or isinstance(value, str | int | float | bool) else json.dumps(value, ensure_ascii=False)
    )


def _category_accuracy(metrics: dict[str, float]) -> dict[str, float]:
    return {
        key.split("/")[1]: value
        for key, value in metrics.items()
        if key.startswith("category/") and key.endswith("/accuracy") and key.count("/") == 2
    }


# ------------------------------------------------------------------------------------------ evaluate.py
def run(cfg: DictConfig | EvaluateConfig, output_dir: str | Path) -> dict[str, float]:
    """evaluate.py: score a trained run, a base model or an API model, tracked in its own W&B run."""
    typed = to_evaluate_config(cfg)
    output_dir = Path(output_dir)
    load_questions(typed.eval)  # a bad data file fails here, before any weights load or any W&B run starts
    run_ = _start_wandb(typed, output_dir)
    try:
        if typed.backend == "openai":
            metrics = evaluate_openai(typed.openai, typed.eval, output_dir)
        else:
            model, tokenizer = _load_local(typed)
            if typed.run_dir is not None:
                from medtune.lineage import use_trained_model

                use_trained_model(run_, Path(typed.run_dir))
            metrics = evaluate_model(model, tokenizer, typed.eval, output_dir)
        log_eval_to_wandb(run_, typed.eval.suite, metrics, output_dir / PREDICTIONS_FILE)
    finally:
        run_.finish()
    print(json.dumps({k: metrics[k] for k in ("accuracy", "official_accuracy", "gestalt", "n_questions")}))
    return metrics


def _load_local(cfg: EvaluateConfig):
    from medtune.models import load_base_model, load_trained

    if cfg.run_dir is not None:
        model, tokenizer, trained = load_trained(cfg.run_dir)
        log.info("evaluating %s + %s from %s", trained.base_model.name, trained.adapter.method, cfg.run_dir)
        return model, tokenizer
    return load_base_model(cfg.base_model, cfg.quantization)


def _start_wandb(cfg: EvaluateConfig, output_dir: Path):
    """The evaluation's W&B run (with wandb.mode=disabled a no-op run, so the code path is the same)."""
    from medtune.tracking import start_wandb_run

    target = (
        cfg.openai.model if cfg.backend == "openai" else Path(cfg.run_dir).name if cfg.run_dir else cfg.base_model.name
    )
    return start_wandb_run(
        cfg.wandb,
        output_dir,
        config=to_plain_dict(cfg),
        tags=["eval", cfg.eval.suite, cfg.backend, cfg.eval.mode],
        group=f"eval-{cfg.eval.suite}",
        name=f"eval-{cfg.eval.suite}-{target}",
        job_type="eval",
    )
