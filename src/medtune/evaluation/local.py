"""A local transformers model as a backend: log-likelihood scoring of the choices, or greedy generation.

Both batch questions of similar length, so little compute goes to padding (loglik first groups the prompts that share
the suite's template and exemplar, which it encodes once), and both give the same answers batched as one question at
a time (tests/unit/test_evaluation.py).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from medtune.chat import ChatFormat, require_chat_template
from medtune.config import EvalConfig, LoglikConvention
from medtune.console import bar
from medtune.enums import EvalMode, EvalPrompt
from medtune.evaluation.answer import Answer
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
    template_kwargs: dict[str, Any] | None = None  # base_model.chat_template_kwargs
    max_failed_share: float = 1.0  # a local model answers every question
    chat_format: ChatFormat | None = field(init=False)  # the prompts' chat template (eval.chat_template), else None

    def __post_init__(self) -> None:
        self.chat_format = None
        if self.eval_cfg.chat_template:
            require_chat_template(self.tokenizer, "eval.chat_template=true")
            self.chat_format = ChatFormat(self.tokenizer, self.eval_cfg.system_prompt, dict(self.template_kwargs or {}))

    def answer(self, questions: list[Question], prompts: list[Prompt]) -> list[Answer]:
        loglik = self.eval_cfg.mode == EvalMode.loglik
        by_choice = [i for i, q in enumerate(questions) if loglik and not q.is_calculation]
        by_text = sorted(set(range(len(questions))) - set(by_choice))  # generate mode, and calculation questions
        with inference(self.model):
            answers = self._choose(questions, prompts, by_choice) | self._generate(prompts, by_text)
        return [answers[i] for i in range(len(questions))]

    def _choose(self, questions: list[Question], prompts: list[Prompt], indices: list[int]) -> dict[int, Answer]:
        """Loglik: the n_answers choices of highest log-probability answer."""
        if not indices:
            return {}
        texts, candidates = [prompts[i].text for i in indices], [prompts[i].continuations for i in indices]
        if self.eval_cfg.loglik_convention == LoglikConvention.lm_eval:
            texts, tokens = lm_eval_requests(self.tokenizer, texts, candidates)
        else:
            tokens = encode_continuations(self.tokenizer, candidates, self._terminator())
        scores = score_encoded(self.model, self.tokenizer, texts, tokens, self.eval_cfg.batch_size)
        answers = {}
        for i, row, ids in zip(indices, scores, tokens, strict=True):
            picked = top_choices(questions[i], row)
            answers[i] = Answer(picked.text, picked, choice_scores=row, choice_tokens=[len(c) for c in ids])
        return answers

    def _terminator(self) -> int | None:
        """The token a trained answer ends in: the chat template's end of turn, EOS after a jmedlora (Alpaca) answer;
        an igakuqa prompt outside a chat template was never trained, so nothing is added there."""
        if self.chat_format is not None:
            return self.chat_format.end_of_turn_id
        return self.tokenizer.eos_token_id if self.eval_cfg.prompt == EvalPrompt.jmedlora else None

    def _generate(self, prompts: list[Prompt], indices: list[int]) -> dict[int, Answer]:
        if not indices:
            return {}
        texts = [prompts[i].text for i in indices]
        cfg = self.eval_cfg
        stop = [self.chat_format.end_of_turn_id] if self.chat_format is not None else []
        responses = generate_responses(self.model, self.tokenizer, texts, cfg.batch_size, cfg.max_new_tokens, stop)
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


def _batches_by_prefix(rows: list[list[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices in batches of prompts that share as much of the suite's majority prefix as each other, longest first
    within: a batch then mixes no exemplars or instructions it need not, and the prefix cache carries over.

    Length order alone would put, e.g., the one question whose exemplar differs (it is the usual exemplar itself)
    with seven others, and pad all eight to their short common prefix: 23 % more tokens with three shots.
    """
    majority = _majority_prefix(rows)
    shared = [_common_prefix_len([majority, row], own=0) for row in rows]
    order = sorted(range(len(rows)), key=lambda i: (-shared[i], -len(rows[i])))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _majority_prefix(rows: list[list[int]]) -> list[int]:
    """The longest prefix that at least half the rows start with (such rows are neighbours in sorted order)."""
    ordered = sorted(rows)
    span = max(len(rows) // 2, 1)
    best, start = 0, ordered[0]
    for first, last in zip(ordered, ordered[span - 1 :], strict=False):
        shared = _common_prefix_len([first, last], own=0)
        if shared > best:
            best, start = shared, first
    return start[:best]


def generate_responses(
    model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int, stop_ids: Sequence[int] = ()
) -> list[str]:
    """Greedy continuations of each prompt up to its first newline, EOS or a `stop_ids` token (e.g. a chat template's
    end of turn), batched, left-padded, KV-cached."""
    from transformers import GenerationConfig

    device, pad_id = _device(model), _pad_id(tokenizer)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        stop_strings=STOP_STRINGS,
        pad_token_id=pad_id,
        eos_token_id=list(dict.fromkeys([tokenizer.eos_token_id, *stop_ids])),
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
    return score_encoded(model, tokenizer, prompts, encode_continuations(tokenizer, candidates, terminator), batch_size)


def score_encoded(
    model, tokenizer, prompts: list[str], conts: list[list[list[int]]], batch_size: int
) -> list[list[float]]:
    """Summed log-probability of each prompt's token continuations, `batch_size` prompts per forward pass."""
    device, pad_id = _device(model), _pad_id(tokenizer)
    longest = max((sum(len(c) for c in cs) for cs in conts), default=1)
    limit = _context_limit(model, longest)
    encoded = [_fit(ids, limit) for ids in _encode_all(tokenizer, prompts)]
    scores: list[list[float]] = [[] for _ in prompts]
    shared = _PrefixCache(model, device)
    with bar(len(prompts), "QA loglik", "q", leave=False) as progress:
        for batch in _batches_by_prefix(encoded, batch_size):
            batch_scores = _score_batch(model, shared, [encoded[i] for i in batch], [conts[i] for i in batch], pad_id)
            for i, row in zip(batch, batch_scores, strict=True):
                scores[i] = row
            progress.update(len(batch))
    return scores


def encode_continuations(tokenizer, candidates: list[list[str]], terminator: int | None) -> list[list[list[int]]]:
    """Token ids of each candidate continuation, plus the terminator the model must also predict."""
    flat = iter(_encode_all(tokenizer, [c for cs in candidates for c in cs]))
    end = [terminator] if terminator is not None else []
    return [[next(flat) + end for _ in cs] for cs in candidates]


def lm_eval_requests(
    tokenizer, prompts: list[str], candidates: list[list[str]]
) -> tuple[list[str], list[list[list[int]]]]:
    """(contexts, continuation ids) as lm-evaluation-harness 0.4 builds them (HFLM._encode_pair): the context's
    trailing whitespace moves to the front of every continuation, whose ids are those of context + continuation
    after the context's own ids; no end-of-text token."""
    contexts = [p.rstrip() for p in prompts]
    wholes = _encode_all(tokenizer, [p + x for p, xs in zip(prompts, candidates, strict=True) for x in xs])  # ctx+ws+x
    context_lengths = iter(len(ids) for ids in _encode_all(tokenizer, contexts))
    flat = iter(wholes)
    tokens = []
    for cs in candidates:
        n = next(context_lengths)
        tokens.append([next(flat)[n:] for _ in cs])
    return contexts, tokens


def _encode_all(tokenizer, texts: list[str]) -> list[list[int]]:
    """`_encode` of many texts in one tokenizer call (a fast tokenizer encodes the list in parallel, in Rust)."""
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def _score_batch(
    model, shared: _PrefixCache, prompts: list[list[int]], conts: list[list[list[int]]], pad_id: int
) -> list[list[float]]:
    """Score every choice of a batch of prompts in at most two forward passes: each token is encoded once.

    The prompts' common prefix (template + exemplar) comes from `shared`, which encodes only what the previous
    batch's prefix did not already hold; then one row per prompt holds its own tail (left-padded) followed by all
    its choices, and a 4-D attention mask lets each choice see the prefix, its prompt's tail and itself only, with
    positions restarting after the tail for every choice. No cache is copied per choice and no Python runs per
    choice.
    """
    device = shared.device
    prefix_len = _common_prefix_len(prompts)
    cache = shared.for_rows(prompts[0][:prefix_len], len(prompts))
    layout = _RowLayout.build([p[prefix_len:] for p in prompts], conts, prefix_len, pad_id)
    dtype = next(model.parameters()).dtype
    dtype = dtype if dtype.is_floating_point else torch.float32
    logits = model(
        input_ids=layout.ids.to(device),
        attention_mask=layout.mask(prefix_len, dtype).to(device),
        position_ids=layout.positions.to(device),
        cache=cache,
        use_cache=cache is not None,
        logits_to_keep=layout.scored_width,  # the LM head only runs from the tails' last token on
    ).logits
    logprobs = logits.float().log_softmax(-1)
    picked = logprobs[layout.src_row, layout.src_col - (layout.ids.shape[1] - layout.scored_width), layout.target]
    picked = picked.cpu()
    summed = torch.zeros(layout.n_choices).index_add_(0, layout.choice, picked).tolist()
    scores: list[list[float]] = []
    for cs in conts:
        scores.append(summed[: len(cs)])
        summed = summed[len(cs) :]
    return scores


@dataclass
class _RowLayout:
    """One row per prompt: [left padding, tail, choice 1, choice 2, ..., right padding].

    `segment` is -1 for padding, 0 for the tail, j + 1 for choice j; every scored token is read from the
    logits at (src_row, src_col), the position before it (the tail's last token for a choice's first).
    """

    ids: torch.Tensor
    positions: torch.Tensor
    segment: torch.Tensor
    src_row: torch.Tensor
    src_col: torch.Tensor
    target: torch.Tensor
    choice: torch.Tensor  # the (flat) choice each scored token belongs to
    n_choices: int
    scored_width: int  # columns whose logits are read: the tails' last one and the choices'

    @classmethod
    def build(cls, tails: list[list[int]], conts: list[list[list[int]]], offset: int, pad_id: int) -> _RowLayout:
        tail_width = max(len(t) for t in tails)
        width = tail_width + max(sum(len(c) for c in cs) for cs in conts)
        ids, positions, segment = [], [], []
        src_row, src_col, target, choice = [], [], [], []
        flat = 0
        for row, (tail, cs) in enumerate(zip(tails, conts, strict=True)):
            pad = tail_width - len(tail)
            row_ids, row_pos = [pad_id] * pad + tail, [0] * pad + list(range(offset, offset + len(tail)))
            row_seg = [-1] * pad + [0] * len(tail)
            start = offset + len(tail)
            for j, c in enumerate(cs):
                col = len(row_ids)
                src_col += [tail_width - 1, *range(col, col + len(c) - 1)]
                src_row += [row] * len(c)
                target += c
                choice += [flat] * len(c)
                row_ids += c
                row_pos += range(start, start + len(c))
                row_seg += [j + 1] * len(c)
                flat += 1
            fill = width - len(row_ids)
            ids.append(row_ids + [pad_id] * fill)
            positions.append(row_pos + [0] * fill)
            segment.append(row_seg + [-1] * fill)
        as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
        return cls(
            *map(as_long, (ids, positions, segment, src_row, src_col, target, choice)),
            n_choices=flat,
            scored_width=width - tail_width + 1,
        )

    def mask(self, prefix_len: int, dtype: torch.dtype) -> torch.Tensor:
        """Additive (batch, 1, query, prefix + row) mask: 0 where a token may attend, the dtype's minimum elsewhere."""
        seg = self.segment
        causal = torch.ones(seg.shape[1], seg.shape[1], dtype=torch.bool).tril()
        same = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
        allowed = causal & same & (seg[:, None, :] >= 0)
        allowed |= torch.eye(seg.shape[1], dtype=torch.bool)  # a padding query attends to itself (no empty row)
        allowed = torch.cat([torch.ones(*allowed.shape[:2], prefix_len, dtype=torch.bool), allowed], dim=2)
        blocked = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        return blocked[:, None]


class _PrefixCache:
    """The KV cache of the last batch's shared prefix, kept so the next batch encodes only what differs.

    Consecutive batches of one suite mostly share their template and exemplars, so each batch's prefix is compared
    with the previous one and the cache is cut back to the tokens both have. Only plain dynamic caches are kept
    (cutting one is a view, extending one rebinds its tensors); any other kind, e.g. a sliding window's, is encoded
    afresh for every batch.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device
        self.ids: list[int] = []
        self.cache: Any = None

    def for_rows(self, prefix: list[int], rows: int) -> Any:
        """A cache holding `prefix`, repeated for `rows` rows (the caller's to extend), or None for no prefix."""
        if not prefix:
            return None
        self._hold(prefix)
        if _keepable(self.cache):
            cache = copy.copy(self.cache)
            cache.layers = [copy.copy(layer) for layer in self.cache.layers]
        else:
            cache, self.cache, self.ids = self.cache, None, []
        cache.batch_repeat_interleave(rows)
        return cache

    def _hold(self, prefix: list[int]) -> None:
        kept = _common_prefix_len([self.ids, prefix], own=0) if self.cache is not None else 0
        if kept == 0:
            self.cache = None
        elif kept < len(self.ids):
            self.cache.crop(kept - len(self.ids))
        if kept < len(prefix):
            new = torch.tensor([prefix[kept:]], device=self.device)
            self.cache = self.model(input_ids=new, cache=self.cache, use_cache=True, logits_to_keep=1).cache
        self.ids = list(prefix)


def _keepable(cache: Any) -> bool:
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _common_prefix_len(rows: list[list[int]], own: int = 1) -> int:
    """Tokens shared by the start of every row, leaving each row at least `own` tokens of its own."""
    shortest = min(len(row) for row in rows)
    for i in range(shortest - own):
        if any(row[i] != rows[0][i] for row in rows):
            return i
    return max(shortest - own, 0)
