"""Build the bundled demo data from the hand-written fact table, byte for byte reproducibly.

    python scripts/build_demo_data.py                      # rewrite the committed files in src/medtune/assets
    python scripts/build_demo_data.py --out-dir /tmp/demo  # write elsewhere (tests/unit/test_demo_assets.py diffs)

Reads `demo_facts.json` and writes four files: instruction records for tuning (`demo_train.jsonl`), records in
phrasings the tuning never sees (`demo_heldout.jsonl`), one exam-style 5-choice question per fact in IgakuQA's
record shape (`demo_questions.jsonl`), and the prose the facts could have been drawn from (`medical_corpus.txt`,
one paragraph per line). Every random choice comes from a seeded `random.Random`, one per output file, so editing
one file's recipe leaves the others unchanged.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medtune.evaluation.metrics import ANSWER_SEPARATOR  # two-answer outputs are written as the evaluation scores them

ASSETS = Path(__file__).resolve().parents[1] / "src" / "medtune" / "assets"
N_CHOICES = 5
LETTERS = "abcde"
SEEDS = {"train": 101, "heldout": 202, "questions": 303, "corpus": 404}


@dataclass(frozen=True)
class Templates:
    """One category's wordings; `{s}` is the subject, `{a}` the answer, `{r}` the relation noun."""

    relation: str  # noun for the answer's role, used by the two-answer wordings ("治療薬")
    train: tuple[str, str, str, str]  # instruction phrasings seen in tuning
    heldout: tuple[str, str]  # phrasings only in demo_heldout.jsonl
    exam: str  # exam style ("…はどれか。"), only in demo_questions.jsonl
    explain: str  # sentence after the answer in the longer outputs
    prose: tuple[str, str]  # corpus sentences stating the fact
    contrast: str  # corpus sentence setting two facts side by side ({s2}, {a2}: the second fact)


