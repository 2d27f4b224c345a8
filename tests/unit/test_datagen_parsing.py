"""Reply parsing: what chat models really send back, and nothing dropped silently."""

from __future__ import annotations

from medtune.datagen.parsing import parse_reply

MESSY = """以下に質問と回答を示します。
```json
1. {"instruction": "心房細動の合併症は？", "output": "脳塞栓症"}
2) {"question": "心不全の症状は？",
    "answer": "息切れと浮腫"}
[{"instruction": "喘息の治療薬は？", "output": "吸入ステロイド"}, {"質問": "肺炎の原因は？", "回答": "細菌やウイルス"}]
{"instruction": "壊れた行" "output": "x"}
{"instruction": "腎不全の指標は？", "output": "eGFR"}
```"""


def test_numbering_fences_arrays_multiline_objects_and_aliases_are_parsed() -> None:
    reply = parse_reply(MESSY, "stop")
    assert [(o["instruction"], o["output"]) for o in reply.objects] == [
        ("心房細動の合併症は？", "脳塞栓症"),
        ("心不全の症状は？", "息切れと浮腫"),
        ("喘息の治療薬は？", "吸入ステロイド"),
        ("肺炎の原因は？", "細菌やウイルス"),
        ("腎不全の指標は？", "eGFR"),
    ]
    assert reply.fragments == [("malformed_json", '{"instruction": "壊れた行" "output": "x"}')]


def test_a_reply_cut_by_max_tokens_loses_only_the_cut_pair() -> None:
    text = '{"instruction": "問1", "output": "答1"}\n{"instruction": "問2", "output": "答'
    reply = parse_reply(text, "length")
    assert [o["instruction"] for o in reply.objects] == ["問1"]
    assert reply.fragments == [("truncated", '{"instruction": "問2", "output": "答')]
    # the same broken tail without finish_reason=length is malformed, not truncated
    assert parse_reply(text, "stop").fragments[0][0] == "malformed_json"


def test_a_reply_without_any_json_is_reported() -> None:
    assert parse_reply("申し訳ありませんが、作成できません。", "stop").fragments == [
        ("no_pairs", "申し訳ありませんが、作成できません。")
    ]
