"""Multiple-choice QA benchmarks as typed `Question`s, each source read as its authors publish it.

Every source becomes IgakuQA's record shape, one JSON object per question:
`{"problem_id", "problem_text", "choices": [...], "answer": ["c"], "points": "1", "text_only": true}`.
- `igakuqa`: the `data/<year>/<exam>-<block>.jsonl` tree with sibling `_metadata.jsonl` (category)
  and `_translate.jsonl` (English, unused: the paper asks in Japanese) files, or the single file
  other repositories republish (e.g. medLLM_QA_benchmark's `data/ja/IgakuQA/igakuqa.jsonl`), whose
  ids (`112A1`) give exam, year and block;
- `jjsimqa` / `jsonl`: one JSONL file of such records (JJSIMQA, DenQA, your own);
- `jmle`: JMLE2026-Bench's one JSON array, choices written inside `question_text` as `a　…` lines
  (or a markdown table's `| a |` rows), a `serial_group` context shared by consecutive questions;
- `hf`: any `datasets` table, its columns named in `eval.hub` (see conf/eval/yakugakuqa.yaml).

Published files have quirks. A record with one unambiguous reading loads with one warning naming
file:line (a stray "," token in an answer list, an answer string instead of a list); a question
without an official answer ("NA") is excluded and counted by reason; a record that cannot be read
stops with a `DataError` naming file, line and field.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

from medtune.config import EvalConfig, HubFieldsConfig, check_eval
from medtune.enums import EvalSource
from medtune.errors import DataError
from medtune.jsonl import read_json_array, read_jsonl_objects

log = logging.getLogger(__name__)

LETTERS = string.ascii_lowercase  # choice labels: a, b, c, ... (some questions have more than 5 choices)
SIBLING_SUFFIXES = ("_metadata", "_translate")  # IgakuQA files beside each exam block
REQUIRED_BLOCKS = frozenset("BE")  # the licensing exam's required section (必修) since the 112th exam (2018)
EXAM_YEAR_OFFSET = 1906  # the 112th medical licensing exam was held in 2018, the 120th in 2026
NO_ANSWER = frozenset({"na", "n/a", ""})  # published for questions without an official answer
EXCLUDED_NO_ANSWER = "no_official_answer"
EXCLUDED_IMAGE = "image"  # eval.text_only: the question shows an image the model never sees
_ALTERNATIVE_SEPARATOR = re.compile(r"\s+or\s+")  # IgakuQA writes a two-way accepted answer as "a or d"
_ANSWER_SPLIT = re.compile(r"\s*[,、，]\s*")  # letters inside one answer string: "a,c"
_EXAM_ID = re.compile(r"(\d{3})([A-Z])-?(\d+)")  # 112A1, 120A-1: exam number, block, question number
_CHOICE_LINE = re.compile(r"^[ \t　]*([a-z])[ \t　]+(\S.*?)\s*$", re.MULTILINE)  # "a　緊急手術"
_CHOICE_ROW = re.compile(r"^\|[ \t　]*([a-z])[ \t　]*\|(.*)\|\s*$", re.MULTILINE)  # "| a | 220 | 0 |"
_QUESTION_NUMBER = re.compile(r"^\d+[ \t　]+")  # JMLE's question_text starts with its number


@dataclass(frozen=True)
class Question:
    problem_id: str
    problem_text: str
    choices: list[str]  # empty for calculation questions, whose answer is a number
    answer: list[str]  # gold letters (["a", "e"]), an element may be "a or d"; or [number] without choices
    points: int = 1  # IgakuQA: 1 (general) or 3 (clinical) points; 0 for withdrawn questions
    text_only: bool = True  # False: the question shows an image the model never sees
    year: int | None = None
    exam: str | None = None  # IgakuQA block, e.g. "112-A"
    category: str | None = None  # IgakuQA metadata specialty, e.g. "循環器"
    section: str | None = None  # "required" (blocks B, E) | "general"; None: not a licensing-exam block
    rotation: int = 0  # eval.permutations: choices rotated this many places (0: as published)

    @property
    def is_calculation(self) -> bool:
        """No choices: the answer is a number written by the examinee."""
        return not self.choices

    @property
    def labels(self) -> str:
        return LETTERS[: len(self.choices)]

    @property
    def gold_sets(self) -> list[frozenset[str]]:
        """Every accepted answer set: one normally, several when the gold says "a or d"."""
        options = [_ALTERNATIVE_SEPARATOR.split(item.strip()) for item in self.answer]
        return [frozenset(combo) for combo in product(*options)]

    @property
    def n_answers(self) -> int:
        """How many letters the examinee must give ("2つ選べ" → 2)."""
        return len(self.gold_sets[0])

    def choice_text(self, letter: str) -> str:
        return self.choices[LETTERS.index(letter)]

    def gold_texts(self) -> list[str]:
        """The correct choice texts (first accepted set), or the number for calculation questions."""
        gold = sorted(self.gold_sets[0])
        return gold if self.is_calculation else [self.choice_text(letter) for letter in gold]


@dataclass(frozen=True)
class Exclusion:
    """A published question left out of scoring, and why (counted in metrics.json as n_excluded/<reason>)."""

    problem_id: str
    reason: str


class QuestionSet(list[Question]):
    """The questions to ask, and how many published ones were left out, by reason."""

    def __init__(self, questions: list[Question], excluded: Counter[str] | None = None) -> None:
        super().__init__(questions)
        self.excluded: Counter[str] = excluded or Counter()


def load_questions(eval_cfg: EvalConfig) -> QuestionSet:
    """The suite's questions after the years / text_only / limit filters, in a stable order, rotated copies last."""
    questions: list[Question] = []
    excluded: Counter[str] = Counter()
    for item in _read_source(eval_cfg):
        if isinstance(item, Exclusion):
            excluded[item.reason] += 1
        else:
            questions.append(item)
    if eval_cfg.years:
        wanted = {int(year) for year in eval_cfg.years}
        questions = [q for q in questions if q.year in wanted]
    if eval_cfg.text_only:
        excluded[EXCLUDED_IMAGE] += sum(not q.text_only for q in questions)
        questions = [q for q in questions if q.text_only]
    if eval_cfg.limit is not None:
        questions = questions[: eval_cfg.limit]
    if not questions:
        raise DataError(f"no questions left for eval.suite={eval_cfg.suite} after the years/text_only/limit filters")
    rotated = [rotate(q, shift) for shift in range(1, eval_cfg.permutations) for q in questions if q.choices]
    return QuestionSet(questions + rotated, +excluded)


