"""An OpenAI-compatible server as a backend, asked through medtune.api_client (the only code that talks to one).

Every attempt is appended to `api_answers.jsonl` as it arrives, and a re-run in the same directory pays only
for questions without an answer yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medtune.api_client import Request, RequestLog, call_all, chat_body, request_key
from medtune.evaluation.answer import Answer
from medtune.evaluation.config import OpenAIConfig
from medtune.evaluation.prompts import Prompt
from medtune.qa_data import Question
from medtune.run_dir import API_ANSWERS_FILE


@dataclass
class ApiBackend:
    """Answers of an API model; those already logged in output_dir/api_answers.jsonl are reused, not paid for again.

    `answer` raises ApiStopped when the server cannot serve the run; a question that failed after its retries
    gets an Answer without a response (and the error).
    """

    cfg: OpenAIConfig
    output_dir: Path  # must exist
    progress: bool = False

    @property
    def max_failed_share(self) -> float:
        return self.cfg.max_failed_share

    @property
    def chat_format(self) -> None:
        return None  # the server applies the model's chat template to the messages

    def answer(self, questions: list[Question], prompts: list[Prompt]) -> list[Answer]:
        requests = [_api_request(self.cfg, q, p) for q, p in zip(questions, prompts, strict=True)]
        answer_log = RequestLog(self.output_dir / API_ANSWERS_FILE)
        try:
            call_all(self.cfg, requests, answer_log, label="questions", unit="question", progress=self.progress)
        finally:
            answer_log.close()
        answered, errors = answer_log.answered(), answer_log.errors()
        return [
            Answer(answered[r.key]["content"])
            if r.key in answered
            else Answer(None, error=errors.get(r.key, "not asked"))
            for r in requests
        ]


def _api_request(cfg: OpenAIConfig, question: Question, prompt: Prompt) -> Request:
    """The request body is the resume key's input: same model, sampling and messages → the answer is reused
    (the server's address is left out, so a restarted local server on another port keeps its answers)."""
    body = chat_body(cfg, prompt.messages)
    return Request(request_key(body), question.problem_id, body)
