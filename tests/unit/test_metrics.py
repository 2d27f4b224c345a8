"""Paper metrics and IgakuQA's official scoring on hand-made cases, one per special case of the benchmark."""

from __future__ import annotations

import difflib
from dataclasses import replace

import pytest

from medtune.evaluation.metrics import aggregate, gestalt, interpret, parse_letters, score_question
from medtune.qa_data import Question

CHOICES = ["大動脈弁閉鎖不全症", "左室自由壁破裂", "解離性大動脈瘤", "心室中隔穿孔", "乳頭筋断裂"]


def question(answer, choices=CHOICES, problem_id="X1", points=1, **extra) -> Question:
    return Question(
        problem_id=problem_id, problem_text="どれか。", choices=choices, answer=answer, points=points, **extra
    )


def test_gestalt_averages_both_difflib_argument_orders():
    a, b = "babcbb", "bbcac"
    forward, backward = difflib.SequenceMatcher(None, a, b).ratio(), difflib.SequenceMatcher(None, b, a).ratio()
    assert forward != backward  # difflib itself is asymmetric on this pair
    assert gestalt(a, b) == gestalt(b, a) == pytest.approx((forward + backward) / 2) == pytest.approx(5 / 11)
    assert gestalt("心室中隔穿孔", "心室中隔穿孔") == 1.0
    assert gestalt("", "乳頭筋断裂") == 0.0


def test_text_response_is_scored_by_its_most_similar_choice_for_the_paper_only():
    score = score_question(question(["d"]), "心室中隔の穿孔です")
    assert score.interpretation.letters == ("d",)
    assert score.correct and not score.exact_match  # the paper's similarity-based accuracy
    assert not score.official_correct and score.unparsed and score.points == 0  # names no answer
    assert 0.5 < score.gestalt < 1.0


def test_a_non_answer_is_officially_wrong_even_when_the_similarity_tie_lands_on_the_gold():
    q = question(["a"], points=3)
    score = score_question(q, "わかりません")
    assert score.interpretation.letters == ("a",) and score.correct  # all similarities 0: tie goes to a
    assert not score.official_correct and score.points == 0 and score.unparsed
    metrics = aggregate([q, q], [score, score_question(q, "a")])
    assert metrics["n_unparsed"] == 1 and metrics["official_accuracy"] == 0.5 and metrics["accuracy"] == 1.0


def test_a_response_that_is_exactly_the_choice_texts_names_its_answer():
    score = score_question(question(["d", "e"]), "乳頭筋断裂、心室中隔穿孔。")
    assert score.official_correct and not score.unparsed
    assert score_question(question(["d"]), "ｄ").official_correct  # full-width letter


def test_a_response_naming_too_many_choices_is_officially_wrong_but_mapped_by_similarity_for_the_paper():
    score = score_question(question(["d"]), "心室中隔穿孔,乳頭筋断")  # names d (and almost e): top-1 similar is d
    assert score.correct and score.interpretation.letters == ("d",)
    named = score_question(question(["d"]), "心室中隔穿孔,乳頭筋断裂")  # names d and e exactly
    assert named.interpretation.official_letters == ("d", "e") and not named.official_correct


def test_k_answer_exact_match_wants_the_authors_comma_and_ignores_dots():
    q = question(["d", "e"])
    assert score_question(q, "心室中隔穿孔,乳頭筋断裂.").exact_match
    jp_comma = score_question(q, "心室中隔穿孔、乳頭筋断裂")
    assert not jp_comma.exact_match and jp_comma.official_correct  # it still names both choices


def test_a_choice_text_holding_the_separator_is_read_whole():
    choices = ["1,000 mL", "500 mL", "2,000 mL", "250 mL", "100 mL"]
    answer = interpret("2,000 mL,100 mL", question(["c", "e"], choices=choices))
    assert answer.official_letters == ("c", "e") and answer.parsed


def test_exact_match_needs_the_identical_choice_text():
    assert score_question(question(["d"]), "心室中隔穿孔\n理由: 雑音が出現したため").exact_match  # first line only
    assert not score_question(question(["b"]), "心室中隔穿孔").correct


@pytest.mark.parametrize(
    ("response", "letters"),
    [
        ("d", ("d",)),
        ("ｄ", ("d",)),  # full-width, as Japanese models often write
        (" D。", ("d",)),
        ("d,e", ("d", "e")),
        ("e、d", ("d", "e")),
        ("(d)", ("d",)),
        ("d: 心室中隔穿孔", ("d",)),
        ("B型肝炎の合併", None),  # a choice text that starts with a letter is not a letter answer
        ("Ectopic pregnancy", None),
        ("f", None),  # not among five choices
    ],
)
def test_letters_only_responses(response, letters):
    assert parse_letters(response, "abcde") == letters


