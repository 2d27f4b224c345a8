"""Prompt templates shared by training and evaluation, so a tuned model is asked in the format it learned.

`alpaca_ja` is the Japanese Alpaca-style instruction/input/response template used by the JMedLoRA
study for both instruction-tuning and the 1-shot QA evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtune.errors import ConfigError


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
    try:
        return PROMPT_TEMPLATES[name]
    except KeyError:
        raise ConfigError(f"dataset.prompt_template={name!r} is not one of {', '.join(PROMPT_TEMPLATES)}.") from None
