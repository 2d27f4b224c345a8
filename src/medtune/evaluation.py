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

The API backend asks any OpenAI-compatible server through medtune.api_client (the policy, preflight,
progress and resume it shares with generate_data.py): every attempt is appended to `api_answers.jsonl`
as it arrives, and a re-run in the same directory pays only for questions without an answer yet. An
evaluation is a score only when its questions were answered: when more than `openai.max_failed_share`
of them failed, no accuracy is written and the run fails.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from medtune.api_client import (
    ApiConfig,
    ApiFailed,
    Request,
    RequestLog,
    RetryConfig,
    call_all,
    request_key,
    validate_api,
)
from medtune.config import (
    AdapterConfig,
    BaseModelConfig,
    EvalConfig,
    QuantizationConfig,
    WandbConfig,
    check_tiny_model_path,
    register_resolvers,
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
    letters_match,
    score_interpretation,
    score_question,
)
from medtune.prompts import get_template
from medtune.qa_data import Question, QuestionSet, check_source, load_questions
from medtune.run_dir import METRICS_FILE, PREDICTIONS_FILE, write_json, write_status, write_text

log = logging.getLogger(__name__)


class Backend(StrEnum):
    local = "local"  # transformers
    openai = "openai"  # any OpenAI-compatible API


API_ANSWERS_FILE = "api_answers.jsonl"  # append-only: one line per API attempt (medtune.api_client.RequestLog)
IGAKUQA_SYSTEM = "医師国家試験を解きます。"  # the benchmark's system message
STOP_STRINGS = ["\n"]  # an answer is one line: choice text(s), letters or a number


# --------------------------------------------------------------------------------------------- config
@dataclass
class OpenAIConfig(ApiConfig):
    """The server and model (fields shared with generate_data.py in medtune.api_client.ApiConfig) and sampling."""

    model: str = "gpt-4o"
    # a one-line answer: a request still failing after 2 minutes fails (a hung server stops the run then)
    retry: RetryConfig = field(default_factory=lambda: RetryConfig(budget_s=120.0))
    temperature: float = 0.0
    max_tokens: int | None = None  # None: the server's default
    # A share of questions failed after their retries above this fails the run, with no score recorded.
    max_failed_share: float = 0.0


@dataclass
class EvaluateConfig:
    base_model: BaseModelConfig = field(default_factory=BaseModelConfig)
    adapter: AdapterConfig = field(default_factory=lambda: AdapterConfig(method="none"))
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    backend: Backend = Backend.local
    run_dir: str | None = None  # a finished train.py run: its base model + adapter are evaluated
    resume: str | None = None  # a previous evaluate.py run dir: continue there (API answers are reused)
    cache_dir: str = MISSING  # where offline tiny models are built
    progress: bool = True  # backend=openai: a progress bar (rate, ETA, failures) on stderr


def register_configs() -> None:
    """Register the evaluate.py schema; conf/evaluate.yaml names it first in its defaults list."""
    register_resolvers()
    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def validate(cfg: EvaluateConfig) -> None:
    """Reject configs that cannot run, before any weights load or any API call."""
    if cfg.backend == "local" and cfg.run_dir is None and cfg.adapter.method != "none":
        raise ConfigError(
            f"adapter={cfg.adapter.method} has no trained weights to evaluate: pass run_dir=<a train.py run dir> "
            "for a tuned model, or adapter=none for the untuned base."
        )
    if cfg.backend == "local" and cfg.run_dir is None:
        check_tiny_model_path(cfg.base_model, cfg.cache_dir)
    check_source(cfg.eval)
    if cfg.eval.shots < 0 or cfg.eval.batch_size < 1:
        raise ConfigError("eval.shots must be >= 0 and eval.batch_size >= 1.")
    if cfg.backend == "openai":
        validate_api(cfg.openai, "openai")
        if not 0.0 <= cfg.openai.max_failed_share <= 1.0:
            raise ConfigError(f"openai.max_failed_share must be in [0, 1] (got {cfg.openai.max_failed_share}).")


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
    conts = encode_continuations(tokenizer, candidates, terminator)
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


