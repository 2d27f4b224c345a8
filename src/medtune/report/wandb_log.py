"""W&B logging: the report as one run (job_type "report") holding the table and the plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medtune.config import WandbMode
from medtune.report.cells import CSV_COLUMNS
from medtune.report.matrix import Report
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
