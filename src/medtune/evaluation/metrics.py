"""QA scores: the JMedLoRA paper's text metrics and the IgakuQA benchmark's official scoring.

Paper metrics compare the response text R with the correct choice text C*:
- `exact_match`: R == C*;
- `gestalt`: difflib's Ratcliff/Obershelp ratio, averaged over both argument orders because
  `SequenceMatcher(None, a, b).ratio()` is not symmetric (its junk heuristic and matching-block
  search depend on which string is `b`), as the authors' code does;
- `accuracy`: the choice most similar to R is C* (the k most similar, as a set, for "2つ選べ").

Official IgakuQA scoring (its scripts/evaluate_main.py) compares letter sets exactly, no partial
credit, with its special cases: "a or d" golds accept either letter, question 116A71 (withdrawn)
credits every answer, points come as strings and may be 0 (counted in accuracy, not in points),
and calculation questions without choices compare numbers. The official score credits only the
letters (or number) a response actually names: a reply naming none is wrong and counted
(`n_unparsed`), while the paper's accuracy still maps it to its most similar choice, as the
authors' code does.
A k-answer response is the choice texts joined by ANSWER_SEPARATOR, the form the exemplars show: ",", as the
authors' harness (japanese-lm-med-harness, eval_bench.py) joins the gold choice texts and lists the choices, so
exact match equals theirs on k-answer questions too. Exact match, gestalt and the similarity mapping read the
response with "." removed and outer spaces stripped, their cleansing.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from medtune.qa_data import Question

ANSWER_SEPARATOR = ","  # joins the choice texts of a k-answer response (the authors' harness)
READ_SEPARATORS = (ANSWER_SEPARATOR, "、")  # either names the choices (official scoring); exact match wants ","
ALL_CORRECT_IDS = frozenset({"116A71"})  # withdrawn after the exam: the official scorer credits any answer
_LETTER_LIST = re.compile(r"([a-z](?:\s*[,、，・/]\s*[a-z])*)(?=$|[\s:：.．)）])")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Interpretation:
    """What a raw response answers: the letters it picks and the answer text it stands for."""

    letters: tuple[str, ...]  # the paper's answer: sorted choice letters, or (number,) for calculation questions
    text: str  # the response as answer text; letters-only responses become their choice texts
    parsed: bool = True  # False: no letter, number or exact choice texts in the response
    named: tuple[str, ...] | None = None  # what the response names, where that differs from `letters`

    @property
    def official_letters(self) -> tuple[str, ...]:
        """The letters the official scorer credits: those the response names."""
        return self.letters if self.named is None else self.named


@dataclass(frozen=True)
class QuestionScore:
    interpretation: Interpretation
    exact_match: bool
    gestalt: float
    correct: bool  # paper accuracy: most similar choice(s) == gold
    official_correct: bool  # IgakuQA scorer
    points: int  # points awarded by the official scorer
    failed: bool = False  # no response at all (e.g. an API call that failed after retries)
    unparsed: bool = False  # a response that names no letter / number: officially wrong


def gestalt(a: str, b: str) -> float:
    """Ratcliff/Obershelp similarity in [0, 1], symmetric: mean of both difflib argument orders."""
    forward = difflib.SequenceMatcher(None, a, b).ratio()
    backward = difflib.SequenceMatcher(None, b, a).ratio()
    return (forward + backward) / 2


def normalize(text: str) -> str:
    """Full-width → half-width (NFKC), lower case, first line only, outer spaces and 。 removed."""
    text = unicodedata.normalize("NFKC", text).lower().strip()
    first_line = text.splitlines()[0] if text else ""
    return first_line.strip().rstrip("。.").strip()


def parse_letters(response: str, labels: str) -> tuple[str, ...] | None:
    """Letters of a letters-only answer ("c", "a,e", "ｂ、ｄ", "c: 心室中隔穿孔"), else None."""
    match = _LETTER_LIST.match(normalize(response).lstrip("([（"))
    if not match:
        return None
    letters = tuple(sorted(set(re.findall(r"[a-z]", match.group(1)))))
    return letters if set(letters) <= set(labels) else None


def parse_choice_texts(text: str, question: Question) -> tuple[str, ...] | None:
    """Letters of a response that is exactly choice texts (the jmedlora answer form), else None."""
    canonical = _canonical(text)
    if not canonical:
        return None
    by_text = {_canonical(choice): label for label, choice in zip(question.labels, question.choices, strict=True)}
    # Joined choices, not split text: a choice may hold the separator itself. The fewest choices win.
    readings = [r for separator in READ_SEPARATORS for r in _joined_readings(canonical, by_text, separator)]
    if not readings:
        return None
    return tuple(sorted(by_text[choice] for choice in min(readings, key=len)))


def _joined_readings(text: str, choices: Iterable[str], separator: str) -> Iterator[tuple[str, ...]]:
    """Every way to read `text` as distinct choices joined by `separator`, walking it choice by choice (a
    prefix match per step, so the work grows with the text, not with the permutations of the choices)."""
    for choice in choices:
        if text == choice:
            yield (choice,)
        elif text.startswith(choice + separator):
            rest = [c for c in choices if c != choice]
            yield from ((choice, *tail) for tail in _joined_readings(text[len(choice + separator) :], rest, separator))


def _canonical(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().rstrip("。.").strip()


def parse_number(response: str) -> str | None:
    match = _NUMBER.search(normalize(response).replace(",", ""))
    return match.group(0) if match else None


def most_similar(text: str, choices: list[str], k: int) -> tuple[int, ...]:
    """Indices of the k choices most similar to text (ties: earlier choice first)."""
    ranked = sorted(range(len(choices)), key=lambda i: (-gestalt(text, choices[i]), i))
    return tuple(sorted(ranked[:k]))


def interpret(response: str, question: Question) -> Interpretation:
    """Map a response to letters and answer text: letters → their choice texts, text → most similar choices."""
    text = normalize_response_text(response)
    if question.is_calculation:
        number = parse_number(response)
        return Interpretation(letters=(number,) if number else (), text=text, parsed=number is not None)
    letters = parse_letters(response, question.labels)
    if letters:
        return Interpretation(letters=letters, text=ANSWER_SEPARATOR.join(map(question.choice_text, letters)))
    picked = most_similar(_exact_form(text), question.choices, question.n_answers)
    similar = tuple(question.labels[i] for i in picked)  # the paper's answer, as the authors' code maps text
    named = parse_choice_texts(text, question)
    if named:
        return Interpretation(letters=similar, text=text, named=None if named == similar else named)
    return Interpretation(letters=similar, text=text, parsed=False)


def normalize_response_text(response: str) -> str:
    """The answer text of a generation: its first line, stripped (the model may ramble on after it)."""
    stripped = response.strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def gold_text(question: Question, gold: frozenset[str]) -> str:
    if question.is_calculation:
        return next(iter(gold))
    return ANSWER_SEPARATOR.join(question.choice_text(letter) for letter in sorted(gold))


def letters_match(question: Question, letters: tuple[str, ...]) -> bool:
    """Exact set equality with some accepted gold set (numbers compared as numbers)."""
    if question.is_calculation:
        return bool(letters) and any(_same_number(letters[0], next(iter(gold))) for gold in question.gold_sets)
    return frozenset(letters) in question.gold_sets


def _exact_form(text: str) -> str:
    """The authors' cleansing before exact match: every "." removed, outer spaces stripped."""
    return text.replace(".", "").strip()


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(unicodedata.normalize("NFKC", b))
    except ValueError:
        return a == b


