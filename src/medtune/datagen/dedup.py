"""Character-level similarity for Japanese: exact and near-duplicate removal, and decontamination.

Japanese has no spaces, so word-based measures (ROUGE on whitespace tokens) see one "word" per
sentence. We compare sets of character n-grams of NFKC-normalised text (Jaccard similarity).
Comparing every pair is quadratic (77k records → 3·10⁹ pairs), so a MinHash LSH index proposes
candidates and each candidate's exact Jaccard decides; the banding is chosen so a pair at the
threshold is proposed with probability ≥ 0.99. Everything is seeded: the same input gives the
same result in every run (reparse is byte-identical).
"""

from __future__ import annotations

import unicodedata
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

NUM_PERM = 128  # MinHash signature length
_PRIME = (1 << 61) - 1
_RNG = np.random.default_rng(20231018)
_A = _RNG.integers(1, 1 << 31, NUM_PERM, dtype=np.uint64)  # a·h + b stays below 2⁶⁴ for 32-bit h
_B = _RNG.integers(0, 1 << 31, NUM_PERM, dtype=np.uint64)


def normalise(text: str) -> str:
    """NFKC (full-width ↔ half-width), lower case, letters and digits only."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if c.isalnum())


def char_ngrams(text: str, n: int) -> frozenset[str]:
    norm = normalise(text)
    if len(norm) <= n:
        return frozenset([norm]) if norm else frozenset()
    return frozenset(norm[i : i + n] for i in range(len(norm) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _rows_per_band(threshold: float, recall: float = 0.99) -> int:
    """The most selective band size whose candidate probability at `threshold` is still ≥ recall."""
    best = 1
    for rows in range(1, 17):
        bands = NUM_PERM // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            best = rows
    return best


@dataclass(frozen=True)
class Match:
    key: str
    similarity: float


class SimilarityIndex:
    """Texts added under a key; `similar(text)` finds those with n-gram Jaccard ≥ threshold."""

    def __init__(self, n: int, threshold: float) -> None:
        self.n, self.threshold = n, threshold
        self.rows = _rows_per_band(max(threshold, 0.05))
        self._grams: dict[str, frozenset[str]] = {}
        self._buckets: dict[tuple[int, bytes], list[str]] = defaultdict(list)

    def add(self, key: str, text: str) -> None:
        grams = char_ngrams(text, self.n)
        self._grams[key] = grams
        for band in self._bands(grams):
            self._buckets[band].append(key)

    def similar(self, text: str) -> list[Match]:
        """Matches best first (ties: insertion order)."""
        grams = char_ngrams(text, self.n)
        candidates = dict.fromkeys(key for band in self._bands(grams) for key in self._buckets.get(band, ()))
        matches = [Match(key, jaccard(grams, self._grams[key])) for key in candidates]
        return sorted((m for m in matches if m.similarity >= self.threshold), key=lambda m: -m.similarity)

    def _bands(self, grams: frozenset[str]) -> list[tuple[int, bytes]]:
        if not grams:
            return []
        hashes = np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))
        signature = ((_A[:, None] * hashes[None, :] + _B[:, None]) % _PRIME).min(axis=1)
        rows = self.rows
        return [(i, signature[i * rows : (i + 1) * rows].tobytes()) for i in range(NUM_PERM // rows)]


class SharedRunIndex:
    """Finds texts sharing a verbatim run of `length` normalised characters (a copied exam question)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self._windows: dict[str, str] = {}

    def add(self, key: str, text: str) -> None:
        for window in self._windows_of(text):
            self._windows.setdefault(window, key)

    def first_shared(self, text: str) -> str | None:
        return next((self._windows[w] for w in self._windows_of(text) if w in self._windows), None)

    def _windows_of(self, text: str) -> list[str]:
        norm = normalise(text)
        return [norm[i : i + self.length] for i in range(len(norm) - self.length + 1)]


def pair_text(record: dict[str, str]) -> str:
    return "\n".join(record.get(name, "") for name in ("instruction", "input", "output"))


def deduplicate(records: list[dict[str, str]], n: int, threshold: float) -> tuple[list[dict], list[dict]]:
    """Keep the first of each exact (normalised) or near duplicate group; rejects name the kept one."""
    kept: list[dict] = []
    rejects: list[dict] = []
    exact: dict[str, str] = {}
    index = SimilarityIndex(n, threshold)
    for record in records:
        text = pair_text(record)
        original = exact.get(normalise(text))
        if original is not None:
            rejects.append(_reject(record, "exact_duplicate", original, 1.0))
            continue
        near = index.similar(text)
        if near:
            rejects.append(_reject(record, "near_duplicate", near[0].key, near[0].similarity))
            continue
        exact[normalise(text)] = record["id"]
        index.add(record["id"], text)
        kept.append(record)
    return kept, rejects


def _reject(record: dict[str, str], reason: str, of: str, similarity: float) -> dict:
    return {"id": record["id"], "reason": reason, "detail": f"{of} (similarity {similarity:.3f})", "content": record}


@dataclass(frozen=True)
class QuestionText:
    key: str  # "<suite>/<problem_id>"
    text: str


def find_contamination(
    records: list[dict[str, str]], questions: list[QuestionText], n: int, threshold: float, shared_chars: int
) -> list[dict]:
    """One match per flagged record: the question it resembles (Jaccard of the instruction) or copies
    (a verbatim run of `shared_chars` characters anywhere in the pair)."""
    similar = SimilarityIndex(n, threshold)
    shared = SharedRunIndex(shared_chars)
    texts = {}
    for question in questions:
        similar.add(question.key, question.text)
        shared.add(question.key, question.text)
        texts[question.key] = question.text
    matches = []
    for record in records:
        near = similar.similar(record["instruction"])
        match: dict[str, Any]
        if near:
            key = near[0].key
            match = {"id": record["id"], "question": key, "similarity": round(near[0].similarity, 4)}
        elif (copied := shared.first_shared(pair_text(record))) is not None:
            key = copied
            match = {"id": record["id"], "question": key, "similarity": None, "shared_chars": shared_chars}
        else:
            continue
        matches.append(match | {"instruction": record["instruction"], "question_text": texts[key]})
    return matches
