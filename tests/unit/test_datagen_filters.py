"""Pair validation, dedup and decontamination on Japanese examples."""

from __future__ import annotations

import json
from pathlib import Path

from medtune.config import EvalConfig
from medtune.datagen.config import FilterConfig
from medtune.datagen.dedup import QuestionText, SimilarityIndex, deduplicate, find_contamination
from medtune.datagen.filters import japanese_ratio, pair_problem, to_pair

FILTERS = FilterConfig()


def _problem(instruction: str, output: str) -> str | None:
    found = pair_problem({"instruction": instruction, "output": output}, FILTERS)
    return found[0] if found else None


def test_each_rule_names_its_reason() -> None:
    assert _problem("心房細動で脳梗塞を防ぐ薬は何ですか。", "抗凝固薬です。") is None
    assert _problem("心房細動で脳梗塞を防ぐ薬は何ですか。", "   "[:0]) == "empty"
    assert _problem("薬は？", "抗凝固薬です。") == "too_short"
    assert _problem("心房細動で脳梗塞を防ぐ薬は何ですか。", "あ" * 2000) == "too_long"
    assert _problem("What prevents stroke in AF patients?", "Anticoagulants.") == "not_japanese"
    assert _problem("本文によると、推奨される治療は何ですか。", "抗凝固療法です。") == "refers_to_passage"
    assert _problem("上記の症例で最も考えられる診断は何か。", "心房細動") == "refers_to_passage"


def test_japanese_ratio_ignores_digits_and_counts_english_terms() -> None:
    assert japanese_ratio("HbA1cは6.5%以上") == 3 / 7  # letters H b A c は 以 上; digits and % do not count
    assert japanese_ratio("心房細動") == 1.0 and japanese_ratio("123") == 0.0


def test_to_pair_reports_missing_and_non_string_fields() -> None:
    assert to_pair({"instruction": " 問 ", "output": "答", "input": ""}) == {"instruction": "問", "output": "答"}
    assert to_pair({"instruction": "問"}) == ("missing_field", "output")
    assert to_pair({"instruction": "問", "output": ["a"]}) == ("not_a_string", "output")


def _record(rid: str, instruction: str, output: str) -> dict[str, str]:
    return {"id": rid, "instruction": instruction, "output": output}


def test_exact_and_near_duplicates_are_removed_keeping_the_first() -> None:
    records = [
        _record("a", "心房細動の患者で脳梗塞を予防する薬は何ですか？", "ワルファリンや直接経口抗凝固薬です。"),
        _record(
            "b", "心房細動の患者で脳梗塞を予防する薬は何ですか", "ワルファリンや直接経口抗凝固薬です"
        ),  # punctuation only
        _record("c", "心房細動の患者で脳梗塞を予防する薬は何か？", "ワルファリンや直接経口抗凝固薬です。"),  # near
        _record("d", "2型糖尿病の診断に用いるHbA1cの基準値は？", "6.5%以上です。"),
    ]
    kept, rejects = deduplicate(records, n=3, threshold=0.8)
    assert [r["id"] for r in kept] == ["a", "d"]
    assert [(r["id"], r["reason"], r["detail"].split()[0]) for r in rejects] == [
        ("b", "exact_duplicate", "a"),
        ("c", "near_duplicate", "a"),
    ]


def test_character_similarity_sees_japanese_paraphrases_that_word_overlap_misses() -> None:
    index = SimilarityIndex(n=3, threshold=0.5)
    index.add("q", "心房細動の患者で脳梗塞を予防する薬は何ですか")
    assert [m.key for m in index.similar("心房細動患者の脳梗塞を予防する薬は何ですか")] == ["q"]
    assert index.similar("急性膵炎の初期治療で最も重要なものは何ですか") == []


def test_decontamination_flags_similar_and_copied_questions_from_a_real_eval_set(tmp_path: Path) -> None:
    from medtune.qa_data import load_questions

    exam = tmp_path / "exam.jsonl"
    question = {
        "problem_id": "116A1",
        "problem_text": "72歳の男性。動悸を主訴に来院した。心電図で心房細動を認める。"
        "脳梗塞予防に最も適切な薬はどれか。",
        "choices": ["アスピリン", "アピキサバン", "ジゴキシン", "ベラパミル", "アミオダロン"],
        "answer": ["b"],
    }
    exam.write_text(json.dumps(question, ensure_ascii=False) + "\n", encoding="utf-8")
    loaded = load_questions(EvalConfig(suite="exam", source="jsonl", path=str(exam)))
    questions = [QuestionText(f"exam/{q.problem_id}", q.problem_text) for q in loaded]
    records = [
        _record(
            "near", "72歳の男性が動悸を主訴に来院し、心電図で心房細動を認めた。脳梗塞予防に最も適切な薬は何か。", "DOAC"
        ),
        _record(
            "copy",
            "次の症例を考える。",
            "心電図で心房細動を認める。脳梗塞予防に最も適切な薬はどれか。という問いの答えはDOAC",
        ),
        _record("clean", "急性膵炎の重症度評価に用いる指標は何ですか。", "造影CTと予後因子で評価します。"),
    ]
    matches = find_contamination(records, questions, n=3, threshold=0.5, shared_chars=25)
    assert [(m["id"], m["question"]) for m in matches] == [("near", "exam/116A1"), ("copy", "exam/116A1")]
    assert matches[0]["similarity"] >= 0.5 and matches[1]["shared_chars"] == 25