TEMPLATES: dict[str, Templates] = {
    "treatment": Templates(
        relation="治療薬",
        train=(
            "{s}の治療に用いられる代表的な薬は何ですか。",
            "{s}の代表的な治療薬を答えてください。",
            "{s}の患者に処方される代表的な薬剤を一つ挙げてください。",
            "{s}に対して使われる薬の名前を教えてください。",
        ),
        heldout=("{s}を治療するための代表的な薬剤名を述べてください。", "{s}と診断された患者にまず検討する薬は？"),
        exam="{s}の治療薬はどれか。",
        explain="{s}の代表的な治療薬である。",
        prose=("{s}の治療には{a}が用いられる。", "{a}は{s}に対する代表的な治療薬である。"),
        contrast="{s}には{a}、{s2}には{a2}が用いられ、作用機序はそれぞれ異なる。",
    ),
    "antidote": Templates(
        relation="特効薬",
        train=(
            "{s}に対して投与する特効薬は何ですか。",
            "{s}の救急治療で用いる特異的な薬剤を答えてください。",
            "{s}の患者に投与すべき拮抗薬または特効薬を一つ挙げてください。",
            "{s}で使用される特効薬の名前を教えてください。",
        ),
        heldout=(
            "{s}の際に第一に考える特異的治療を述べてください。",
            "{s}が起きたとき、何を投与して対処しますか。",
        ),
        exam="{s}に用いる特効薬はどれか。",
        explain="{s}に対する特効薬である。",
        prose=("{s}では{a}が特効薬として投与される。", "{a}は{s}の治療に用いられる特異的な薬剤である。"),
        contrast="{s}には{a}、{s2}には{a2}を投与するため、原因物質の特定が重要である。",
    ),
    "pathogen": Templates(
        relation="原因微生物",
        train=(
            "{s}の原因となる病原体は何ですか。",
            "{s}を引き起こす微生物を答えてください。",
            "{s}の病原体の名前を教えてください。",
            "{s}は何という病原微生物によって起こりますか。",
        ),
        heldout=("{s}の起因微生物を一つ挙げてください。", "{s}の患者から検出される病原体の名称を述べてください。"),
        exam="{s}の原因微生物はどれか。",
        explain="{s}の原因となる病原体である。",
        prose=("{s}は{a}の感染によって起こる。", "{a}は{s}の原因病原体として知られている。"),
        contrast="{s}は{a}、{s2}は{a2}によって起こり、感染経路もそれぞれ異なる。",
    ),
    "hormone_source": Templates(
        relation="分泌部位",
        train=(
            "{s}を分泌する臓器はどこですか。",
            "{s}はどの臓器から分泌されますか。",
            "{s}の分泌部位を答えてください。",
            "{s}が血中に分泌される部位を教えてください。",
        ),
        heldout=("{s}を血中に放出する器官の名前を述べてください。", "{s}の分泌源となる内分泌器官は？"),
        exam="{s}を分泌するのはどれか。",
        explain="{s}を分泌する部位である。",
        prose=("{s}は{a}から分泌される。", "{a}は{s}を分泌する。"),
        contrast="{s}は{a}から、{s2}は{a2}から分泌される。",
    ),
    "vitamin_deficiency": Templates(
        relation="ビタミン",
        train=(
            "{s}の原因となる欠乏ビタミンは何ですか。",
            "{s}は何というビタミンの欠乏で起こりますか。",
            "欠乏すると{s}を起こすビタミンを答えてください。",
            "{s}の予防や治療に補うべきビタミンを教えてください。",
        ),
        heldout=("{s}に関係する欠乏栄養素としてのビタミン名を述べてください。", "{s}を防ぐには何を補充しますか。"),
        exam="{s}の原因として欠乏しているビタミンはどれか。",
        explain="{s}はこのビタミンの欠乏で起こる。",
        prose=("{a}が欠乏すると{s}が起こる。", "{s}は{a}の欠乏によって生じる。"),
        contrast="{s}は{a}の欠乏で、{s2}は{a2}の欠乏で起こる。",
    ),
    "adverse_effect": Templates(
        relation="副作用",
        train=(
            "{s}の主な副作用は何ですか。",
            "{s}で注意すべき代表的な副作用を答えてください。",
            "{s}の投与で起こりやすい副作用を一つ挙げてください。",
            "{s}に特徴的な有害事象を教えてください。",
        ),
        heldout=(
            "{s}を使用する際に問題となる代表的な有害反応を述べてください。",
            "{s}を処方するとき説明すべき副作用は？",
        ),
        exam="{s}の副作用として特徴的なのはどれか。",
        explain="{s}の代表的な副作用である。",
        prose=("{s}の代表的な副作用として{a}がある。", "{s}を投与された患者では{a}に注意する。"),
        contrast="{s}では{a}、{s2}では{a2}が代表的な副作用として知られる。",
    ),
    "lab_marker": Templates(
        relation="疾患",
        train=(
            "{s}から最も疑われる疾患は何ですか。",
            "{s}を示す代表的な疾患を答えてください。",
            "検査で{s}がみられた。考えられる疾患名を挙げてください。",
            "{s}が診断に役立つ疾患を教えてください。",
        ),
        heldout=("{s}という検査結果と関連の深い疾患名を述べてください。", "血液検査で{s}でした。何を考えますか。"),
        exam="{s}を示す疾患はどれか。",
        explain="{s}を示す代表的な疾患である。",
        prose=("{a}の患者では{s}が認められる。", "{s}は{a}の診断に有用な検査所見である。"),
        contrast="{s}は{a}を、{s2}は{a2}を示唆する検査所見である。",
    ),
    "physical_sign": Templates(
        relation="疾患",
        train=(
            "{s}がみられる代表的な疾患は何ですか。",
            "{s}を特徴とする疾患を答えてください。",
            "身体所見で{s}を認めた。最も考えられる疾患を挙げてください。",
            "{s}から疑われる疾患名を教えてください。",
        ),
        heldout=("{s}という所見と結びつく疾患名を述べてください。", "診察で{s}に気づきました。何の病気を考えますか。"),
        exam="{s}を認める疾患はどれか。",
        explain="{s}を特徴とする疾患である。",
        prose=("{a}では{s}がみられる。", "{s}は{a}に特徴的な身体所見である。"),
        contrast="{s}は{a}で、{s2}は{a2}でみられる所見である。",
    ),
    "innervation": Templates(
        relation="支配神経",
        train=(
            "{s}を支配する神経は何ですか。",
            "{s}の神経支配を答えてください。",
            "{s}に運動指令を送る神経の名前を挙げてください。",
            "{s}はどの神経に支配されていますか。",
        ),
        heldout=("{s}を動かす運動神経の名称を述べてください。", "{s}の筋力が落ちたとき、障害を疑う神経は？"),
        exam="{s}を支配するのはどれか。",
        explain="{s}を支配する神経である。",
        prose=("{s}は{a}に支配される。", "{a}が障害されると{s}の筋力が低下する。"),
        contrast="{s}は{a}に、{s2}は{a2}に支配される。",
    ),
    "lesion_site": Templates(
        relation="病変部位",
        train=(
            "{s}で主に障害される部位はどこですか。",
            "{s}の病変が好発する部位を答えてください。",
            "{s}の主な病変部位を一つ挙げてください。",
            "{s}が主に侵す部位を教えてください。",
        ),
        heldout=("{s}において病変の中心となる部位を述べてください。", "{s}で病変が集中しやすいのはどこですか。"),
        exam="{s}の病変の好発部位はどれか。",
        explain="{s}の主な病変部位である。",
        prose=("{s}では{a}が主に障害される。", "{a}は{s}の病変が好発する部位である。"),
        contrast="{s}では{a}が、{s2}では{a2}が主に障害される。",
    ),
}

