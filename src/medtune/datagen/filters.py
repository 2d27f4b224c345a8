"""Is a parsed JSON object a usable training pair? Each failure has a named reason for rejects.jsonl."""

from __future__ import annotations

from typing import Any

from medtune.datagen.config import FilterConfig

_JAPANESE_RANGES = (
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3040, 0x30FF),  # hiragana, katakana (ー included)
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width katakana
)


def is_japanese_char(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _JAPANESE_RANGES)


def japanese_ratio(text: str) -> float:
    """Share of letters that are kana or kanji; digits and punctuation do not count either way."""
    letters = [c for c in text if c.isalpha()]
    return sum(map(is_japanese_char, letters)) / len(letters) if letters else 0.0


def to_pair(obj: dict[str, Any]) -> dict[str, str] | tuple[str, str]:
    """The record {"instruction", "input"?, "output"} (stripped), or (reason, detail) when a field is unusable."""
    pair: dict[str, str] = {}
    for name in ("instruction", "input", "output"):
        value = obj.get(name)
        if value is None and name == "input":
            continue
        if not isinstance(value, str):
            reason = "missing_field" if value is None else "not_a_string"
            return reason, name
        if value.strip() or name != "input":
            pair[name] = value.strip()
    return pair


def pair_problem(pair: dict[str, str], cfg: FilterConfig) -> tuple[str, str] | None:
    """(reason, detail) for the first rule the pair breaks, or None when it is kept."""
    bounds = {
        "instruction": (cfg.min_instruction_chars, cfg.max_instruction_chars),
        "output": (cfg.min_output_chars, cfg.max_output_chars),
    }
    for name, (low, high) in bounds.items():
        length = len(pair[name])
        if length == 0:
            return "empty", name
        if length < low:
            return "too_short", f"{name}: {length} < {low} characters"
        if length > high:
            return "too_long", f"{name}: {length} > {high} characters"
    ratio = japanese_ratio(pair["instruction"] + pair["output"])
    if ratio < cfg.min_japanese_ratio:
        return "not_japanese", f"{ratio:.2f} of letters are Japanese (< {cfg.min_japanese_ratio})"
    lowered = pair["instruction"].lower()
    for marker in cfg.passage_markers:
        if marker.lower() in lowered:
            return "refers_to_passage", marker
    return None
