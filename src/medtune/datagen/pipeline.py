"""generate_data.py's run: plan chunks → call the API for what is not yet answered → build records.

Records are always rebuilt from the raw log in chunk order, never appended as replies arrive, so
the output does not depend on reply order, on where a previous run was killed, or on whether this
run made any calls at all (reparse=true): the same raw log gives the same records.jsonl, byte for byte.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import sys
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import openai
from omegaconf import DictConfig

from medtune.api_client import (
    ApiFailed,
    ApiStopped,
    Request,
    RequestLog,
    Summary,
    call_all,
    chat_body,
    request_key,
)
from medtune.config import to_plain_dict
from medtune.datagen import storage
from medtune.datagen.batch import BATCH_KEY, batch_jobs, generate_batch
from medtune.datagen.chunking import Chunk, chunk_sources
from medtune.datagen.config import GenerateConfig, GeneratorConfig, PricingConfig, PromptConfig, to_generate_config
from medtune.datagen.dedup import QuestionText, deduplicate, find_contamination
from medtune.datagen.filters import pair_problem, to_pair
from medtune.datagen.parsing import parse_reply
from medtune.errors import DataError
from medtune.lineage import MANIFEST_ARTIFACT_KEY, generated_dataset, generated_dataset_name
from medtune.preemption import preemptible
from medtune.run_dir import lifecycle, write_json
from medtune.tracking import start_wandb_run

PROMPT_ASSET = "datagen_prompt_ja.txt"
FIRST_REJECTS = 3  # reject reasons a run that kept nothing names in its error


@dataclass(frozen=True)
class Planned:
    """One chunk and its request; `body` is None when read back from chunks.jsonl (reparse: no calls)."""

    chunk_id: str
    key: str
    prompt_chars: int
    body: dict[str, Any] | None = None


def run(cfg: DictConfig | GenerateConfig, output_dir: str | Path) -> dict[str, Any]:
    """Generate (or resume, or reparse) into output_dir; returns the manifest (the plan for dry_run)."""
    gen = to_generate_config(cfg)
    out = Path(gen.output_dir or output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    raw = RequestLog(out / storage.RAW_LOG)
    if gen.reparse:
        plan = [Planned(row["id"], row["key"], row["prompt_chars"]) for row in storage.read_jsonl(out / storage.CHUNKS)]
    else:
        chunks = chunk_sources(gen.source, gen.chunking)
        plan = make_plan(chunks, load_prompt_template(gen.prompt), gen)
    if gen.dry_run:
        return dry_run(plan, raw, gen, out)
    if not gen.reparse:
        storage.write_jsonl(out / storage.CHUNKS, [_chunk_row(c, p) for c, p in zip(chunks, plan, strict=True)])
    questions = eval_questions(gen)  # fail on a bad eval set before paying for any call
    with preemptible(), lifecycle(out):  # SIGTERM: preempted; the same command asks only unanswered chunks
        return _generate_tracked(plan, raw, gen, questions, out)


def _generate_tracked(
    plan: list[Planned], raw: RequestLog, gen: GenerateConfig, questions: list[QuestionText], out: Path
) -> dict[str, Any]:
    """Calls, then records from whatever the raw log holds (also when the server stopped the run)."""
    tracker = _start_wandb(gen, out)
    try:
        stopped, summary = None, None
        if not gen.reparse:
            try:
                summary = generate(plan, raw, gen, tracker, out)
            except ApiStopped as err:
                stopped = err
        manifest = build_outputs(plan, raw, gen, questions, out, summary.seconds if summary else None)
        _log_dataset(tracker, manifest, out)
        if stopped is not None:
            raise stopped
        if summary is not None and summary.failed and not manifest["funnel"]["chunks_answered"]:
            raise ApiFailed(f"kept nothing: all {summary.failed} chunks failed ({_last_error(raw)})")
        if not manifest["funnel"]["kept"]:  # every reply unparsable or rejected: not a dataset to train on
            raise ApiFailed(_nothing_kept(manifest["funnel"], out))
        tracker.finish(exit_code=0)
        return manifest
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    finally:
        raw.close()


def _nothing_kept(funnel: dict[str, int], out: Path) -> str:
    """Why the answered chunks gave no record: the funnel's counts and the first reject reasons."""
    rejects = storage.read_jsonl(out / storage.REJECTS)[:FIRST_REJECTS]
    reasons = "; ".join(f"{r['id']} {r['reason']} ({str(r['detail'] or r['content'])[:60]!r})" for r in rejects)
    return (
        f"kept nothing from {funnel['chunks_answered']} answered chunks ({funnel['pairs_parsed']} pairs parsed, "
        f"{funnel['unparsed_fragments']} unparsable fragments); first rejects: {reasons or 'none'}; "
        f"all of them in {out / storage.REJECTS}"
    )