def rotate(question: Question, shift: int) -> Question:
    """The question with choice i moved to position i - shift (mod n); gold letters follow their choices."""
    n = len(question.choices)
    choices = [question.choices[(i + shift) % n] for i in range(n)]

    def moved(letter: str) -> str:
        return LETTERS[(LETTERS.index(letter) - shift) % n]

    answer = [" or ".join(moved(x) for x in _ALTERNATIVE_SEPARATOR.split(item.strip())) for item in question.answer]
    return replace(question, choices=choices, answer=answer, rotation=shift)


def _read_source(eval_cfg: EvalConfig) -> Iterator[Question | Exclusion]:
    check_eval(eval_cfg)
    if eval_cfg.source == EvalSource.demo:
        from medtune import demo_assets

        yield from read_questions_jsonl(demo_assets.questions_path())
        return
    if eval_cfg.source == "hf":
        yield from read_hub(str(eval_cfg.path), eval_cfg.hub)
        return
    path = Path(str(eval_cfg.path)).expanduser()  # set: check_eval demands it for every non-demo source
    if not path.exists():
        raise DataError("does not exist", path=path, field="eval.path")
    if eval_cfg.source == EvalSource.igakuqa:
        yield from read_igakuqa(path)
    elif eval_cfg.source == "jmle":
        yield from read_jmle(path)
    else:
        yield from read_questions_jsonl(path)


