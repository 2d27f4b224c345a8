"""Multiple-choice QA benchmarks as typed `Question`s: the bundled demo set, IgakuQA, JJSIMQA, any JSONL.

Every source uses IgakuQA's record shape, one JSON object per line:
`{"problem_id", "problem_text", "choices": [...], "answer": ["c"], "points": "1", "text_only": true}`.
IgakuQA itself is a directory tree `data/<year>/<exam>-<block>.jsonl` with sibling
`<exam>-<block>_metadata.jsonl` (category, human accuracy, ...) and `_translate.jsonl` (English)
files; categories are joined in from the metadata, translations are not used (the paper asks in
Japanese). Bad records stop loading with a `DataError` naming file, line and field.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from medtune.config import EvalConfig
from medtune.errors import ConfigError, DataError
from medtune.jsonl import read_jsonl_objects

QA_SOURCES = ("demo", "igakuqa", "jjsimqa", "jsonl")
LETTERS = string.ascii_lowercase  # choice labels: a, b, c, ... (some questions have more than 5 choices)
SIBLING_SUFFIXES = ("_metadata", "_translate")  # IgakuQA files beside each exam block
_ALTERNATIVE_SEPARATOR = re.compile(r"\s+or\s+")  # IgakuQA writes a two-way accepted answer as "a or d"


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


def load_questions(eval_cfg: EvalConfig) -> list[Question]:
    """The suite's questions after the years / text_only / limit filters, in a stable order."""
    questions = list(_read_source(eval_cfg))
    if eval_cfg.years:
        wanted = {int(year) for year in eval_cfg.years}
        questions = [q for q in questions if q.year in wanted]
    if eval_cfg.text_only:
        questions = [q for q in questions if q.text_only]
    if eval_cfg.limit is not None:
        questions = questions[: eval_cfg.limit]
    if not questions:
        raise DataError(f"no questions left for eval.suite={eval_cfg.suite} after the years/text_only/limit filters")
    return questions


def check_questions(eval_cfg: EvalConfig) -> None:
    """Load the suite once up front, so a missing path, an empty folder or a bad record stops a training run
    before any weights load or W&B starts (reading questions takes milliseconds)."""
    load_questions(eval_cfg)


def check_source(eval_cfg: EvalConfig) -> None:
    """The config-only checks, so entry scripts can fail before loading any weights."""
    if eval_cfg.source not in QA_SOURCES:
        raise ConfigError(f"eval.source={eval_cfg.source!r} is not one of {', '.join(QA_SOURCES)}.")
    if eval_cfg.source != "demo" and not eval_cfg.path:
        kind = "directory" if eval_cfg.source == "igakuqa" else "file"
        raise ConfigError(f"eval={eval_cfg.source} needs eval.path=<{kind}>.")


def _read_source(eval_cfg: EvalConfig) -> Iterator[Question]:
    check_source(eval_cfg)
    if eval_cfg.source == "demo":
        from medtune import demo_assets

        yield from read_questions_jsonl(demo_assets.questions_path())
        return
    path = Path(str(eval_cfg.path)).expanduser()  # set: check_source demands it for every non-demo source
    if not path.exists():
        raise DataError("does not exist", path=path, field="eval.path")
    if eval_cfg.source == "igakuqa":
        yield from read_igakuqa(path)
    else:
        yield from read_questions_jsonl(path)


def read_igakuqa(root: Path) -> Iterator[Question]:
    """Every exam block under an IgakuQA clone (or its data/ folder), metadata categories joined in."""
    data_dir = root / "data" if (root / "data").is_dir() else root
    year_dirs = sorted(d for d in data_dir.iterdir() if d.is_dir() and re.fullmatch(r"\d{4}", d.name))
    if not year_dirs:
        raise DataError("holds no <year>/ folders of IgakuQA exam files (expected data/2018/112-A.jsonl)", path=root)
    for year_dir in year_dirs:
        for block in sorted(year_dir.glob("*.jsonl"), key=_natural_key):
            if block.stem.endswith(SIBLING_SUFFIXES):
                continue
            categories = _read_categories(block.with_name(f"{block.stem}_metadata.jsonl"))
            for question in read_questions_jsonl(block, year=int(year_dir.name), exam=block.stem):
                category = categories.get(question.problem_id, question.category)
                yield Question(**{**vars(question), "category": category})


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


def read_questions_jsonl(path: Path, year: int | None = None, exam: str | None = None) -> Iterator[Question]:
    """Questions of one JSONL file; `year`/`exam` default to the record's own fields when present."""
    for line_no, record in read_jsonl_objects(path):
        yield parse_question(record, path, line_no, year=year, exam=exam)


def parse_question(
    record: dict[str, Any], path: Path, line_no: int, year: int | None = None, exam: str | None = None
) -> Question:
    """Validate one record; `points` may be a string ("3"), `answer` a bare string."""
    choices = _require(record, "choices", list, path, line_no)
    if not all(isinstance(choice, str) for choice in choices):
        raise DataError("every choice must be a string", path=path, line=line_no, field="choices")
    if len(choices) > len(LETTERS):
        raise DataError(f"at most {len(LETTERS)} choices are supported", path=path, line=line_no, field="choices")
    question = Question(
        problem_id=str(_require(record, "problem_id", (str, int), path, line_no)),
        problem_text=_require(record, "problem_text", str, path, line_no),
        choices=choices,
        answer=_parse_answer(record, path, line_no),
        points=_parse_points(record, path, line_no),
        text_only=bool(record.get("text_only", True)),
        year=year if year is not None else _optional_int(record, "year", path, line_no),
        exam=exam if exam is not None else record.get("exam"),
        category=record.get("category"),
    )
    _check_answer_letters(question, path, line_no)
    return question


def _require(record: dict[str, Any], field: str, kind: type | tuple[type, ...], path: Path, line_no: int) -> Any:
    if field not in record:
        raise DataError("missing", path=path, line=line_no, field=field)
    value = record[field]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"has the wrong type ({type(value).__name__})", path=path, line=line_no, field=field)
    return value


def _parse_answer(record: dict[str, Any], path: Path, line_no: int) -> list[str]:
    answer = _require(record, "answer", (list, str, int, float), path, line_no)
    items = answer if isinstance(answer, list) else [answer]
    if not items or not all(isinstance(item, str | int | float) and str(item).strip() for item in items):
        raise DataError("must be a non-empty list of letters (or a number)", path=path, line=line_no, field="answer")
    return [str(item).strip().lower() for item in items]


def _parse_points(record: dict[str, Any], path: Path, line_no: int) -> int:
    points = record.get("points", 1)
    try:
        return int(points)
    except (TypeError, ValueError):
        raise DataError(f"must be an integer (got {points!r})", path=path, line=line_no, field="points") from None


def _optional_int(record: dict[str, Any], field: str, path: Path, line_no: int) -> int | None:
    if record.get(field) is None:
        return None
    try:
        return int(record[field])
    except (TypeError, ValueError):
        raise DataError(f"must be an integer (got {record[field]!r})", path=path, line=line_no, field=field) from None


def _check_answer_letters(question: Question, path: Path, line_no: int) -> None:
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
