"""Prompt templates shared by training and evaluation, so a tuned model is asked in the format it learned.

`alpaca_ja` is the Japanese Alpaca-style instruction/input/response template used by the JMedLoRA
study for both instruction-tuning and the 1-shot QA evaluation. `chat` is no text template: each record becomes a
conversation rendered by the tokenizer's own chat template (medtune.chat); its config rules live here, torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from medtune.enums import Stage
from medtune.errors import ConfigError

if TYPE_CHECKING:
    from medtune.config import TrainConfig

CHAT_TEMPLATE = "chat"  # dataset.prompt_template: the tokenizer's chat template (apply_chat_template)


@dataclass(frozen=True)
class PromptTemplate:
    with_input: str  # used when the record has a non-empty "input"
    without_input: str

    def render(self, instruction: str, input_text: str | None = None) -> str:
        """The prompt up to and including the response header; the response follows directly."""
        if input_text:
            return self.with_input.format(instruction=instruction, input=input_text)
        return self.without_input.format(instruction=instruction)

    @property
    def response_header(self) -> str:
        """The fixed text after the last placeholder (e.g. "### 応答:"), kept when a long prompt is truncated."""
        return self.without_input.rsplit("}", 1)[1]


PROMPT_TEMPLATES: dict[str, PromptTemplate] = {
    "alpaca_ja": PromptTemplate(
        with_input=(
            "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。"
            "要求を適切に満たす応答を書きなさい。\n\n"
            "### 指示:\n{instruction}\n\n### 入力:\n{input}\n\n### 応答:\n"
        ),
        without_input=(
            "以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。\n\n"
            "### 指示:\n{instruction}\n\n### 応答:\n"
        ),
    ),
    "plain": PromptTemplate(
        with_input="{instruction}\n{input}\n",
        without_input="{instruction}\n",
    ),
}


def get_template(name: str) -> PromptTemplate:
    check_template_name(name)
    return PROMPT_TEMPLATES[name]


def check_template_name(name: str) -> None:
    if name != CHAT_TEMPLATE and name not in PROMPT_TEMPLATES:
        names = ", ".join([*PROMPT_TEMPLATES, CHAT_TEMPLATE])
        raise ConfigError(f"dataset.prompt_template={name!r} is not one of {names}.")


def user_content(instruction: str, input_text: str | None = None) -> str:
    """A chat user turn: the instruction, then the input after a blank line (training records and QA prompts)."""
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def follow_training_format(cfg: TrainConfig) -> TrainConfig:
    """A run scores in the format it trains: a chat-template run asks its QA questions through the same template
    and system prompt, unless eval.chat_template / eval.system_prompt say otherwise (the resolved config shows it)."""
    if cfg.dataset.prompt_template != CHAT_TEMPLATE:
        return cfg  # null stays null (not chat), as in run dirs made before these keys existed, so they still match
    if cfg.eval.chat_template is None:
        cfg.eval.chat_template = True
    if cfg.eval.system_prompt is None:
        cfg.eval.system_prompt = cfg.dataset.system_prompt
    return cfg


def check_chat_settings(cfg: TrainConfig) -> None:
    """A system prompt outside a chat template would be dropped silently, so it is refused; a tiny base built without
    a chat format has no template: said before it is built or loaded (any other base is checked once its tokenizer
    loads, medtune.chat.require_chat_template)."""
    base, chat = cfg.base_model, cfg.dataset.prompt_template == CHAT_TEMPLATE
    if cfg.dataset.system_prompt and not chat:
        raise ConfigError(
            f"dataset.system_prompt applies to dataset.prompt_template=chat only (got {cfg.dataset.prompt_template})."
        )
    if cfg.stage == Stage.sft and (chat or cfg.eval.chat_template) and base.tiny and base.tiny_chat_format is None:
        key = "dataset.prompt_template=chat" if chat else "eval.chat_template=true"
        raise ConfigError(
            f"{key} needs a tokenizer with a chat template, and base_model={base.name} has none; use a chat base "
            "(e.g. base_model=tiny_qwen3 or tiny_llama3) or dataset.prompt_template=alpaca_ja."
        )