# ------------------------------------------------------------------------------------------ IgakuQA
def read_igakuqa(root: Path) -> Iterator[Question | Exclusion]:
    """Every exam block under an IgakuQA clone (or its data/ folder), or the single republished file."""
    if root.is_file():
        yield from read_questions_jsonl(root, exam_from_id=True)
        return
    data_dir = root / "data" if (root / "data").is_dir() else root
    year_dirs = sorted(d for d in data_dir.iterdir() if d.is_dir() and re.fullmatch(r"\d{4}", d.name))
    if not year_dirs:
        raise DataError("holds no <year>/ folders of IgakuQA exam files (expected data/2018/112-A.jsonl)", path=root)
    for year_dir in year_dirs:
        for block in sorted(year_dir.glob("*.jsonl"), key=_natural_key):
            if block.stem.endswith(SIBLING_SUFFIXES):
                continue
            categories = _read_categories(block.with_name(f"{block.stem}_metadata.jsonl"))
            for item in read_questions_jsonl(block, year=int(year_dir.name), exam=block.stem):
                if isinstance(item, Question):
                    item = replace(item, category=categories.get(item.problem_id, item.category))
                yield item


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_categories(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    categories = {}
    for line_no, record in read_jsonl_objects(path):
        problem_id = _require(record, "problem_id", str, path, line_no)
        if record.get("category"):
            categories[problem_id] = str(record["category"])
    return categories


def exam_fields(problem_id: str) -> dict[str, Any]:
    """Year, exam and section of a medical licensing exam id ("112A1" → 2018, "112-A", general); {} otherwise."""
    match = _EXAM_ID.fullmatch(problem_id)
    if not match:
        return {}
    number, block = int(match.group(1)), match.group(2)
    return {"year": number + EXAM_YEAR_OFFSET, "exam": f"{number}-{block}", "section": section_of(block)}


def section_of(block: str) -> str:
    return "required" if block in REQUIRED_BLOCKS else "general"


# ------------------------------------------------------------------------------------------- JSONL
def read_questions_jsonl(
    path: Path, year: int | None = None, exam: str | None = None, exam_from_id: bool = False
) -> Iterator[Question | Exclusion]:
    """Questions of one JSONL file; `year`/`exam` default to the record's own fields (or its id's)."""
    for line_no, record in read_jsonl_objects(path):
        yield parse_question(record, path, line_no, year=year, exam=exam, exam_from_id=exam_from_id)


def parse_question(
    record: dict[str, Any],
    path: Path | str,
    line_no: int,
    year: int | None = None,
    exam: str | None = None,
    exam_from_id: bool = False,
) -> Question | Exclusion:
    """Validate one record; `points` may be a string ("3") or a float (1.0), `answer` a bare string."""
    problem_id = str(_require(record, "problem_id", (str, int), path, line_no))
    answer = _parse_answer(record, path, line_no)
    if answer is None:
        return Exclusion(problem_id, EXCLUDED_NO_ANSWER)
    choices = _require(record, "choices", list, path, line_no)
    if not all(isinstance(choice, str) for choice in choices):
        raise DataError("every choice must be a string", path=path, line=line_no, field="choices")
    if len(choices) > len(LETTERS):
        raise DataError(f"at most {len(LETTERS)} choices are supported", path=path, line=line_no, field="choices")
    block = exam if exam is not None else record.get("exam")
    derived = exam_fields(problem_id) if exam_from_id else {}
    question = Question(
        problem_id=problem_id,
        problem_text=_require(record, "problem_text", str, path, line_no),
        choices=choices,
        answer=answer,
        points=_parse_points(record, path, line_no),
        text_only=bool(record.get("text_only", True)),
        year=year if year is not None else derived.get("year", _optional_int(record, "year", path, line_no)),
        exam=block if block is not None else derived.get("exam"),
        category=record.get("category"),
        section=section_of(block[-1]) if block else derived.get("section"),
    )
    _check_answer_letters(question, path, line_no)
    return question


def _require(record: dict[str, Any], field: str, kind: type | tuple[type, ...], path: Path | str, line_no: int) -> Any:
    if field not in record:
        raise DataError("missing", path=path, line=line_no, field=field)
    value = record[field]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"has the wrong type ({type(value).__name__})", path=path, line=line_no, field=field)
    return value