def _last_error(raw: RequestLog) -> str:
    errors = list(raw.errors().values())
    return f"last error: {errors[-1]}" if errors else "no error logged"


# -- plan ------------------------------------------------------------------------------------------
def load_prompt_template(cfg: PromptConfig) -> str:
    """The user's template file, or the bundled one; it must have a {passage} placeholder."""
    if cfg.template_path:
        path = Path(cfg.template_path).expanduser()
        if not path.is_file():
            raise DataError("prompt template file does not exist", path=path, field="prompt.template_path")
        text = path.read_text(encoding="utf-8")
    else:
        path = Path(str(resources.files("medtune").joinpath("assets", PROMPT_ASSET)))
        text = path.read_text(encoding="utf-8")
    if "{passage}" not in text:
        raise DataError("the prompt template has no {passage} placeholder", path=path, field="prompt.template_path")
    return text


def render_prompt(template: str, passage: str, pairs: int) -> str:
    """Plain replacement, not str.format: templates show JSON examples with literal braces."""
    return template.replace("{n_pairs}", str(pairs)).replace("{passage}", passage)


def make_plan(chunks: list[Chunk], template: str, gen: GenerateConfig) -> list[Planned]:
    plan = []
    for chunk in chunks:
        prompt = render_prompt(template, chunk.text, gen.prompt.pairs_per_chunk)
        body = request_body(prompt, gen.generator)
        plan.append(Planned(chunk.id, request_key(body), len(prompt), body))
    return plan


def request_body(passage_prompt: str, generator: GeneratorConfig) -> dict[str, Any]:
    """The exact request; its hash is the resume key, so any change of text or parameters is a new call."""
    return chat_body(generator, [{"role": "user", "content": passage_prompt}])


def _chunk_row(chunk: Chunk, planned: Planned) -> dict[str, Any]:
    return {
        "id": chunk.id,
        "source": chunk.source,
        "first_line": chunk.first_line,
        "last_line": chunk.last_line,
        "key": planned.key,
        "prompt_chars": planned.prompt_chars,
        "text": chunk.text,
    }


def dry_run(plan: list[Planned], raw: RequestLog, gen: GenerateConfig, out: Path) -> dict[str, Any]:
    """Requests still to make and a rough token/cost estimate (characters × pricing.tokens_per_char)."""
    answered = raw.answered()
    pending = [p for p in plan if p.key not in answered]
    pricing = gen.generator.pricing
    prompt_tokens = round(sum(p.prompt_chars for p in pending) * pricing.tokens_per_char)
    reply_tokens = len(pending) * gen.prompt.pairs_per_chunk * pricing.reply_tokens_per_pair
    summary = {
        "chunks": len(plan),
        "already_answered": len(plan) - len(pending),
        "requests": len(pending),
        "estimated_prompt_tokens": prompt_tokens,
        "estimated_completion_tokens": reply_tokens,
        "estimated_cost_usd": round(cost_usd(prompt_tokens, reply_tokens, pricing, batch=gen.generator.batch), 4),
        "batch": gen.generator.batch,
        "model": gen.generator.model,
        "base_url": gen.generator.base_url,
    }
    write_json(out / storage.PLAN, summary)
    print("dry run (no calls made):", file=sys.stderr)
    for key, value in summary.items():
        print(f"  {key}: {value}", file=sys.stderr)
    return summary


def cost_usd(prompt_tokens: float, completion_tokens: float, pricing: PricingConfig, batch: bool = False) -> float:
    """USD at the live prices, or at the Batch API's share of them."""
    live = (prompt_tokens * pricing.input_per_1m + completion_tokens * pricing.output_per_1m) / 1e6
    return live * pricing.batch_price_share if batch else live


def entry_cost_usd(entry: dict[str, Any], pricing: PricingConfig) -> float:
    """What one raw-log attempt cost: its usage at the price of the way it was sent (live or in a batch)."""
    usage = entry.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    return cost_usd(prompt, completion, pricing, batch=BATCH_KEY in entry)