def score_question(question: Question, response: str | None) -> QuestionScore:
    """All metrics of one raw response; `response=None` marks a failed call (scored wrong, counted)."""
    if response is None:
        return QuestionScore(Interpretation((), ""), False, 0.0, False, False, 0, failed=True)
    return score_interpretation(question, interpret(response, question))


def score_interpretation(question: Question, answer: Interpretation) -> QuestionScore:
    """All metrics of an answer already mapped to letters and text (loglik picks choices directly)."""
    golds = [gold_text(question, gold) for gold in question.gold_sets]
    correct = letters_match(question, answer.letters)
    named_right = letters_match(question, answer.official_letters)
    official = (named_right and answer.parsed) or question.problem_id in ALL_CORRECT_IDS
    return QuestionScore(
        interpretation=answer,
        exact_match=_exact_form(answer.text) in map(_exact_form, golds),
        gestalt=max(gestalt(_exact_form(answer.text), _exact_form(gold)) for gold in golds),
        correct=correct,
        official_correct=official,
        points=question.points if official else 0,
        unparsed=not answer.parsed,
    )


def aggregate(questions: list[Question], scores: list[QuestionScore]) -> dict[str, float]:
    """Flat metric dict over all questions plus `category/<name>/...` and `year/<year>/...` breakdowns."""
    metrics = _summary(questions, scores)
    for prefix, key in (("category", lambda q: q.category), ("year", lambda q: q.year)):
        for name, (group_q, group_s) in _group(questions, scores, key).items():
            for metric, value in _summary(group_q, group_s).items():
                if metric in ("accuracy", "official_accuracy", "points", "points_total", "n_questions"):
                    metrics[f"{prefix}/{name}/{metric}"] = value
            if prefix == "year":
                metrics.update({f"year/{name}/{k}": v for k, v in exam_result(int(name), group_q, group_s).items()})
    return metrics


