"""What an answerer is (a local model or an API server): it answers prompted questions; the pipeline does the rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from medtune.evaluation.metrics import Interpretation
from medtune.evaluation.prompts import Prompt
from medtune.qa_data import Question

if TYPE_CHECKING:
    from medtune.chat import ChatFormat


@dataclass
class Answer:
    """One question's outcome before scoring: raw response (None: failed) and, in loglik mode, choice scores."""

    response: str | None
    interpretation: Interpretation | None = None  # set by loglik (no text to parse)
    choice_scores: list[float] | None = None  # summed log-probability of each choice
    choice_tokens: list[int] | None = None  # tokens scored per choice (the per-token normalisation)
    error: str | None = None  # why an API question has no response


class Answerer(Protocol):
    """A local model (medtune.evaluation.local) or an OpenAI-compatible server (medtune.evaluation.api)."""

    @property
    def max_failed_share(self) -> float:
        """More of the questions than this share without a response (Answer.response None): the run fails."""
        ...

    @property
    def chat_format(self) -> ChatFormat | None:
        """The chat template the prompt texts are rendered with (a local model, eval.chat_template); None: plain text
        prompts (an API model gets the messages and applies its own template)."""
        ...

    def answer(self, questions: list[Question], prompts: list[Prompt]) -> list[Answer]:
        """One Answer per question, in order."""
        ...