MC_INSTRUCTIONS = (
    "次の選択肢から正しいものを選んでください。",
    "以下の選択肢のうち、正しいものを1つ選んで答えてください。",
    "選択肢の中から最も適切なものを1つ選び、そのまま書き写してください。",
    "次の問いについて、正しい選択肢を1つ答えてください。",
)
MC_INSTRUCTIONS_TWO = (
    "次の選択肢から正しいものを2つ選んでください。",
    "以下の選択肢のうち、正しいものを2つ選んで答えてください。",
)
TWO_ANSWER_TRAIN = ("{s}の{r}を2つ答えてください。", "{s}について知られている{r}を2つ挙げてください。")
TWO_ANSWER_MC_QUESTION = "{s}の{r}として正しいものはどれですか。"
TWO_ANSWER_EXAM = "{s}の{r}はどれか。2つ選べ。"
MC_SKIP_EVERY = 5  # every 5th fact gets no multiple-choice record: ~20% of all records are multiple choice
HELDOUT_PER_CATEGORY = 4


@dataclass(frozen=True)
class Fact:
    id: str
    category: str
    subject: str
    answers: tuple[str, ...]  # one answer, or two for the "2つ選べ" facts
    note: str  # context sentence for the corpus
    also_true: tuple[str, ...] = ()  # same-category answers that must not be offered as wrong choices

    @property
    def answer(self) -> str:
        """The answer as outputs write it: two answers joined by the separator the evaluation's exemplars use."""
        return ANSWER_SEPARATOR.join(self.answers)

    def fill(self, template: str, answer: str | None = None) -> str:
        return template.format(s=self.subject, a=answer or self.answer, r=TEMPLATES[self.category].relation)


@dataclass(frozen=True)
class FactTable:
    facts: list[Fact]  # single-answer facts, in file order
    two_answer: list[Fact]
    background: dict[str, list[str]]  # category -> general paragraphs for the corpus

    def distractor_pool(self, fact: Fact) -> list[str]:
        """Answers of the fact's category that are wrong for it (also-true answers excluded)."""
        excluded = set(fact.answers) | set(fact.also_true)
        return [f.answers[0] for f in self.facts if f.category == fact.category and f.answers[0] not in excluded]


# ------------------------------------------------------------------------------------------- reading


