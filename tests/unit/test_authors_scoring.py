"""The paper's metrics equal the authors' own scoring question by question, k-answer questions included.

`authors_scores` restates the rules of japanese-lm-med-harness's `eval_bench.py` (the JMedLoRA authors' harness,
read on GitHub: stardust-coder/japanese-lm-med-harness): the gold answer is the gold choice texts joined with
","; exact match compares gold and response with every "." removed and outer spaces stripped; the gestalt of two
texts is the mean of both difflib argument orders; a response is right when its k most similar choices (ties:
the earlier choice) are the gold set. medtune's scores must agree on every demo question for every kind of
response a model gives with the `jmedlora` prompt (choice texts, in either order, with the punctuation models add).
"""

from __future__ import annotations

import difflib

import pytest

from medtune.demo_assets import questions_path
from medtune.evaluation.metrics import ANSWER_SEPARATOR, score_question
from medtune.qa_data import Question, read_questions_jsonl


def authors_scores(question: Question, response: str) -> tuple[bool, float, bool]:
    """(exact match, gestalt against the gold answer, gestalt match) as the authors' evaluate() computes them."""
    gold_list = [question.choice_text(letter) for letter in sorted(question.gold_sets[0])]
    gold = ",".join(gold_list).replace(".", "").strip()
    response = response.replace(".", "").strip()

    def similarity(a: str, b: str) -> float:
        return (difflib.SequenceMatcher(None, a, b).ratio() + difflib.SequenceMatcher(None, b, a).ratio()) / 2

    scores = [similarity(choice, response) for choice in question.choices]
    remaining, picked = list(question.choices), []
    for _ in gold_list:
        best = scores.index(max(scores))
        picked.append(remaining.pop(best))
        scores.pop(best)
    return gold == response, similarity(gold, response), sorted(picked) == sorted(gold_list)


def responses(question: Question) -> list[str]:
    """What models answer: the gold texts (both orders, "、"-joined, with "." or "。"), a wrong choice, noise."""
    gold = [question.choice_text(letter) for letter in sorted(question.gold_sets[0])]
    wrong = next(c for c in question.choices if c not in gold)
    return [
        ",".join(gold),
        ",".join(reversed(gold)),
        "、".join(gold),
        ",".join(gold) + ".",
        " " + ",".join(gold) + "。",
        wrong,
        wrong + "," + gold[0],
        gold[0][:-1],
        "わかりません",
        f"{gold[0]}です",
    ]


@pytest.fixture(scope="module")
def demo_questions() -> list[Question]:
    return [q for q in read_questions_jsonl(questions_path()) if isinstance(q, Question)]


def test_the_separator_is_the_authors_comma():
    assert ANSWER_SEPARATOR == ","


def test_demo_set_has_k_answer_questions(demo_questions):
    assert sum(q.n_answers > 1 for q in demo_questions) >= 4


def test_exact_match_gestalt_and_accuracy_equal_the_authors_on_every_question(demo_questions):
    compared = 0
    for question in demo_questions:
        for response in responses(question):
            ours = score_question(question, response)
            exact, similarity, right = authors_scores(question, response)
            assert (ours.exact_match, ours.correct) == (exact, right), (question.problem_id, response)
            assert ours.gestalt == pytest.approx(similarity, abs=1e-12), (question.problem_id, response)
            compared += 1
    assert compared == 10 * len(demo_questions)