def _parse_answer(record: dict[str, Any], path: Path | str, line_no: int) -> list[str] | None:
    """Gold letters (or a number); None when the publisher gives no official answer ("NA")."""
    answer = _require(record, "answer", (list, str, int, float), path, line_no)
    if isinstance(answer, str):
        if answer.strip().lower() in NO_ANSWER:
            return None
        items = [item for item in _ANSWER_SPLIT.split(answer.strip()) if item]
        warn_once(f"{path}:{line_no}: answer is a string, read as the list {items}")
    else:
        items = answer if isinstance(answer, list) else [answer]
    if not all(isinstance(item, str | int | float) and not isinstance(item, bool) for item in items):
        raise DataError("must be a list of letters (or a number)", path=path, line=line_no, field="answer")
    cleaned = [str(item).strip().lower() for item in items]
    stray = [item for item in cleaned if _ANSWER_SPLIT.fullmatch(item) or not item]
    if stray:
        warn_once(f"{path}:{line_no}: stray {', '.join(map(repr, stray))} removed from answer")
        cleaned = [item for item in cleaned if item not in stray]
    if cleaned and all(item in NO_ANSWER for item in cleaned):
        return None
    if not cleaned:
        raise DataError("must be a non-empty list of letters (or a number)", path=path, line=line_no, field="answer")
    return cleaned


@cache
def warn_once(message: str) -> None:
    """A quirk is reported once per process, though the suite is read again (config check, then evaluation)."""
    log.warning(message)


def _parse_points(record: dict[str, Any], path: Path | str, line_no: int) -> int:
    points = record.get("points", 1)
    try:
        value = float(points)
    except (TypeError, ValueError):
        value = float("nan")
    if not value.is_integer() or isinstance(points, bool):
        raise DataError(f"must be a whole number (got {points!r})", path=path, line=line_no, field="points")
    return int(value)


def _optional_int(record: dict[str, Any], field: str, path: Path | str, line_no: int) -> int | None:
    if record.get(field) is None:
        return None
    try:
        return int(record[field])
    except (TypeError, ValueError):
        raise DataError(f"must be an integer (got {record[field]!r})", path=path, line=line_no, field=field) from None


def _check_answer_letters(question: Question, path: Path | str, line_no: int) -> None:
    if question.is_calculation:
        return
    for gold in question.gold_sets:
        unknown = sorted(set(gold) - set(question.labels))
        if unknown:
            raise DataError(
                f"letters {unknown} are not among the {len(question.choices)} choices ({question.labels})",
                path=path,
                line=line_no,
                field="answer",
            )


# ----------------------------------------------------------------------------------- JMLE2026-Bench
def read_jmle(path: Path) -> Iterator[Question | Exclusion]:
    """JMLE2026-Bench's JSON array (question_id "120A-1", block, choices inside question_text)."""
    for line_no, record in read_json_array(path):
        yield parse_question(jmle_record(record, path, line_no), path, line_no)


