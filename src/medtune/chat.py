"""Conversations through the tokenizer's own chat template (`dataset.prompt_template=chat`).

A record becomes messages: an optional system turn (dataset.system_prompt), the user turn (instruction, then input)
and the assistant turn (output). `apply_chat_template` renders and tokenizes them, and the labels are the assistant's
tokens only, its end-of-turn token included:
- a template with `{% generation %}` markers (medtune's tiny ones): transformers' assistant mask
  (`return_assistant_tokens_mask`), as TRL's SFTTrainer computes it with `assistant_only_loss=True`;
- a template without them (most hub templates, Qwen3's and Llama 3.1's among them): the conversation is tokenized
  without the assistant turn (generation prompt added) and with it, and the labels are what follows the prompt, as
  TRL does for a conversational prompt-completion record (`completion_only_loss`).
QA prompts go through the same template with the generation prompt added (medtune.evaluation.prompts), so training
and scoring see one format. Torch-free: the tokenizer is all it needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from medtune.errors import ConfigError

# How transformers itself detects the markers (utils/chat_template_utils.render_jinja_template).
GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")
_PROBE = [{"role": "user", "content": "?"}, {"role": "assistant", "content": "!"}]  # finds the end-of-turn token


@dataclass(frozen=True)
class ChatFormat:
    """A tokenizer's chat template with the run's system prompt and template variables."""

    tokenizer: Any
    system_prompt: str | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)  # base_model.chat_template_kwargs

    @property
    def marks_generation(self) -> bool:
        template = self.tokenizer.get_chat_template()
        return GENERATION_MARKER.search(template) is not None

    def conversation(self, *turns: str) -> list[dict[str, str]]:
        """The system turn (when set), then `turns` alternating user, assistant, user, ..."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": ("user", "assistant")[i % 2], "content": text} for i, text in enumerate(turns)]

    def render_prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt text a model answers: the conversation so far, then the opened assistant turn."""
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.template_kwargs
        )

    def encode(self, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
        """(input ids, assistant mask) of a conversation that ends with the assistant's turn."""
        if self.marks_generation:
            out = self._tokenize(messages, return_assistant_tokens_mask=True)
            return list(out["input_ids"]), list(out["assistant_masks"])
        prompt = self._tokenize(messages[:-1], add_generation_prompt=True)["input_ids"]
        ids = list(self._tokenize(messages)["input_ids"])
        start = common_prefix_length(prompt, ids)
        return ids, [0] * start + [1] * (len(ids) - start)

    def truncate(self, text: str, max_tokens: int) -> str:
        """The text cut after the characters of its first `max_tokens` tokens (cut as text, so the template renders
        it like any other; a byte-level token ending inside a character keeps that whole character)."""
        if max_tokens <= 0:
            return ""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = encoded["offset_mapping"]
        return text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]]

    @cached_property
    def end_of_turn_id(self) -> int:
        """The token that closes an assistant turn (<|im_end|>, <|eot_id|>, </s>): the last special token of a probe
        answer's labels. Loglik scoring adds it to every choice, as training taught the model to emit it."""
        ids, mask = self.encode(self.conversation(_PROBE[0]["content"], _PROBE[1]["content"]))
        special = set(self.tokenizer.all_special_ids)
        answer = [token for token, learned in zip(ids, mask, strict=True) if learned and token in special]
        return answer[-1] if answer else self.tokenizer.eos_token_id

    def _tokenize(self, messages: list[dict[str, str]], **options: Any) -> Any:
        kwargs = {**options, **self.template_kwargs}
        return self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)


def require_chat_template(tokenizer: Any, key: str) -> None:
    """A base whose tokenizer ships no chat template stops with the key that asked for one, before the model loads."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"{key} needs a tokenizer with a chat template, and the tokenizer of {tokenizer.name_or_path} has none; "
            "use an instruct base (e.g. base_model=qwen3_8b; offline: tiny_qwen3) or dataset.prompt_template=alpaca_ja."
        )


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """Tokens shared by the start of both lists (where a prompt's tokens and its prompt+answer's diverge)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
