"""Deterministic stand-ins for a corpus and a QA-writing model, for generate_data tests and benchmarks.

`synthetic_corpus(n)` writes n distinct Japanese medical sentences, one per line; `qa_responder` answers
a generation prompt like a well-behaved model: one JSON pair per sentence of the passage, one per line.
The same request always gets the same reply, so a resumed run can be compared with an uninterrupted one.
"""

from __future__ import annotations

import json
from itertools import product
from typing import Any

DISEASES = [
    "心房細動",
    "心不全",
    "急性心筋梗塞",
    "2型糖尿病",
    "慢性腎臓病",
    "肺炎",
    "気管支喘息",
    "肝硬変",
    "関節リウマチ",
    "甲状腺機能亢進症",
    "脳梗塞",
    "パーキンソン病",
    "鉄欠乏性貧血",
    "胃潰瘍",
    "敗血症",
    "深部静脈血栓症",
    "慢性閉塞性肺疾患",
    "高血圧症",
    "骨粗鬆症",
    "急性膵炎",
]
FINDINGS = [
    "動悸",
    "息切れ",
    "胸痛",
    "口渇",
    "浮腫",
    "発熱",
    "喘鳴",
    "黄疸",
    "朝のこわばり",
    "体重減少",
    "片麻痺",
    "振戦",
    "倦怠感",
    "心窩部痛",
    "頻脈",
    "下腿の腫脹",
    "慢性の咳",
    "頭痛",
    "腰背部痛",
    "腹痛",
]
PASSAGE_MARK = "一節:\n"  # the bundled prompt puts the passage after this line


def synthetic_corpus(lines: int) -> str:
    """`lines` distinct sentences (at most 400), one per line."""
    pairs = list(product(DISEASES, FINDINGS))[:lines]
    return "".join(f"{disease}の患者では{finding}を訴えて受診することが多い。\n" for disease, finding in pairs)


def qa_responder(request: dict[str, Any]) -> str:
    """One {"instruction", "output"} line per sentence of the passage in the last message."""
    prompt = request["messages"][-1]["content"]
    passage = prompt.split(PASSAGE_MARK, 1)[-1]
    sentences = [s.strip() for s in passage.replace("\n", "").split("。") if s.strip()]
    lines = []
    for sentence in sentences:
        disease, _, rest = sentence.partition("の患者では")
        finding = rest.partition("を訴えて")[0] or sentence
        question = f"{finding}を主訴に受診した{disease}患者で、まず確認することは何ですか。"
        answer = f"{disease}の経過と{finding}の性状や程度を確認します。"
        lines.append(json.dumps({"instruction": question, "output": answer}, ensure_ascii=False))
    return "\n".join(lines)