def encode_continuations(tokenizer, candidates: list[list[str]], terminator: int | None) -> list[list[list[int]]]:
    """Token ids of each candidate continuation, plus the terminator the model must also predict."""
    return [[_encode(tokenizer, c) + ([terminator] if terminator is not None else []) for c in cs] for cs in candidates]


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
    choice_scores: list[float] | None = None  # summed log-probability of each choice
    choice_tokens: list[int] | None = None  # tokens scored per choice (the per-token normalisation)
    error: str | None = None  # why an API question has no response


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
            candidates = [prompts[i].continuations for i in choice_idx]
            scores = loglik_scores(
                model, tokenizer, [prompts[i].text for i in choice_idx], candidates, eval_cfg.batch_size, terminator
            )
            tokens = encode_continuations(tokenizer, candidates, terminator)
            for i, row, ids in zip(choice_idx, scores, tokens, strict=True):
                picked = top_choices(questions[i], row)
                answers[i] = Answer(picked.text, picked, choice_scores=row, choice_tokens=[len(c) for c in ids])
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
    questions: list[Question],
    prompts: list[Prompt],
    answers: list[Answer],
    output_dir: Path,
    seconds: float,
    max_failed_share: float = 1.0,
) -> dict[str, float]:
    """Score every answer, write predictions.jsonl and metrics.json, return the flat metrics.

    More than `max_failed_share` of the questions without an answer: metrics.json holds the failure
    counts only (no accuracy that could pass for a score) and ApiFailed is raised.
    The headline metrics cover the questions as published; rotated copies (eval.permutations) only
    feed `permutation/<k>/accuracy` and `consistent_accuracy`.
    """
    scores = [_score(q, a) for q, a in zip(questions, answers, strict=True)]
    published = [i for i, q in enumerate(questions) if q.rotation == 0]
    metrics = aggregate([questions[i] for i in published], [scores[i] for i in published])
    metrics.update(normalized_accuracies([questions[i] for i in published], [prompts[i] for i in published],
                                         [answers[i] for i in published], [scores[i] for i in published]))  # fmt: skip
    metrics.update(permutation_metrics(questions, scores))
    metrics.update(exclusion_counts(questions))
    metrics["eval_seconds"] = seconds
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = [_prediction_row(q, p, a, s) for q, p, a, s in zip(questions, prompts, answers, scores, strict=True)]
    write_text(output_dir / PREDICTIONS_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    n_failed = int(metrics["n_failed"])
    if n_failed > max_failed_share * len(questions):
        failed = {"status": "failed", "n_questions": len(questions), "n_failed": n_failed}
        write_json(output_dir / METRICS_FILE, failed)
        raise ApiFailed(_failed_message(questions, answers, n_failed, max_failed_share, output_dir))
    write_json(output_dir / METRICS_FILE, metrics)
    log.info("QA accuracy %.3f on %d questions (%d failed)", metrics["accuracy"], len(questions), n_failed)
    return metrics


def _failed_message(
    questions: list[Question], answers: list[Answer], n_failed: int, max_share: float, output_dir: Path
) -> str:
    first = next((q, a) for q, a in zip(questions, answers, strict=True) if a.response is None)
    return (
        f"{n_failed} of {len(questions)} questions failed after their retries (allowed: openai.max_failed_share="
        f"{max_share:g}), e.g. {first[0].problem_id}: {first[1].error}; no score was recorded. "
        f"Rerun with resume={output_dir} to ask only the failed questions."
    )


NORMALIZATIONS = {  # metric → length a choice's summed log-probability is divided by
    "accuracy_norm_chars": lambda text, tokens: len(text),  # lm-evaluation-harness acc_norm
    "accuracy_bytes": lambda text, tokens: len(text.encode("utf-8")),  # lm-evaluation-harness acc_bytes
    "accuracy_norm_tokens": lambda text, tokens: tokens,  # JMedBench's normalised accuracy
}


def normalized_accuracies(
    questions: list[Question], prompts: list[Prompt], answers: list[Answer], scores: list[QuestionScore]
) -> dict[str, float]:
    """The same log-likelihood pass read the other harnesses' ways: each choice's log-probability per
    character, UTF-8 byte or token; questions answered by generation keep their one result."""
    if not any(a.choice_scores for a in answers):
        return {}
    metrics = {}
    for name, length in NORMALIZATIONS.items():
        correct = []
        for question, prompt, answer, score in zip(questions, prompts, answers, scores, strict=True):
            if answer.choice_scores is None or answer.choice_tokens is None:
                correct.append(score.correct)
                continue
            per = zip(answer.choice_scores, prompt.continuations, answer.choice_tokens, strict=True)
            normalized = [total / max(length(text, tokens), 1) for total, text, tokens in per]
            correct.append(letters_match(question, top_choices(question, normalized).letters))
        metrics[name] = sum(correct) / len(correct)
    return metrics


def permutation_metrics(questions: list[Question], scores: list[QuestionScore]) -> dict[str, float]:
    """Accuracy per choice order and consistent accuracy (right in every order); {} without rotations."""
    if all(q.rotation == 0 for q in questions):
        return {}
    by_order: dict[int, list[bool]] = defaultdict(list)
    by_question: dict[str, list[bool]] = defaultdict(list)
    for question, score in zip(questions, scores, strict=True):
        by_order[question.rotation].append(score.correct)
        by_question[question.problem_id].append(score.correct)
    metrics = {f"permutation/{k}/accuracy": sum(v) / len(v) for k, v in sorted(by_order.items())}
    metrics["consistent_accuracy"] = sum(all(v) for v in by_question.values()) / len(by_question)
    metrics["permutations"] = float(len(by_order))
    return metrics


def exclusion_counts(questions: list[Question]) -> dict[str, float]:
    """`n_excluded` and `n_excluded/<reason>`: published questions the suite left out (no official answer, image)."""
    excluded = questions.excluded if isinstance(questions, QuestionSet) else {}
    return {"n_excluded": float(sum(excluded.values()))} | {f"n_excluded/{k}": float(v) for k, v in excluded.items()}


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
        "error": answer.error,
        "unparsed": score.unparsed,
        "rotation": question.rotation,
        "choice_scores": answer.choice_scores,
        "choice_tokens": answer.choice_tokens,
    }