@cache
def pass_lines() -> dict[int, dict[str, Any]]:
    """The licensing exam's pass lines by year (src/medtune/assets/pass_lines.yaml, each with its source)."""
    return yaml.safe_load(resources.files("medtune").joinpath("assets/pass_lines.yaml").read_text(encoding="utf-8"))


def exam_result(year: int, questions: list[Question], scores: list[QuestionScore]) -> dict[str, float]:
    """Would it pass? Section points and, where the year's line is known, pass (1.0) or fail (0.0).

    `required_pass` needs the required section's 80 %; `general_pass` the year's general line
    (as a share of its points); `passed` both. Keys are absent where the line is unknown.
    """
    result: dict[str, float] = {}
    line = pass_lines().get(year, {})
    rates: dict[str, float] = {}
    for section in ("required", "general"):
        pairs = [(q, s) for q, s in zip(questions, scores, strict=True) if q.section == section]
        total = sum(q.points for q, _ in pairs)
        if not total:
            continue
        got = sum(s.points for _, s in pairs)
        result[f"{section}_points"], result[f"{section}_total"] = float(got), float(total)
        rates[section] = got / total
    needed = {"required": line.get("required"), "general": _share(line.get("general"), line.get("general_of"))}
    for section, rate in rates.items():
        line_rate = needed[section]
        if line_rate is not None:
            result[f"{section}_pass"] = float(rate >= line_rate)
    if "required_pass" in result and "general_pass" in result:
        result["passed"] = float(result["required_pass"] and result["general_pass"])
    return result


def _share(points: float | None, of: float | None) -> float | None:
    return points / of if points is not None and of else None


def _summary(questions: list[Question], scores: list[QuestionScore]) -> dict[str, float]:
    n = len(scores)
    return {
        "accuracy": _mean(s.correct for s in scores),
        "exact_match": _mean(s.exact_match for s in scores),
        "gestalt": _mean(s.gestalt for s in scores),
        "official_accuracy": _mean(s.official_correct for s in scores),
        "points": float(sum(s.points for s in scores)),
        "points_total": float(sum(q.points for q in questions)),
        "n_questions": float(n),
        "n_failed": float(sum(s.failed for s in scores)),
        "n_unparsed": float(sum(s.unparsed for s in scores)),
    }


def _mean(values: Iterable[float]) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else 0.0


def _group(questions, scores, key) -> dict[str, tuple[list[Question], list[QuestionScore]]]:
    groups: dict[str, tuple[list[Question], list[QuestionScore]]] = defaultdict(lambda: ([], []))
    for question, score in zip(questions, scores, strict=True):
        if key(question) is not None:
            groups[str(key(question))][0].append(question)
            groups[str(key(question))][1].append(score)
    return dict(sorted(groups.items()))
