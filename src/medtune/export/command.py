"""The command line of `python -m medtune.export` (and `medtune export`): check, merge, write, track, push."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import medtune.export
from medtune.cli import exit_on_user_error, fail, quiet_known_warnings
from medtune.config import TrainConfig, WandbMode, to_plain_dict, tuning_method
from medtune.export.card import model_card, read_results
from medtune.export.hub import HUB_FAILED_EXIT, HubUnavailable, check_hub_allowed, push_folder
from medtune.export.merge import ExportKind, check_out, export_dtype, export_kind, exportable_run, staged, write_weights
from medtune.metric_keys import TRAIN_GLOBAL_STEP, qa_key
from medtune.run_dir import EXPORT_RECORD, EXPORT_SUBDIR, MODEL_CARD, write_json


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="medtune export", description=(medtune.export.__doc__ or "").split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished train.py run dir")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (new, or empty)")
    parser.add_argument("--adapter-only", action="store_true", help="export the adapter alone, with the same card")
    parser.add_argument("--push-to-hub", metavar="REPO", help="then upload the folder to this hub repo (user/name)")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    parser.add_argument(
        "--wandb-mode",
        choices=[mode.value for mode in WandbMode],
        help="where the export's W&B run goes (default: the run's own wandb.mode, else $WANDB_MODE, else offline)",
    )
    return parser.parse_args(argv)


def export(
    run_dir: Path, out: Path, adapter_only: bool = False, push_to: str | None = None
) -> tuple[TrainConfig, dict[str, Any]]:
    """Write the export folder of a finished run (checked first: nothing is loaded for a bad command line);
    returns the run's config and the folder's record (medtune_export.json)."""
    tc = exportable_run(run_dir)
    kind = export_kind(tc, adapter_only)
    check_out(out)
    if push_to:
        check_hub_allowed(push_to)
    if kind != ExportKind.adapter:
        from medtune.tiny_paths import ensure_tiny_model

        ensure_tiny_model(tc.base_model, tc.cache_dir)  # a tiny base is rebuilt if its cache was cleared
    record = export_record(run_dir, tc, kind)
    with staged(out) as folder:
        write_weights(run_dir, tc, kind, folder)
        (folder / MODEL_CARD).write_text(model_card(run_dir, tc, kind, out.name), encoding="utf-8")
        write_json(folder / EXPORT_RECORD, record)
    return tc, record


def export_record(run_dir: Path, tc: TrainConfig, kind: ExportKind) -> dict[str, Any]:
    """Where the folder came from, for scripts (the card says the same for people)."""
    results, suite = read_results(run_dir), tc.eval.suite
    return {
        "kind": str(kind),
        "run_dir": str(run_dir.resolve()),
        "base_model": tc.base_model.path,
        "base_model_name": tc.base_model.name,
        "tuning": tuning_method(tc.adapter.method, tc.quantization.mode),
        "steps": results.get(TRAIN_GLOBAL_STEP),
        "dtype": export_dtype(tc) if kind != ExportKind.adapter else None,
        "suite": suite,
        qa_key(suite, "accuracy"): results.get(qa_key(suite, "accuracy")),
        "wandb_run_id": results.get("wandb_run_id"),
        "config": to_plain_dict(tc),
    }


def track(run_dir: Path, tc: TrainConfig, out: Path, record: dict[str, Any], mode: str | None) -> dict[str, str]:
    """The export's W&B run (job_type export, kept in <run dir>/export/): the exported folder as a model artifact
    that uses the run's own; returns where its records are."""
    from medtune.lineage import log_export
    from medtune.tracking import resolve_mode, start_wandb_run, wandb_locations

    wb = replace(tc.wandb, mode=WandbMode(mode)) if mode else tc.wandb
    if resolve_mode(wb.mode) == WandbMode.disabled:
        return {"wandb/mode": str(WandbMode.disabled)}  # nothing written into the run dir either
    run = start_wandb_run(
        wb,
        run_dir / EXPORT_SUBDIR,
        {key: value for key, value in record.items() if key != "config"} | {"out": str(out.resolve())},
        tags=["export", record["kind"], record["tuning"], tc.base_model.name],
        group=tc.experiment_name,
        name=f"export-{out.name}",
        job_type="export",
    )
    try:
        log_export(run, tc, run_dir, out, record["kind"], {k: v for k, v in record.items() if k != "config"})
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish(exit_code=0)
    return wandb_locations(run)


def summary(out: Path, record: dict[str, Any], wandb: dict[str, str], pushed: str | None) -> str:
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    what = {"merged": "adapter merged", "adapter": "adapter only", "full": "full weights"}[record["kind"]]
    lines = [f"medtune: exported the {record['tuning']} run's model ({what}) to {out} ({size_mb:,.1f} MB)"]
    lines.append(f"  model card       {out / MODEL_CARD}")
    if wandb.get("wandb/mode", WandbMode.disabled) != WandbMode.disabled:
        lines.append(f"  W&B ({wandb['wandb/mode']})".ljust(19) + wandb.get("wandb/url", wandb["wandb/files"]))
    if pushed:
        lines.append(f"  hub              {pushed}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    quiet_known_warnings()  # before transformers/peft/bitsandbytes load
    args = parse_args(argv)
    with exit_on_user_error():
        tc, record = export(args.run_dir, args.out, args.adapter_only, args.push_to_hub)
        wandb = track(args.run_dir, tc, args.out, record, args.wandb_mode)
    pushed = None
    if args.push_to_hub:
        try:
            pushed = push_folder(args.out, args.push_to_hub, args.private)
        except HubUnavailable as err:
            print(summary(args.out, record, wandb, None), flush=True)
            fail(str(err), HUB_FAILED_EXIT)
    print(summary(args.out, record, wandb, pushed), flush=True)