def jmle_record(record: dict[str, Any], path: Path, line_no: int) -> dict[str, Any]:
    """One JMLE entry in IgakuQA's shape: choices split out, serial context prepended, points by block."""
    problem_id = str(_require(record, "question_id", str, path, line_no))
    fields = exam_fields(problem_id)
    if not fields:
        raise DataError(
            f"expected an id like 120A-1 (got {problem_id!r})", path=path, line=line_no, field="question_id"
        )
    text = _require(record, "question_text", str, path, line_no)
    calculation = record.get("question_type") == "calculation"
    stem, choices = (text, []) if calculation else _split_choices(text, path, line_no)
    context = (record.get("serial_group") or {}).get("context_text")
    number = int(_EXAM_ID.fullmatch(problem_id).group(3))  # type: ignore[union-attr]  # matched above
    required_clinical = fields["section"] == "required" and number > 25  # B/E questions 26-50: 3 points
    return {
        "problem_id": problem_id,
        "problem_text": "\n\n".join(filter(None, [context, _QUESTION_NUMBER.sub("", stem.strip())])),
        "choices": choices,
        "answer": record.get("answer"),
        "points": 3 if required_clinical else 1,
        "text_only": not record.get("requires_image", False),
        "year": fields["year"],
        "exam": fields["exam"],
    }


def _split_choices(text: str, path: Path, line_no: int) -> tuple[str, list[str]]:
    """(stem, choices) of a question whose choices are `a　…` lines or `| a | … |` table rows."""
    for pattern in (_CHOICE_LINE, _CHOICE_ROW):
        matches = list(pattern.finditer(text))
        if matches:
            break
    labels = "".join(m.group(1) for m in matches)
    if not matches or labels != LETTERS[: len(labels)]:
        raise DataError(
            f"choices must be lines 'a　…', 'b　…' in order (found {labels or 'none'})",
            path=path,
            line=line_no,
            field="question_text",
        )
    choices = [" | ".join(cell.strip() for cell in m.group(2).split("|")) for m in matches]
    return text[: matches[0].start()], choices


# ---------------------------------------------------------------------------------- hub datasets
def read_hub(path: str, fields: HubFieldsConfig) -> Iterator[Question | Exclusion]:
    """Rows of a `datasets` table (hub id, builder + data_files, or a save_to_disk dir) mapped by eval.hub."""
    table = _load_table(path, fields)
    where = f"{path}[{fields.split}]"
    for row_no, row in enumerate(table, start=1):
        yield parse_question(hub_record(row, fields, where, row_no), where, row_no)


def _load_table(path: str, fields: HubFieldsConfig):
    import datasets

    try:
        if Path(path).expanduser().is_dir() and (Path(path).expanduser() / "dataset_info.json").exists():
            return datasets.load_from_disk(str(Path(path).expanduser()))
        return datasets.load_dataset(path, fields.name, split=fields.split, data_files=fields.data_files)
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        raise DataError(f"cannot load the dataset: {err}", path=path, field="eval.path") from err


def hub_record(row: dict[str, Any], fields: HubFieldsConfig, where: str, row_no: int) -> dict[str, Any]:
    """One table row in IgakuQA's shape, answers turned into letters per eval.hub.answer_format."""
    for column in [fields.question, fields.answer, *fields.choices]:
        if column not in row:
            raise DataError(f"no such column (columns: {sorted(row)})", path=where, line=row_no, field=column)
    choices = row[fields.choices[0]] if len(fields.choices) == 1 else [row[c] for c in fields.choices]
    answer = row[fields.answer]
    if fields.answer_format != "letter" and not (isinstance(answer, str) and answer.strip().lower() in NO_ANSWER):
        answer = [_index_letter(item, fields.answer_format, where, row_no, fields.answer) for item in _as_list(answer)]
    return {
        "problem_id": str(row[fields.id]) if fields.id else str(row_no),
        "problem_text": row[fields.question],
        "choices": choices,
        "answer": answer,
        "text_only": bool(row[fields.text_only]) if fields.text_only else True,
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _index_letter(item: Any, answer_format: str, where: str, row_no: int, column: str) -> str:
    try:
        index = int(str(item).strip()) - (1 if answer_format == "index1" else 0)
    except ValueError:
        raise DataError(
            f"{item!r} is not a choice number ({answer_format})", path=where, line=row_no, field=column
        ) from None
    if not 0 <= index < len(LETTERS):
        raise DataError(f"{item!r} is out of range ({answer_format})", path=where, line=row_no, field=column)
    return LETTERS[index]
