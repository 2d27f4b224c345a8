"""Question loading: an IgakuQA tree in the real layout (written here), filters, and bad records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medtune.config import EvalConfig
from medtune.errors import ConfigError, DataError
from medtune.qa_data import load_questions

FIVE = ["選択肢1", "選択肢2", "選択肢3", "選択肢4", "選択肢5"]
TREE = {
    "2018/112-A.jsonl": [
        {"problem_id": "112A1", "problem_text": "高アンモニア血症をきたす疾患はどれか。", "choices": FIVE,
         "text_only": True, "answer": ["e"], "points": "1"},
        {"problem_id": "112A12", "problem_text": "原因として考えられるのはどれか。2つ選べ。", "choices": FIVE,
         "text_only": True, "answer": ["d", "e"], "points": "1"},
        {"problem_id": "112A14", "problem_text": "写真を別に示す。", "choices": ["①", "②", "③", "④", "⑤"],
         "text_only": False, "answer": ["b", "c"], "points": "1"},
    ],
    "2018/112-A_metadata.jsonl": [
        {"problem_id": "112A1", "category": "小児科", "kinki": [], "human_accuracy": "39.3"},
        {"problem_id": "112A12", "category": "循環器", "kinki": [], "human_accuracy": "93.7"},
    ],
    "2018/112-A_translate.jsonl": [
        {"problem_id": "112A1", "problem_text_en": "Which causes hyperammonemia?", "choices_en": FIVE},
    ],
    "2018/112-B.jsonl": [
        {"problem_id": "112B30", "problem_text": "対応として正しいのはどれか。", "choices": FIVE,
         "text_only": True, "answer": ["a or d"], "points": "3"},
    ],
    "2022/116-A.jsonl": [
        {"problem_id": "116A71", "problem_text": "正しいのはどれか。", "choices": FIVE, "text_only": True,
         "answer": ["c"], "points": "1"},
        {"problem_id": "116A9", "problem_text": "該当するのはどれか。", "choices": [*FIVE, "選択肢6", "選択肢7"],
         "text_only": True, "answer": ["g"], "points": 0},
        {"problem_id": "116C31", "problem_text": "投与量を求めよ。小数点以下を四捨五入すること。", "choices": [],
         "text_only": True, "answer": ["70"], "points": "1"},
    ],
}  # fmt: skip


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def igakuqa(tmp_path: Path) -> Path:
    """A clone-shaped tree: <root>/data/<year>/<exam>-<block>.jsonl plus sibling metadata and translations."""
    for relative, records in TREE.items():
        write_jsonl(tmp_path / "IgakuQA" / "data" / relative, records)
    (tmp_path / "IgakuQA" / "README.md").write_text("IgakuQA\n")
    return tmp_path / "IgakuQA"


def cfg(path: Path | str | None, source: str = "igakuqa", **overrides) -> EvalConfig:
    return EvalConfig(source=source, path=str(path) if path else None, **{"text_only": False, **overrides})


def test_igakuqa_tree_loads_every_block_in_order_with_year_exam_and_category(igakuqa):
    questions = load_questions(cfg(igakuqa))
    assert [q.problem_id for q in questions] == ["112A1", "112A12", "112A14", "112B30", "116A71", "116A9", "116C31"]
    first = questions[0]
    assert (first.year, first.exam, first.category, first.points) == (2018, "112-A", "小児科", 1)
    assert questions[2].category is None  # no metadata row for it
    assert questions[3].points == 3 and questions[3].gold_sets == [frozenset("a"), frozenset("d")]
    assert questions[5].points == 0 and questions[5].labels == "abcdefg"
    assert questions[6].is_calculation and questions[6].gold_texts() == ["70"]


def test_path_may_be_the_clone_or_its_data_folder(igakuqa):
    assert load_questions(cfg(igakuqa)) == load_questions(cfg(igakuqa / "data"))


def test_year_text_only_and_limit_filters(igakuqa):
    assert {q.year for q in load_questions(cfg(igakuqa, years=[2022]))} == {2022}
    assert "112A14" not in [q.problem_id for q in load_questions(cfg(igakuqa, text_only=True))]
    assert len(load_questions(cfg(igakuqa, limit=2))) == 2


def test_jsonl_and_jjsimqa_files_read_the_same_record_shape(tmp_path):
    path = write_jsonl(tmp_path / "jjsimqa.jsonl", TREE["2018/112-A.jsonl"])
    for source in ("jsonl", "jjsimqa"):
        questions = load_questions(cfg(path, source=source))
        assert [q.answer for q in questions] == [["e"], ["d", "e"], ["b", "c"]]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "malformed JSON"),
        ('{"problem_id": "Q2", "choices": ["a", "b"], "answer": ["a"]}', "'problem_text'"),
        ('{"problem_id": "Q2", "problem_text": "?", "choices": ["x", "y"], "answer": ["c"]}', "not among the 2"),
        ('{"problem_id": "Q2", "problem_text": "?", "choices": ["x"], "answer": ["a"], "points": "三"}', "'points'"),
        ('{"problem_id": "Q2", "problem_text": "?", "choices": "x,y", "answer": ["a"]}', "'choices'"),
        ('{"problem_id": "Q2", "problem_text": "?", "choices": ["x"], "answer": []}', "'answer'"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_malformed_records_name_file_line_and_field(tmp_path, line, message):
    good = json.dumps(TREE["2018/112-A.jsonl"][0], ensure_ascii=False)
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2") as err:
        load_questions(cfg(path, source="jsonl"))
    assert message in str(err.value)


def test_malformed_metadata_is_located_too(igakuqa):
    (igakuqa / "data" / "2018" / "112-A_metadata.jsonl").write_text('{"problem_id": "112A1"}\n{oops\n')
    with pytest.raises(DataError, match=r"112-A_metadata\.jsonl:2"):
        load_questions(cfg(igakuqa))


def test_missing_or_wrong_paths_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"eval\.path"):
        load_questions(cfg(None))
    with pytest.raises(DataError, match="does not exist"):
        load_questions(cfg(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no <year>/ folders"):
        load_questions(cfg(tmp_path))
    with pytest.raises(DataError, match="no questions left"):
        load_questions(cfg(write_jsonl(tmp_path / "q.jsonl", TREE["2018/112-A.jsonl"]), source="jsonl", years=[1999]))
