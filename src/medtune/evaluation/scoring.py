"""Answers → scores: metrics.json (the flat metrics) and predictions.jsonl (one row per question asked)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from medtune.evaluation.answer import Answer
from medtune.evaluation.metrics import (
    ANSWER_SEPARATOR,
    Interpretation,
    QuestionScore,
    aggregate,
    letters_match,
    score_interpretation,
    score_question,
)
from medtune.evaluation.prompts import Prompt
from medtune.qa_data import Question, QuestionSet
from medtune.run_dir import METRICS_FILE, PREDICTIONS_FILE, write_json, write_text


def top_choices(question: Question, scores: list[float]) -> Interpretation:
    """The n_answers highest-scoring choices as the model's answer."""
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[: question.n_answers]
    letters = tuple(sorted(question.labels[i] for i in ranked))
    return Interpretation(letters, ANSWER_SEPARATOR.join(map(question.choice_text, letters)))


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
    metrics = _metrics(questions, prompts, answers, scores)
    metrics["eval_seconds"] = seconds
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = [_prediction_row(q, p, a, s) for q, p, a, s in zip(questions, prompts, answers, scores, strict=True)]
    write_text(output_dir / PREDICTIONS_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    n_failed = int(metrics["n_failed"])
    if n_failed > max_failed_share * len(questions):
        failed = {"status": "failed", "n_questions": len(questions), "n_failed": n_failed}
        write_json(output_dir / METRICS_FILE, failed)
        from medtune.api_client import ApiFailed  # its module imports openai, which a local model never needs

        raise ApiFailed(_failed_message(questions, answers, n_failed, max_failed_share, output_dir))
    write_json(output_dir / METRICS_FILE, metrics)
    return metrics


def _metrics(
    questions: list[Question], prompts: list[Prompt], answers: list[Answer], scores: list[QuestionScore]
) -> dict[str, float]:
    published = [i for i, q in enumerate(questions) if q.rotation == 0]
    metrics = aggregate([questions[i] for i in published], [scores[i] for i in published])
    metrics.update(normalized_accuracies([questions[i] for i in published], [prompts[i] for i in published],
                                         [answers[i] for i in published], [scores[i] for i in published]))  # fmt: skip
    metrics.update(lm_eval_accuracies(*([seq[i] for i in published] for seq in (questions, prompts, answers))))
    metrics.update(permutation_metrics(questions, scores))
    metrics.update(exclusion_counts(questions))
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


LM_EVAL_METRICS = {  # lm-evaluation-harness 0.4 multiple_choice metric → a choice's length (text without delimiter)
    "lm_eval/acc": lambda text: 1,
    "lm_eval/acc_norm": len,
    "lm_eval/acc_bytes": lambda text: len(text.encode("utf-8")),
}


def lm_eval_accuracies(questions: list[Question], prompts: list[Prompt], answers: list[Answer]) -> dict[str, float]:
    """lm-eval's acc / acc_norm / acc_bytes from the same pass: right when the single top choice is any gold answer
    (also on a k-answer question). With eval.loglik_convention=lm_eval these equal lm-eval's own figures."""
    scored = [(q, p, a) for q, p, a in zip(questions, prompts, answers, strict=True) if a.choice_scores]
    if not scored:
        return {}
    metrics = {}
    for name, length in LM_EVAL_METRICS.items():
        correct = []
        for question, prompt, answer in scored:
            normalized = [s / length(t) for s, t in zip(answer.choice_scores, prompt.continuations, strict=True)]
            top = max(range(len(normalized)), key=lambda i: normalized[i])  # first of ties, as numpy's argmax
            correct.append(any(question.labels[top] in gold for gold in question.gold_sets))
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