# -- calls -----------------------------------------------------------------------------------------
class Progress:
    """Tokens and cost so far (every attempt in the raw log, earlier runs included), for the bar and W&B."""

    def __init__(self, plan: list[Planned], raw: RequestLog, pricing: PricingConfig, tracker: Any) -> None:
        self.pricing, self.tracker, self.total = pricing, tracker, len(plan)
        self.tokens = Counter[str]()
        self.cost = 0.0
        for entry in raw.entries:
            self._add_usage(entry)
        self.answered = len({p.key for p in plan} & raw.answered().keys())

    def _add_usage(self, entry: dict[str, Any]) -> None:
        for name, value in (entry.get("usage") or {}).items():
            self.tokens[name] += value or 0
        self.cost += entry_cost_usd(entry, self.pricing)

    def figures(self) -> dict[str, float]:
        cost = self.cost
        return {
            "chunks_answered": self.answered,
            "tokens": self.tokens["prompt_tokens"] + self.tokens["completion_tokens"],
            "cost_usd": cost,
            "projected_cost_usd": cost / self.answered * self.total if self.answered else 0.0,
        }

    def record(self, entry: dict[str, Any]) -> None:
        self._add_usage(entry)
        if entry["status"] == "retry":
            return
        self.answered += entry["status"] == "ok"
        self.tracker.log({f"gen/{name}": value for name, value in self.figures().items()})

    def postfix(self) -> str:
        figures = self.figures()
        return (
            f"tokens={figures['tokens']:,} cost=${figures['cost_usd']:.3f} "
            f"projected=${figures['projected_cost_usd']:.3f}"
        )


def generate(plan: list[Planned], raw: RequestLog, gen: GenerateConfig, tracker: Any, out: Path) -> Summary:
    """Call the API (live, or as batch jobs) for every chunk without a logged reply (identical chunks once)."""
    g = gen.generator
    progress = Progress(plan, raw, g.pricing, tracker)
    # OpenAI's limiter counts max_tokens, not the reply's length, against the token rate
    requests = [
        Request(p.key, p.chunk_id, p.body, p.prompt_chars * g.pricing.tokens_per_char + g.max_tokens)
        for p in plan
        if p.body is not None
    ]
    if g.batch:
        return generate_batch(
            g, g.batch_poll_s, requests, raw, out, label="chunks", progress=gen.progress, on_entry=progress.record
        )
    return call_all(
        g,
        requests,
        raw,
        label="chunks",
        unit="chunk",
        progress=gen.progress,
        on_entry=progress.record,
        postfix=progress.postfix,
    )


# -- records ---------------------------------------------------------------------------------------
def build_records(
    plan: list[Planned], answered: dict[str, dict[str, Any]], gen: GenerateConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counter[str]]:
    """Parse and validate every answered chunk's reply, in plan order: (candidates, rejects, counts)."""
    candidates: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    counts = Counter[str]()
    for item in plan:
        entry = answered.get(item.key)
        if entry is None:
            counts["unanswered_chunks"] += 1
            continue
        parsed = parse_reply(entry["content"], entry["finish_reason"])
        counts["pairs_parsed"] += len(parsed.objects)
        counts["fragments"] += len(parsed.fragments)
        for j, (reason, text) in enumerate(parsed.fragments):
            rejects.append({"id": f"{item.chunk_id}#fragment{j}", "reason": reason, "detail": "", "content": text})
        for k, obj in enumerate(parsed.objects):
            record_id = f"{item.chunk_id}#{k}"
            pair = to_pair(obj)
            problem = pair if isinstance(pair, tuple) else pair_problem(pair, gen.filters)
            if problem is not None:
                counts["rejected"] += 1
                rejects.append({"id": record_id, "reason": problem[0], "detail": problem[1], "content": obj})
            else:
                assert isinstance(pair, dict)
                candidates.append(pair | {"id": record_id})
    return candidates, rejects, counts


def eval_questions(gen: GenerateConfig) -> list[QuestionText]:
    """Every question of the configured eval sets, image questions and all (limits do not apply)."""
    from medtune.qa_data import load_questions

    return [
        QuestionText(f"{eval_cfg.suite}/{q.problem_id}", q.problem_text)
        for eval_cfg in gen.decontamination.eval_sets
        for q in load_questions(replace(eval_cfg, text_only=False, limit=None))
    ]


