"""A local transformers model as a backend: log-likelihood scoring of the choices, or greedy generation.

Both batch questions of similar length, so little compute goes to padding, and both give the same answers
batched as one question at a time (tests/unit/test_evaluation.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from medtune.config import EvalConfig
from medtune.console import bar
from medtune.evaluation.backend import Answer
from medtune.evaluation.prompts import Prompt
from medtune.evaluation.scoring import top_choices
from medtune.qa_data import Question

STOP_STRINGS = ["\n"]  # an answer is one line: choice text(s), letters or a number


@dataclass
class LocalBackend:
    """Answers of a model in eval.mode; the model's train/eval mode is restored afterwards."""

    model: Any
    tokenizer: Any
    eval_cfg: EvalConfig
    max_failed_share: float = 1.0  # a local model answers every question

    def answer(self, questions: list[Question], prompts: list[Prompt]) -> list[Answer]:
        loglik = self.eval_cfg.mode == "loglik"
        by_choice = [i for i, q in enumerate(questions) if loglik and not q.is_calculation]
        by_text = sorted(set(range(len(questions))) - set(by_choice))  # generate mode, and calculation questions
        with inference(self.model):
            answers = self._choose(questions, prompts, by_choice) | self._generate(prompts, by_text)
        return [answers[i] for i in range(len(questions))]

    def _choose(self, questions: list[Question], prompts: list[Prompt], indices: list[int]) -> dict[int, Answer]:
        """Loglik: the n_answers choices of highest log-probability answer."""
        if not indices:
            return {}
        jmedlora = self.eval_cfg.prompt == "jmedlora"
        terminator = self.tokenizer.eos_token_id if jmedlora else None  # trained (jmedlora) answers end in EOS
        texts, candidates = [prompts[i].text for i in indices], [prompts[i].continuations for i in indices]
        scores = loglik_scores(self.model, self.tokenizer, texts, candidates, self.eval_cfg.batch_size, terminator)
        tokens = encode_continuations(self.tokenizer, candidates, terminator)
        answers = {}
        for i, row, ids in zip(indices, scores, tokens, strict=True):
            picked = top_choices(questions[i], row)
            answers[i] = Answer(picked.text, picked, choice_scores=row, choice_tokens=[len(c) for c in ids])
        return answers

    def _generate(self, prompts: list[Prompt], indices: list[int]) -> dict[int, Answer]:
        if not indices:
            return {}
        texts = [prompts[i].text for i in indices]
        cfg = self.eval_cfg
        responses = generate_responses(self.model, self.tokenizer, texts, cfg.batch_size, cfg.max_new_tokens)
        return {i: Answer(response) for i, response in zip(indices, responses, strict=True)}


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