# ------------------------------------------------------------------------------------------ API models
def evaluate_openai(
    openai_cfg: OpenAIConfig, eval_cfg: EvalConfig, output_dir: str | Path, progress: bool = False
) -> dict[str, float]:
    """Score an API model; answers already in output_dir/api_answers.jsonl are reused, not paid for again.

    Raises ApiStopped when the server cannot serve the run, ApiFailed when too many questions failed.
    """
    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    questions = load_questions(eval_cfg)
    prompts = build_prompts(questions, eval_cfg)
    requests = [_api_request(openai_cfg, q, p) for q, p in zip(questions, prompts, strict=True)]
    answer_log = RequestLog(output_dir / API_ANSWERS_FILE)
    try:
        call_all(openai_cfg, requests, answer_log, label="questions", unit="question", progress=progress)
    finally:
        answer_log.close()
    answered, errors = answer_log.answered(), answer_log.errors()
    answers = [
        Answer(answered[r.key]["content"]) if r.key in answered else Answer(None, error=errors.get(r.key, "not asked"))
        for r in requests
    ]
    seconds = time.perf_counter() - start
    return finish_evaluation(questions, prompts, answers, output_dir, seconds, openai_cfg.max_failed_share)


def _api_request(cfg: OpenAIConfig, question: Question, prompt: Prompt) -> Request:
    """The request body is the resume key's input: same model, sampling and messages → the answer is reused
    (the server's address is left out, so a restarted local server on another port keeps its answers)."""
    body: dict[str, Any] = {"model": cfg.model, "messages": prompt.messages, "temperature": cfg.temperature}
    if cfg.max_tokens is not None:
        body["max_tokens"] = cfg.max_tokens
    return Request(request_key(body), question.problem_id, body)


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
            "official_correct",
            "unparsed",
            "rotation",
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
    """evaluate.py: score a trained run, a base model or an API model, tracked in its own W&B run.

    run_status.json says failed, and the W&B run exits 1, when the run stopped or too many questions failed.
    """
    typed = to_evaluate_config(cfg)
    output_dir = Path(output_dir)
    load_questions(typed.eval)  # a bad data file fails here, before any weights load or any W&B run starts
    output_dir.mkdir(parents=True, exist_ok=True)
    write_status(output_dir, "running")
    run_ = _start_wandb(typed, output_dir)
    try:
        metrics = _evaluate(typed, output_dir, run_)
        if run_ is not None:
            log_eval_to_wandb(run_, typed.eval.suite, metrics, output_dir / PREDICTIONS_FILE)
            run_.finish(exit_code=0)
    except BaseException as err:
        write_status(output_dir, "failed", err)
        if run_ is not None:
            _log_failure(run_, typed.eval.suite, output_dir)
            run_.finish(exit_code=1)
        raise
    write_status(output_dir, "finished")
    print(json.dumps({k: metrics[k] for k in ("accuracy", "official_accuracy", "gestalt", "n_questions")}))
    return metrics


def _evaluate(cfg: EvaluateConfig, output_dir: Path, run_: Any) -> dict[str, float]:
    if cfg.backend == "openai":
        return evaluate_openai(cfg.openai, cfg.eval, output_dir, progress=cfg.progress)
    model, tokenizer = _load_local(cfg)
    if cfg.run_dir is not None and run_ is not None:
        from medtune.lineage import use_trained_model

        use_trained_model(run_, Path(cfg.run_dir))  # the W&B graph links this score to the adapter it scored
    return evaluate_model(model, tokenizer, cfg.eval, output_dir)


def _log_failure(run_: Any, suite: str, output_dir: Path) -> None:
    """A failed evaluation's counts (never an accuracy) in the W&B summary."""
    path = output_dir / METRICS_FILE
    counts = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    run_.summary.update({f"eval/{suite}/{k}": v for k, v in counts.items() if k in ("n_questions", "n_failed")})


def _load_local(cfg: EvaluateConfig):
    from medtune.models import load_base_model, load_run_config, load_trained
    from medtune.tiny import ensure_tiny_model

    if cfg.run_dir is not None:
        run_config = load_run_config(Path(cfg.run_dir))
        ensure_tiny_model(run_config.base_model, run_config.cache_dir)  # a cleared cache: the same build again
        model, tokenizer, trained = load_trained(cfg.run_dir)
        log.info("evaluating %s + %s from %s", trained.base_model.name, trained.adapter.method, cfg.run_dir)
        return model, tokenizer
    ensure_tiny_model(cfg.base_model, cfg.cache_dir)
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
