"""W&B logging: the report as one run (job_type "report") holding the table and the plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medtune.config import WandbMode
from medtune.report.cells import CSV_COLUMNS
from medtune.report.matrix import Report
from medtune.report.search import StudySection
from medtune.report.tables import table_rows


def log_report_to_wandb(
    report: Report,
    files: dict[str, Path],
    out_dir: Path,
    project: str | None = None,
    mode: WandbMode | None = None,
    run_dirs: Sequence[Path] = (),
) -> str:
    """Log the table and the plots as one W&B run (job_type "report") that uses the results artifact of every run
    dir it read; project and mode None: from the environment, as for every medtune run. Returns the run's id."""
    import wandb

    from medtune.config import WandbConfig
    from medtune.lineage import use_run_results
    from medtune.tracking import start_wandb_run

    run = start_wandb_run(
        WandbConfig(mode=mode, project=project),
        out_dir,
        {"sources": report.sources, "n_boot": report.n_boot},
        tags=["report"],
        group="report",
        name="comparison-report",
        job_type="report",
    )
    try:
        use_run_results(run, list(run_dirs))
        rows = table_rows(report)
        logged: dict[str, Any] = {
            "report/matrix": wandb.Table(
                columns=list[Any](CSV_COLUMNS), data=[[row[c] for c in CSV_COLUMNS] for row in rows]
            )
        }
        logged |= {f"report/{name}": wandb.Image(str(path)) for name, path in files.items() if path.suffix == ".png"}
        run.log(logged)
    finally:
        run.finish()
    return run.id


def log_search_to_wandb(
    section: StudySection, out_dir: Path, project: str | None = None, mode: WandbMode | None = None
) -> str:
    """One W&B run per search study (job_type "search"), in its trials' group: the study's figures and plots."""
    import wandb

    from medtune.config import WandbConfig
    from medtune.tracking import start_wandb_run

    run_dir = out_dir / "search" / section.name  # its own run id file, so a second report continues this run
    run_dir.mkdir(parents=True, exist_ok=True)
    run = start_wandb_run(
        WandbConfig(mode=mode, project=project),
        run_dir,
        {"study": section.name, "storage": section.storage},
        tags=["search", "report"],
        group=section.group or section.name,
        name=f"search-{section.name}",
        job_type="search",
    )
    try:
        logged: dict[str, Any] = {f"search/{key}": value for key, value in section.summary.items()}
        logged |= {name: wandb.Image(str(path)) for name, path in section.files.items()}
        run.log(logged)
    finally:
        run.finish()
    return run.id
