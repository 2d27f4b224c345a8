"""A model's reply → the JSON pairs in it, tolerant of how chat models actually answer.

Asked for "one JSON object per line", models also number the lines, wrap them in ``` fences, return
one JSON array, spread an object over several lines, add chatter, or stop mid-object when they hit
`max_tokens` (finish_reason "length"). Every "{" starts a decode attempt; a failed one is reported
as a fragment (the cut pair of a truncated reply, else malformed JSON), so nothing vanishes silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# Key spellings models use for the two fields, mapped to ours.
KEY_ALIASES = {
    "instruction": "instruction",
    "question": "instruction",
    "q": "instruction",
    "質問": "instruction",
    "問題": "instruction",
    "input": "input",
    "output": "output",
    "answer": "output",
    "a": "output",
    "回答": "output",
    "答え": "output",
    "解答": "output",
}
_FENCE = re.compile(r"^[ \t]*```[\w-]*[ \t]*$", re.MULTILINE)
_DECODER = json.JSONDecoder()
FRAGMENT_CHARS = 500  # rejects.jsonl keeps at most this much of an unparseable fragment


@dataclass
class ParsedReply:
    objects: list[dict[str, Any]] = field(default_factory=list)  # keys mapped through KEY_ALIASES
    fragments: list[tuple[str, str]] = field(default_factory=list)  # (reason, text) that gave no object


def parse_reply(text: str, finish_reason: str | None) -> ParsedReply:
    """All JSON objects in `text`; a reply cut by max_tokens loses only its last, unfinished object."""
    text = _FENCE.sub("", text)
    reply = ParsedReply()
    last_decode_failed = False
    position = text.find("{")
    while position != -1:
        try:
            obj, end = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError:
            end = _line_end(text, position)
            reply.fragments.append(("malformed_json", text[position:end][:FRAGMENT_CHARS]))
            last_decode_failed = True
        else:
            reply.objects.append({KEY_ALIASES.get(str(k).strip().lower(), str(k)): v for k, v in obj.items()})
            last_decode_failed = False
        position = text.find("{", end)
    if finish_reason == "length" and last_decode_failed:  # the object the token limit cut off
        reply.fragments[-1] = ("truncated", reply.fragments[-1][1])
    if not reply.objects and not reply.fragments:
        reply.fragments.append(("no_pairs", text.strip()[:FRAGMENT_CHARS]))
    return reply


def _line_end(text: str, position: int) -> int:
    """After a failed decode, resume at the next line: the rest of this one belongs to the broken object."""
    end = text.find("\n", position)
    return len(text) if end == -1 else end