def build_outputs(
    plan: list[Planned],
    raw: RequestLog,
    gen: GenerateConfig,
    questions: list[QuestionText],
    out: Path,
    generation_seconds: float | None,
) -> dict[str, Any]:
    """records.jsonl, rejects.jsonl and manifest.json from the plan and the raw log."""
    candidates, rejects, counts = build_records(plan, raw.answered(), gen)
    unique, duplicates = deduplicate(candidates, gen.dedup.ngram, gen.dedup.near_threshold)
    deco = gen.decontamination
    matches = find_contamination(unique, questions, gen.dedup.ngram, deco.threshold, deco.shared_chars)
    records = unique
    if deco.remove:
        flagged = {m["id"] for m in matches}
        records = [r for r in unique if r["id"] not in flagged]
        rejects += [_contaminated(m) for m in matches]
    rejects += duplicates
    storage.write_jsonl(out / storage.RECORDS, records)
    storage.write_jsonl(out / storage.REJECTS, rejects)
    funnel = {
        "chunks": len(plan),
        "chunks_answered": len(plan) - counts["unanswered_chunks"],
        "unparsed_fragments": counts["fragments"],  # malformed JSON, cut by max_tokens, or no pairs at all
        "pairs_parsed": counts["pairs_parsed"],
        "rejected": counts["rejected"],
        "deduplicated": len(duplicates),
        "decontaminated": len(matches) if deco.remove else 0,
        "kept": len(records),
    }
    manifest = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "funnel": funnel,
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejects).items())),
        "calls": _call_figures(raw),
        "batches": batch_jobs(out),  # generator.batch=true: every batch's file and batch ids and last status
        **_usage_figures(raw, gen.generator.pricing),
        "generation_seconds": None if generation_seconds is None else round(generation_seconds, 3),
        "decontamination": {
            "eval_sets": [e.suite for e in deco.eval_sets],
            "questions": len(questions),
            "threshold": deco.threshold,
            "shared_chars": deco.shared_chars,
            "removed": deco.remove,
            "matches": matches,
        },
        "records": {"path": storage.RECORDS, "count": len(records), "sha256": _sha256(out / storage.RECORDS)},
        MANIFEST_ARTIFACT_KEY: generated_dataset_name(out),  # train.py uses this artifact when it reads the records
        "versions": _versions(),
        "config": to_plain_dict(gen),
    }
    write_json(out / storage.MANIFEST, manifest)
    _print_funnel(funnel, manifest, out)
    return manifest


def _contaminated(match: dict[str, Any]) -> dict[str, Any]:
    how = f"similarity {match['similarity']}" if match["similarity"] is not None else "shared verbatim run"
    return {"id": match["id"], "reason": "contaminated", "detail": f"{match['question']} ({how})", "content": match}


def _call_figures(raw: RequestLog) -> dict[str, int]:
    """Attempts by outcome (medtune.api_client): ok, retry, gave_up (retries spent), refused (400), stopped."""
    statuses = Counter(entry["status"] for entry in raw.entries)
    return {"attempts": len(raw.entries)} | {s: statuses[s] for s in ("ok", "retry", "gave_up", "refused", "stopped")}


def _usage_figures(raw: RequestLog, pricing: PricingConfig) -> dict[str, Any]:
    prompt = sum((e.get("usage") or {}).get("prompt_tokens") or 0 for e in raw.entries)
    completion = sum((e.get("usage") or {}).get("completion_tokens") or 0 for e in raw.entries)
    return {
        "tokens": {"prompt": prompt, "completion": completion},
        "cost_usd": round(sum(entry_cost_usd(e, pricing) for e in raw.entries), 6),
        "batched_attempts": sum(BATCH_KEY in e for e in raw.entries),  # billed at pricing.batch_price_share
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {"medtune": version("medtune"), "openai": openai.__version__, "python": platform.python_version()}


def _print_funnel(funnel: dict[str, int], manifest: dict[str, Any], out: Path) -> None:
    steps = " → ".join(f"{name} {value}" for name, value in funnel.items())
    print(f"{steps}; cost ${manifest['cost_usd']:.4f}; records: {out / storage.RECORDS}", file=sys.stderr)


# -- W&B -------------------------------------------------------------------------------------------
def _start_wandb(gen: GenerateConfig, out: Path) -> Any:
    """A dataset-generation run; the config holds the key's variable name only, never the key."""
    return start_wandb_run(
        gen.wandb,
        out,
        to_plain_dict(gen),
        tags=["generate_data"],
        group="generate_data",
        name=f"generate-{out.name}",
        job_type="generate_data",
    )


def _log_dataset(tracker: Any, manifest: dict[str, Any], out: Path) -> None:
    """Manifest figures in the summary; records.jsonl as a versioned `dataset` artifact named after output_dir."""
    summary = {f"funnel/{k}": v for k, v in manifest["funnel"].items()}
    summary |= {"tokens/prompt": manifest["tokens"]["prompt"], "tokens/completion": manifest["tokens"]["completion"]}
    summary |= {
        "cost_usd": manifest["cost_usd"],
        "decontamination/matches": len(manifest["decontamination"]["matches"]),
    }
    tracker.summary.update(summary)
    metadata = {"funnel": manifest["funnel"], "records_sha256": manifest["records"]["sha256"]}
    tracker.log_artifact(generated_dataset(out, manifest[MANIFEST_ARTIFACT_KEY], metadata))
