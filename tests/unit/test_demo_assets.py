"""The bundled demo data is well-formed, consistent with its fact table, leak-free, and reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from medtune import demo_assets
from medtune.evaluation.metrics import ANSWER_SEPARATOR

from helpers import REPO

GENERATED = {
    "demo_train.jsonl": demo_assets.train_path,
    "demo_heldout.jsonl": demo_assets.heldout_path,
    "demo_questions.jsonl": demo_assets.questions_path,
    "medical_corpus.txt": demo_assets.corpus_path,
}


def read_jsonl(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and all(line.strip() for line in lines), f"{path.name}: empty file or blank line"
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def facts() -> dict:
    return json.loads(demo_assets.facts_path().read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def train() -> list[dict]:
    return read_jsonl(demo_assets.train_path())


@pytest.fixture(scope="module")
def heldout() -> list[dict]:
    return read_jsonl(demo_assets.heldout_path())


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return read_jsonl(demo_assets.questions_path())


def answer_sets(facts: dict) -> list[set[str]]:
    """The gold answers of every fact, single-answer and two-answer alike."""
    return [{f["answer"]} for f in facts["facts"]] + [set(f["answers"]) for f in facts["two_answer_facts"]]


def answers_of(output: str) -> list[str]:
    """The answer(s) an output starts with: "メトホルミン。…" → [メトホルミン]; "A,B" → [A, B]."""
    return output.split("。")[0].split(ANSWER_SEPARATOR)


def test_fact_answers_are_short_and_distinct_within_a_category(facts):
    by_category: dict[str, list[str]] = {}
    for fact in facts["facts"]:
        assert 1 <= len(fact["answer"]) <= 12, fact["id"]
        by_category.setdefault(fact["category"], []).append(fact["answer"])
    assert set(by_category) == {c["id"] for c in facts["categories"]}
    for category, answers in by_category.items():
        assert len(answers) == len(set(answers)), category


@pytest.mark.parametrize("name", ["demo_train.jsonl", "demo_heldout.jsonl"])
def test_instruction_records_have_nonempty_string_fields(name):
    for number, record in enumerate(read_jsonl(GENERATED[name]()), start=1):
        assert set(record) == {"instruction", "input", "output"}, (name, number)
        assert all(isinstance(record[key], str) for key in record), (name, number)
        assert record["instruction"].strip() and record["output"].strip(), (name, number)


def test_every_output_starts_with_a_fact_answer(facts, train, heldout):
    known = set().union(*answer_sets(facts))
    for record in train + heldout:
        assert set(answers_of(record["output"])) <= known, record


def test_each_fact_is_taught_three_or_four_times_and_a_fifth_is_multiple_choice(facts, train):
    for fact in facts["facts"]:
        teaching = [r for r in train if fact["subject"] in r["instruction"] + r["input"]]
        taught = sum(answers_of(r["output"]) == [fact["answer"]] for r in teaching)
        assert 3 <= taught <= 4, fact["id"]
    multiple_choice = sum("\n" in r["input"] for r in train)
    assert 0.15 <= multiple_choice / len(train) <= 0.3


def test_questions_are_well_formed_five_choice_items(questions, facts):
    assert len(questions) == len(facts["facts"]) + len(facts["two_answer_facts"])
    assert len({q["problem_id"] for q in questions}) == len(questions)
    for q in questions:
        assert q["problem_text"].endswith("どれか。") or q["problem_text"].endswith("2つ選べ。"), q["problem_id"]
        assert len(q["choices"]) == 5 and len(set(q["choices"])) == 5, q["problem_id"]
        assert all(isinstance(c, str) and c.strip() for c in q["choices"]), q["problem_id"]
        assert len(set(q["answer"])) == len(q["answer"]) and set(q["answer"]) <= set("abcde"), q["problem_id"]
        assert len(q["answer"]) == (2 if "2つ選べ" in q["problem_text"] else 1), q["problem_id"]


def test_question_gold_is_a_fact_and_distractors_are_wrong_answers_of_its_category(questions, facts):
    sets = answer_sets(facts)
    also_true = {f["answer"]: set(f.get("also_true", ())) for f in facts["facts"]}
    for q in questions:
        gold = {q["choices"]["abcde".index(letter)] for letter in q["answer"]}
        assert gold in sets, q["problem_id"]
        wrong = set(q["choices"]) - gold
        assert not wrong & set().union(*(also_true.get(g, set()) for g in gold)), q["problem_id"]
        assert not any(wrong & s for s in sets if s & gold), q["problem_id"]  # a distractor never is a gold answer


def test_single_answer_gold_positions_are_balanced(questions):
    positions = Counter(q["answer"][0] for q in questions if len(q["answer"]) == 1)
    assert set(positions) == set("abcde")
    assert max(positions.values()) - min(positions.values()) <= 1


def test_every_question_gold_answer_is_taught_in_training(questions, train):
    taught = {answer for r in train for answer in answers_of(r["output"])}
    for q in questions:
        for letter in q["answer"]:
            assert q["choices"]["abcde".index(letter)] in taught, q["problem_id"]


def test_no_question_text_leaks_into_training(questions, train):
    training_text = "\n".join(r["instruction"] + "\n" + r["input"] for r in train)
    for q in questions:
        assert q["problem_text"] not in training_text, q["problem_id"]


def test_heldout_phrasings_are_unseen_in_training(heldout, train):
    train_instructions = {r["instruction"] for r in train}
    train_inputs = "\n".join(r["input"] for r in train)
    for record in heldout:
        assert record["instruction"] not in train_instructions, record
        assert record["instruction"] not in train_inputs, record


def test_corpus_states_every_answer_one_paragraph_per_line(facts):
    corpus = demo_assets.corpus_path().read_text(encoding="utf-8")
    assert 40_000 <= len(corpus.encode("utf-8")) <= 80_000
    assert corpus.endswith("\n") and "\n\n" not in corpus
    for answers in answer_sets(facts):
        for answer in answers:
            assert answer in corpus, answer


@pytest.mark.subprocess  # starts a program of its own
def test_builder_reproduces_committed_files_byte_for_byte(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_demo_data.py"), "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    for name, path in GENERATED.items():
        assert (tmp_path / name).read_bytes() == path().read_bytes(), f"{name} differs: re-run the builder"


@pytest.mark.subprocess  # starts a program of its own
def test_builder_rejects_a_fact_table_with_duplicate_answers(tmp_path, facts):
    broken = json.loads(json.dumps(facts))
    broken["facts"][1]["answer"] = broken["facts"][0]["answer"]
    (tmp_path / "facts.json").write_text(json.dumps(broken, ensure_ascii=False), encoding="utf-8")
    arguments = ["--facts", str(tmp_path / "facts.json"), "--out-dir", str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_demo_data.py"), *arguments],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "distinct" in proc.stderr
