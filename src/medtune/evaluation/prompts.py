"""The two prompt styles (`eval.prompt`): one Prompt per question, for a local model and for a chat API alike.

With a chat format (a local model, eval.chat_template) the prompt text is the tokenizer's chat template rendered with
the generation prompt: jmedlora's exemplars become user/assistant turns, each user turn written as a training record's
(medtune.prompts.user_content), and the system turn is the run's system prompt; igakuqa keeps its own messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from medtune.config import EvalConfig
from medtune.enums import EvalPrompt
from medtune.evaluation.metrics import ANSWER_SEPARATOR
from medtune.prompts import get_template, user_content
from medtune.qa_data import Question

if TYPE_CHECKING:
    from medtune.chat import ChatFormat

IGAKUQA_SYSTEM = "医師国家試験を解きます。"  # the benchmark's system message


@dataclass(frozen=True)
class Prompt:
    text: str  # for local causal LMs: the whole prompt; the answer continues it directly
    messages: list[dict[str, str]]  # for chat APIs
    continuations: list[str]  # loglik candidates, one per choice (choice texts or letters)


def build_prompts(questions: list[Question], eval_cfg: EvalConfig, chat: ChatFormat | None = None) -> list[Prompt]:
    """One prompt per question; exemplars come from the suite itself but never are the question asked."""
    pool = [q for q in questions if not q.is_calculation][: eval_cfg.shots + 1]
    build = _jmedlora_prompt if eval_cfg.prompt == EvalPrompt.jmedlora else _igakuqa_prompt
    return [build(q, [e for e in pool if e.problem_id != q.problem_id][: eval_cfg.shots], chat) for q in questions]


def answer_text(question: Question, prompt_style: str) -> str:
    """The gold answer as the exemplars write it: choice texts (jmedlora) or letters (igakuqa)."""
    gold = sorted(question.gold_sets[0])
    if question.is_calculation:
        return gold[0]
    if prompt_style == EvalPrompt.jmedlora:
        return ANSWER_SEPARATOR.join(map(question.choice_text, gold))
    return ",".join(gold)


def _jmedlora_prompt(question: Question, exemplars: list[Question], chat: ChatFormat | None) -> Prompt:
    if chat is not None:
        turns = [text for e in exemplars for text in (user_content(*_jmedlora_parts(e)), answer_text(e, "jmedlora"))]
        messages = chat.conversation(*turns, user_content(*_jmedlora_parts(question)))
        return Prompt(chat.render_prompt(messages), messages, list(question.choices))
    shots = "".join(_jmedlora_query(e) + answer_text(e, "jmedlora") + "\n\n" for e in exemplars)
    text = shots + _jmedlora_query(question)
    return Prompt(text, [{"role": "user", "content": text}], list(question.choices))


def _jmedlora_query(question: Question) -> str:
    return get_template("alpaca_ja").render(*_jmedlora_parts(question))


def _jmedlora_parts(question: Question) -> tuple[str, str]:
    """(instruction, input) of a question as the study words it."""
    if question.is_calculation:
        return "次の医学の問題に数値で答えてください。", question.problem_text
    joined = f"「{ANSWER_SEPARATOR}」で区切って" if question.n_answers > 1 else ""  # the authors' separator
    instruction = (
        f"次の医学の問題について、選択肢の中から正しいものを{question.n_answers}つ選び、"
        f"その選択肢をそのまま{joined}答えてください。"
    )
    options = "\n".join(f"・{choice}" for choice in question.choices)
    return instruction, f"{question.problem_text}\n\n選択肢:\n{options}"


def _igakuqa_prompt(question: Question, exemplars: list[Question], chat: ChatFormat | None) -> Prompt:
    messages = [{"role": "system", "content": IGAKUQA_SYSTEM}]
    for exemplar in exemplars:
        messages += [
            {"role": "user", "content": _igakuqa_query(exemplar)},
            {"role": "assistant", "content": answer_text(exemplar, "igakuqa")},
        ]
    messages.append({"role": "user", "content": _igakuqa_query(question)})
    if chat is not None:
        return Prompt(chat.render_prompt(messages), messages, list(question.labels))
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
