"""Each published benchmark layout and quirk, reproduced in small fixtures written here (no third-party data).

Layouts as published in jungokasai/IgakuQA (data/<year>/ tree), aistairc/medLLM_QA_benchmark
(data/ja/{IgakuQA,JJSIMQA,DenQA}/*.jsonl) and naoto-iwase/JMLE2026-Bench (jmle2026_dataset.json).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from medtune.config import EvalConfig, HubFieldsConfig
from medtune.errors import DataError
from medtune.qa_data import load_questions, rotate

FIVE = ["選択肢1", "選択肢2", "選択肢3", "選択肢4", "選択肢5"]


def record(problem_id: str, answer, choices=FIVE, **extra) -> dict:
    return {"problem_id": problem_id, "problem_text": "どれか。", "choices": choices, "text_only": True,
            "answer": answer, "points": "1", **extra}  # fmt: skip


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def load(path: Path, source: str = "jsonl", **overrides):
    return load_questions(EvalConfig(suite="t", source=source, path=str(path), **{"text_only": False, **overrides}))


def test_jjsimqa_answer_list_with_a_separator_token_loads_with_one_located_warning(tmp_path, caplog):
    # jjsimqa.jsonl line 27 publishes ["d", ",", "e"]; JJSIMQA's points are floats (1.0)
    path = write_jsonl(tmp_path / "jjsimqa.jsonl", [record("107_1-0", ["a"], points=1.0),
                                                    record("107_888-26", ["d", ",", "e"], points=1.0)])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="medtune.qa_data"):
        questions = load(path, source="jjsimqa")
        load(path, source="jjsimqa")  # evaluate.py reads a suite twice (config check, then evaluation)
    assert [q.answer for q in questions] == [["a"], ["d", "e"]] and questions[1].points == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"{path}:2: stray ',' removed from answer"]


def test_denqa_na_answers_are_excluded_and_counted_string_answers_warn(tmp_path, caplog):
    # denqa.jsonl: "NA" (no official answer) with 5 or 0 choices; 6, 7 and 8 choices; image questions
    path = write_jsonl(tmp_path / "denqa.jsonl", [
        record("116A1", ["a"]),
        record("116A85", "NA", text_only=False),
        record("116A90", "NA", choices=[]),
        record("116B66", ["d"], choices=[f"肢{i}" for i in range(8)], text_only=False),
        record("116D53", ["f"], choices=[f"肢{i}" for i in range(6)]),
        record("117A88", ["b"], choices=[f"肢{i}" for i in range(7)]),
        record("117X1", "c"),
    ])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="medtune.qa_data"):
        questions = load(path, text_only=True)
    assert [q.problem_id for q in questions] == ["116A1", "116D53", "117A88", "117X1"]
    assert questions.excluded == {"no_official_answer": 2, "image": 1}
    assert questions[3].answer == ["c"] and [len(q.choices) for q in questions[1:3]] == [6, 7]
    assert [r.getMessage() for r in caplog.records] == [f"{path}:7: answer is a string, read as the list ['c']"]


def test_igakuqa_single_file_gives_year_exam_and_section_from_the_id(tmp_path):
    # medLLM_QA_benchmark's data/ja/IgakuQA/igakuqa.jsonl: the 2,000 tree records in one file
    path = write_jsonl(tmp_path / "igakuqa.jsonl", [
        record("112A1", ["e"]), record("112B30", ["a or d"], points="3"),
        record("116F74", ["04"], choices=[]), record("113F83", ["g"], choices=list("ａｂｃｄｅｆｇｈ")),
    ])  # fmt: skip
    questions = load(path, source="igakuqa")
    assert [(q.year, q.exam, q.section) for q in questions] == [
        (2018, "112-A", "general"), (2018, "112-B", "required"), (2022, "116-F", "general"), (2019, "113-F", "general")
    ]  # fmt: skip
    assert questions[1].points == 3 and questions[2].is_calculation


def test_an_unreadable_record_still_stops_with_file_line_field(tmp_path):
    path = write_jsonl(tmp_path / "denqa.jsonl", [record("1", ["a"]), record("2", ["a", ","], choices="x")])
    with pytest.raises(DataError, match=r"denqa\.jsonl:2: .*'choices'"):
        load(path)


JMLE = [
    {"question_id": "120A-1", "block": "A", "number": 1, "question_type": "multiple_choice",
     "question_text": "1　適切なのはどれか。\n\na　緊急手術\n\nb　ドレナージ\n\nc　抗癌治療\n\nd　PPI\n\ne　クリップ",
     "clinical_images": [], "requires_image": False, "num_choices_to_select": 1, "answer": ["a"]},
    {"question_id": "120A-74", "block": "A", "number": 74, "question_type": "calculation",
     "question_text": "74　推定１日尿蛋白量を求めよ。\n\n解答：①．②③ g/gCr", "clinical_images": [],
     "requires_image": False, "num_choices_to_select": 1, "answer": ["0.40"]},
    {"question_id": "120B-41", "block": "B", "number": 41, "question_type": "multiple_choice",
     "question_text": "41　頸部に認める所見はどれか。\n　a　気管短縮\n　b　甲状腺腫\n　c　正中頸嚢胞",
     "clinical_images": ["120B-41-42_1.png"], "requires_image": True, "num_choices_to_select": 1, "answer": ["a"],
     "serial_group": {"group_id": "120B-41-42", "questions": ["120B-41", "120B-42"], "context_text": "84歳の男性。"}},
    {"question_id": "120E-42", "block": "E", "number": 42, "question_type": "multiple_choice",
     "question_text": "42　最も考えられるのはどれか。\n\n　a　脳震盪\n\n　b　下顎骨折", "clinical_images": [],
     "requires_image": False, "num_choices_to_select": 1, "answer": ["b"],
     "serial_group": {"group_id": "120E-41-42", "questions": ["120E-41", "120E-42"], "context_text": "15歳の男子。"}},
    {"question_id": "120E-3", "block": "E", "number": 3, "question_type": "multiple_choice",
     "question_text": "3　費用対効果が最も高いのはどれか。\n\n|　|費用|割合|\n|a|80,000円|80%|\n|b|70,000円|90%|",
     "clinical_images": [], "requires_image": False, "num_choices_to_select": 1, "answer": ["b"]},
]  # fmt: skip


def write_jmle(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def test_jmle2026_array_choices_inside_the_text_serial_context_and_points_by_block(tmp_path):
    questions = load(write_jmle(tmp_path / "jmle2026_dataset.json", JMLE), source="jmle")
    first, calc, image, serial, table = questions
    assert first.choices == ["緊急手術", "ドレナージ", "抗癌治療", "PPI", "クリップ"]
    assert first.problem_text == "適切なのはどれか。" and first.year == 2026 and first.exam == "120-A"
    assert calc.is_calculation and calc.answer == ["0.40"]
    assert not image.text_only and image.choices == ["気管短縮", "甲状腺腫", "正中頸嚢胞"]
    assert serial.problem_text.startswith("15歳の男子。\n\n最も考えられるのは")
    assert table.choices == ["80,000円 | 80%", "70,000円 | 90%"] and "|費用|割合|" in table.problem_text
    assert [(q.section, q.points) for q in questions] == [
        ("general", 1), ("general", 1), ("required", 3), ("required", 3), ("required", 1)
    ]  # fmt: skip


def test_jmle2026_unreadable_choices_are_located_by_line(tmp_path):
    broken = {**JMLE[0], "question_id": "120A-2", "question_text": "2　どれか。\n\nb　x\n\nc　y"}
    path = write_jmle(tmp_path / "jmle.json", [JMLE[0], broken])
    with pytest.raises(DataError, match=r"jmle\.json:15: .*'question_text'"):
        load(path, source="jmle")


@pytest.mark.parametrize(
    ("answer_format", "answers", "gold"),
    [
        ("index1", [2, [1, 3]], [["b"], ["a", "c"]]),
        ("index0", [1, 0], [["b"], ["a"]]),
        ("letter", ["B", ["a", "c"]], [["b"], ["a", "c"]]),
    ],
)
def test_hub_datasets_load_through_a_field_mapping(tmp_path, answer_format, answers, gold):
    datasets = pytest.importorskip("datasets")
    rows = {
        "id": ["101001", "101002"],
        "problem_text": ["どれか。", "2つ選べ。"],
        "choices": [["x", "y", "z"], ["x", "y", "z"]],
        "answer": [[str(x) for x in (a if isinstance(a, list) else [a])] for a in answers],
    }
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "saved"))
    hub = HubFieldsConfig(
        id="id", question="problem_text", choices=["choices"], answer="answer", answer_format=answer_format
    )
    questions = load(tmp_path / "saved", source="hf", hub=hub)
    assert [q.answer for q in questions] == gold and questions[0].problem_id == "101001"


def test_hub_json_files_with_one_column_per_choice_and_located_errors(tmp_path):
    path = tmp_path / "mc.jsonl"
    write_jsonl(
        path,
        [
            {"question": "どれか。", "opa": "x", "opb": "y", "cop": 1},
            {"question": "?", "opa": "x", "opb": "y", "cop": 7},
        ],
    )
    hub = HubFieldsConfig(
        split="train", data_files=str(path), choices=["opa", "opb"], answer="cop", answer_format="index0"
    )
    with pytest.raises(DataError, match=r"json\[train\]:2: letters \['h'\] are not among the 2 choices"):
        load("json", source="hf", hub=hub)
    write_jsonl(path, [{"question": "どれか。", "opa": "x", "opb": "y", "cop": 1}])
    assert load("json", source="hf", hub=hub)[0].answer == ["b"]


def test_permutations_rotate_choices_and_remap_every_gold_letter(tmp_path):
    path = write_jsonl(
        tmp_path / "q.jsonl", [record("Q1", ["a", "c"]), record("Q2", ["a or d"]), record("Q3", ["7"], choices=[])]
    )
    questions = load(path, permutations=3)
    assert [(q.problem_id, q.rotation) for q in questions] == [
        ("Q1", 0), ("Q2", 0), ("Q3", 0), ("Q1", 1), ("Q2", 1), ("Q1", 2), ("Q2", 2)
    ]  # fmt: skip
    for q in questions[3:]:
        original = questions[[p.problem_id for p in questions].index(q.problem_id)]
        assert {frozenset(map(q.choice_text, g)) for g in q.gold_sets} == {
            frozenset(map(original.choice_text, g)) for g in original.gold_sets
        }
    assert rotate(questions[0], 1).choices[0] == FIVE[1] and rotate(questions[0], 1).answer == ["e", "b"]