def test_letters_only_response_is_mapped_to_its_choice_texts():
    answer = interpret("e,d", question(["d", "e"]))
    assert answer.letters == ("d", "e") and answer.text == "心室中隔穿孔,乳頭筋断裂"
    score = score_question(question(["d", "e"]), "e,d")
    assert score.exact_match and score.gestalt == 1.0 and score.correct


def test_two_answer_questions_take_the_top_two_choices_and_give_no_partial_credit():
    q = question(["d", "e"])
    assert score_question(q, "心室中隔穿孔、乳頭筋断裂").correct
    half = score_question(q, "d")
    assert not half.correct and not half.official_correct and half.points == 0


def test_a_or_d_gold_accepts_either_letter_but_not_both():
    q = question(["a or d"], problem_id="112B30", points=3)
    assert score_question(q, "a").official_correct and score_question(q, "d").official_correct
    assert score_question(q, "d").points == 3
    assert not score_question(q, "a,d").official_correct
    assert score_question(q, CHOICES[3]).correct  # text answers too


def test_withdrawn_question_116A71_credits_any_answer_officially():
    score = score_question(question(["c"], problem_id="116A71", points=1), "a")
    assert score.official_correct and score.points == 1
    assert not score.correct  # the paper's text accuracy is not rewritten


def test_more_than_five_choices_use_letters_past_e():
    choices = [*CHOICES, "Ebstein奇形", "肺動脈弁狭窄症"]
    q = question(["g"], choices=choices)
    assert q.labels == "abcdefg"
    assert score_question(q, "g").correct
    assert score_question(q, "肺動脈弁狭窄").interpretation.letters == ("g",)


@pytest.mark.parametrize(
    ("response", "correct"), [("70", True), ("７０", True), ("答えは70.0 mL", True), ("71", False)]
)
def test_calculation_questions_compare_numbers(response, correct):
    q = question(["70"], choices=[])
    assert q.is_calculation
    assert score_question(q, response).official_correct is correct


def test_zero_point_questions_count_in_accuracy_not_in_points():
    questions = [question(["a"], problem_id="A", points=0), question(["b"], problem_id="B", points=3)]
    scores = [score_question(questions[0], "a"), score_question(questions[1], "a")]
    metrics = aggregate(questions, scores)
    assert metrics["official_accuracy"] == 0.5
    assert (metrics["points"], metrics["points_total"]) == (0.0, 3.0)


def test_failed_calls_are_scored_wrong_and_counted():
    questions = [question(["a"], problem_id="A"), question(["b"], problem_id="B")]
    scores = [score_question(questions[0], "a"), score_question(questions[1], None)]
    metrics = aggregate(questions, scores)
    assert metrics["n_failed"] == 1 and metrics["n_questions"] == 2 and metrics["accuracy"] == 0.5
    assert scores[1].failed and scores[1].gestalt == 0.0


def test_breakdowns_by_category_and_year():
    questions = [
        question(["a"], problem_id="A", category="循環器", year=2018),
        question(["b"], problem_id="B", category="循環器", year=2022),
        question(["c"], problem_id="C", category="小児科", year=2022),
    ]
    metrics = aggregate(questions, [score_question(q, r) for q, r in zip(questions, ["a", "a", "c"], strict=True)])
    assert metrics["category/循環器/accuracy"] == 0.5 and metrics["category/小児科/accuracy"] == 1.0
    assert metrics["year/2018/n_questions"] == 1 and metrics["year/2022/accuracy"] == 0.5


def test_exam_pass_fail_per_year_from_section_points_and_the_pass_line_table():
    from medtune.evaluation.metrics import pass_lines

    assert pass_lines()[2025]["general"] == 221 and pass_lines()[2018]["general"] is None
    required = [question(["a"], problem_id=f"119B{i}", points=3, year=2025, section="required") for i in range(10)]
    general = [question(["a"], problem_id=f"119A{i}", year=2025, section="general") for i in range(10)]
    # required: 8 of 10 right (80 % exactly: passes); general: 7 of 10 (70 % < 221/300 = 73.7 %: fails)
    responses = ["a"] * 8 + ["b"] * 2 + ["a"] * 7 + ["b"] * 3
    qs = required + general
    metrics = aggregate(qs, [score_question(q, r) for q, r in zip(qs, responses, strict=True)])
    assert (metrics["year/2025/required_points"], metrics["year/2025/required_total"]) == (24, 30)
    assert (metrics["year/2025/general_points"], metrics["year/2025/general_total"]) == (7, 10)
    assert metrics["year/2025/required_pass"] == 1.0 and metrics["year/2025/general_pass"] == 0.0
    assert metrics["year/2025/passed"] == 0.0
    old = [replace(q, year=2018) for q in qs]
    old_metrics = aggregate(old, [score_question(q, "a") for q in old])
    assert old_metrics["year/2018/required_pass"] == 1.0  # 80 % rule known every year
    assert "year/2018/general_pass" not in old_metrics and "year/2018/passed" not in old_metrics  # line unknown
