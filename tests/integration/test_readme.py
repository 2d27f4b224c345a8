"""The README's main commands run verbatim: `python train.py`, `python evaluate.py`, then the report.

They run with no overrides at all from an empty folder, so the default run dir, the default experiment and the
default W&B mode are exercised exactly as a new user meets them (every other README command is composed and
validated in-process: unit/test_readme_commands.py).
"""

from __future__ import annotations

import json

from helpers import run_module, run_script


def test_the_main_commands_run_verbatim(tmp_path, tiny_models):
    """`python train.py`, then `python evaluate.py`, then the report on what they wrote: no overrides."""
    train = run_script("train.py", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").glob("*/*/results.json")
    results = json.loads(run_dir.read_text())
    assert 0.0 <= results["eval/demo/accuracy"] <= 1.0 and results["train/global_step"] == 500

    evaluate = run_script("evaluate.py", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert len(list((tmp_path / "outputs").glob("*/*/metrics.json"))) == 1

    report = run_module("medtune.report", str(run_dir.parent), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "tiny_gptneox" in (run_dir.parent / "report" / "report.md").read_text()
