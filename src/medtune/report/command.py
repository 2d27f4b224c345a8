"""The command line of `python -m medtune.report` (and `medtune report`): collect, build, write, log."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import medtune.report
from medtune.cli import exit_on_user_error
from medtune.config import WandbMode
from medtune.errors import ConfigError
from medtune.report.matrix import build_report
from medtune.report.records import collect_local
from medtune.report.search import dashboard_lines, in_matrix, search_sections
from medtune.report.wandb_log import log_report_to_wandb, log_search_to_wandb
from medtune.report.wandb_source import collect_wandb
from medtune.report.write import write_report
from medtune.stats import DEFAULT_N_BOOT
from medtune.tracking import resolve_mode


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m medtune.report", description=(medtune.report.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("paths", nargs="*", type=Path, help="multirun dirs or train.py run dirs")
    parser.add_argument("--out", type=Path, help="output dir (default: <first path>/report)")
    parser.add_argument("--wandb-project", help="read runs from this W&B project ([entity/]project), online")
    parser.add_argument("--wandb-sweep", help="only this sweep id of --wandb-project")
    parser.add_argument("--n-boot", type=int, default=DEFAULT_N_BOOT, help="bootstrap resamples per CI")
    parser.add_argument(
        "--wandb-mode",
        choices=[mode.value for mode in WandbMode],
        help="where the report run goes (default: $WANDB_MODE, else offline)",
    )
    parser.add_argument("--log-project", help="W&B project of the report run (default: $WANDB_PROJECT, else medtune)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[dict[str, Path], list[str]]:
    """Collect, build, write, and log the report; returns the written files and lines for the console."""
    if not args.paths and not args.wandb_project:
        raise ConfigError("give multirun/run dirs, or --wandb-project (and optionally --wandb-sweep).")
    if args.wandb_sweep and not args.wandb_project:
        raise ConfigError("--wandb-sweep needs --wandb-project (the sweep's [entity/]project).")
    if args.out is None and not args.paths:
        raise ConfigError("--out is required when reading from W&B (there is no multirun dir to write into).")
    records = collect_local(args.paths)
    sources = [str(p) for p in args.paths]
    if args.wandb_project:
        records += collect_wandb(args.wandb_project, args.wandb_sweep)
        sources.append(f"wandb:{args.wandb_project}" + (f"/sweeps/{args.wandb_sweep}" if args.wandb_sweep else ""))
    out_dir = args.out or args.paths[0] / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    searches = search_sections(args.paths, out_dir)
    records = [r for r in records if r.source.startswith("wandb:") or in_matrix(r.source, searches)]
    report = build_report(records, sources, args.n_boot)
    files = write_report(report, out_dir, searches)
    if resolve_mode(args.wandb_mode) != WandbMode.disabled:
        run_dirs = [Path(r.source) for r in records if not r.source.startswith("wandb:")]
        log_report_to_wandb(report, files, out_dir, args.log_project, args.wandb_mode, run_dirs)
        for section in searches:
            log_search_to_wandb(section, out_dir, args.log_project, args.wandb_mode)
    return files, dashboard_lines(searches)


def main(argv: Sequence[str] | None = None) -> None:
    with exit_on_user_error():
        files, notes = run(parse_args(argv))
    print(f"report: {files['markdown']}\n        {files['html']}  (opens in any browser, no server)")
    for note in notes:
        print(note)