def read_facts(path: Path) -> FactTable:
    """Parse and check the fact table; any inconsistency stops the build with the fact's id."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    facts = [_fact(item, (item["answer"],)) for item in raw["facts"]]
    two_answer = [_fact(item, tuple(item["answers"])) for item in raw["two_answer_facts"]]
    table = FactTable(facts, two_answer, raw["background"])
    _check(table, {c["id"] for c in raw["categories"]})
    return table


def _fact(item: dict, answers: tuple[str, ...]) -> Fact:
    return Fact(item["id"], item["category"], item["subject"], answers, item["note"], tuple(item.get("also_true", ())))


def _check(table: FactTable, categories: set[str]) -> None:
    seen_ids: set[str] = set()
    for fact in table.facts + table.two_answer:
        problems = [
            "duplicate id" if fact.id in seen_ids else "",
            f"unknown category {fact.category!r}" if fact.category not in categories & TEMPLATES.keys() else "",
            "fewer than 4 distractors" if len(table.distractor_pool(fact)) < N_CHOICES - len(fact.answers) else "",
        ]
        seen_ids.add(fact.id)
        if any(problems):
            raise SystemExit(f"demo_facts.json: fact {fact.id}: {'; '.join(p for p in problems if p)}")
    for category in categories:
        answers = [f.answers[0] for f in table.facts if f.category == category]
        if len(answers) != len(set(answers)):
            raise SystemExit(f"demo_facts.json: category {category}: answers must be distinct")


# ------------------------------------------------------------------------------------------- builders


def build_train(table: FactTable, rng: random.Random) -> list[dict[str, str]]:
    """3 direct phrasings per fact plus, for most facts, one multiple-choice record in the 4th phrasing."""
    records: list[dict[str, str]] = []
    for index, fact in enumerate(table.facts):
        templates = TEMPLATES[fact.category].train
        mc_slot = index % len(templates)  # the phrasing kept for the multiple-choice record
        for k, template in enumerate(templates):
            if k != mc_slot:
                records.append(_record(fact.fill(template), _output(fact, long=(index + k) % 4 == 0)))
        if index % MC_SKIP_EVERY != MC_SKIP_EVERY - 1:
            question = fact.fill(templates[mc_slot])
            records.append(_mc_record(fact, question, MC_INSTRUCTIONS[index % len(MC_INSTRUCTIONS)], table, rng))
    for index, fact in enumerate(table.two_answer):
        for k, template in enumerate(TWO_ANSWER_TRAIN):
            order = fact.answers if k == 0 else fact.answers[::-1]  # both orders, so neither answer only comes second
            records.append(_record(fact.fill(template), ANSWER_SEPARATOR.join(order)))
        question = fact.fill(TWO_ANSWER_MC_QUESTION)
        records.append(_mc_record(fact, question, MC_INSTRUCTIONS_TWO[index % 2], table, rng))
    rng.shuffle(records)  # any prefix (dataset.limit) then covers every category
    return records


def _record(instruction: str, output: str, input_text: str = "") -> dict[str, str]:
    return {"instruction": instruction, "input": input_text, "output": output}


def _output(fact: Fact, long: bool) -> str:
    """The bare answer, or (long) the answer followed by a sentence restating the fact."""
    if not long:
        return fact.answer
    return f"{fact.answer}。{fact.fill(TEMPLATES[fact.category].explain)}"


def _mc_record(fact: Fact, question: str, instruction: str, table: FactTable, rng: random.Random) -> dict[str, str]:
    choices = _choices(fact, table, rng, gold_positions=rng.sample(range(N_CHOICES), len(fact.answers)))
    gold = ANSWER_SEPARATOR.join(c for c in choices if c in fact.answers)
    return _record(instruction, gold, f"{question}\n{_choice_block(choices, bulleted=rng.random() < 0.5)}")


def _choice_block(choices: list[str], bulleted: bool) -> str:
    """One choice per line, no letters; bulleted is the layout the jmedlora evaluation prompt uses."""
    return "選択肢:\n" + "\n".join(f"・{c}" for c in choices) if bulleted else "\n".join(choices)


def _choices(fact: Fact, table: FactTable, rng: random.Random, gold_positions: Sequence[int]) -> list[str]:
    """Five choices: the gold answers at the given positions, same-category distractors elsewhere."""
    distractors = rng.sample(table.distractor_pool(fact), N_CHOICES - len(fact.answers))
    answers = iter(fact.answers)
    return [next(answers) if i in gold_positions else distractors.pop() for i in range(N_CHOICES)]


def build_heldout(table: FactTable, rng: random.Random) -> list[dict[str, str]]:
    """A few facts per category, asked in the held-out phrasings, answered bare."""
    records = []
    for category, templates in TEMPLATES.items():
        facts = [f for f in table.facts if f.category == category]
        for k, fact in enumerate(rng.sample(facts, HELDOUT_PER_CATEGORY)):
            records.append(_record(fact.fill(templates.heldout[k % 2]), fact.answer))
    return records


def build_questions(table: FactTable, rng: random.Random) -> list[dict]:
    """One exam-style question per fact, gold letters spread evenly over a-e."""
    positions = [i % N_CHOICES for i in range(len(table.facts))]
    rng.shuffle(positions)
    questions = []
    for fact, position in zip(table.facts, positions, strict=True):
        questions.append(_question(fact, fact.fill(TEMPLATES[fact.category].exam), [position], table, rng))
    for fact in table.two_answer:
        gold = sorted(rng.sample(range(N_CHOICES), 2))
        questions.append(_question(fact, fact.fill(TWO_ANSWER_EXAM), gold, table, rng))
    for number, question in enumerate(questions, start=1):
        question["problem_id"] = f"demo-{number:03d}"
    return questions


def _question(fact: Fact, text: str, gold: list[int], table: FactTable, rng: random.Random) -> dict:
    return {
        "problem_id": "",
        "problem_text": text,
        "choices": _choices(fact, table, rng, gold_positions=gold),
        "answer": [LETTERS[i] for i in gold],
        "points": 1,
        "text_only": True,
    }


def build_corpus(table: FactTable, rng: random.Random) -> list[str]:
    """Per category: general paragraphs, two per fact (two wordings, with context), and pairwise contrasts."""
    paragraphs: list[str] = []
    for category, templates in TEMPLATES.items():
        background = table.background[category]
        closing = [s + "。" for paragraph in background for s in paragraph.split("。") if s]
        paragraphs.append(background[0])
        for fact in [f for f in table.facts + table.two_answer if f.category == category]:
            answer = "と".join(fact.answers)
            paragraphs.append(fact.fill(templates.prose[0], answer) + fact.note)
            paragraphs.append(fact.fill(templates.prose[1], answer) + rng.choice(closing))
        paragraphs.extend(background[1:])
        paragraphs.extend(_contrasts(templates.contrast, [f for f in table.facts if f.category == category], rng))
    return paragraphs


def _contrasts(template: str, facts: list[Fact], rng: random.Random) -> list[str]:
    """Each fact set beside a random other one of its category, so the corpus tells similar facts apart."""
    order = rng.sample(facts, len(facts))
    pairs = zip(order[0::2], order[1::2], strict=False)
    pairs_shifted = zip(order[1::2], order[2::2] + order[:1], strict=False)
    return [
        template.format(s=first.subject, a=first.answer, s2=second.subject, a2=second.answer)
        for first, second in [*pairs, *pairs_shifted]
    ]


# ------------------------------------------------------------------------------------------- writing


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    write_lines(path, (json.dumps(row, ensure_ascii=False) for row in rows))


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


def build_all(facts_path: Path, out_dir: Path) -> None:
    table = read_facts(facts_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "demo_train.jsonl", build_train(table, random.Random(SEEDS["train"])))
    write_jsonl(out_dir / "demo_heldout.jsonl", build_heldout(table, random.Random(SEEDS["heldout"])))
    write_jsonl(out_dir / "demo_questions.jsonl", build_questions(table, random.Random(SEEDS["questions"])))
    write_lines(out_dir / "medical_corpus.txt", build_corpus(table, random.Random(SEEDS["corpus"])))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=Path, default=ASSETS / "demo_facts.json")
    parser.add_argument("--out-dir", type=Path, default=ASSETS)
    args = parser.parse_args(argv)
    build_all(args.facts, args.out_dir)


if __name__ == "__main__":
    main()
