"""The comparison report on hand-written run dirs laid out as train.py and Hydra write them.

The fixture multirun has rows tiny_gptneox and tiny_llama, columns untuned / lora · 5 / qlora · 5:
tiny_llama's QLoRA run failed, tiny_llama has no LoRA run at all (missing), an older failed run of
tiny_gptneox LoRA is superseded by a finished re-run, and a pretraining run sits outside the matrix.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.image import imread

from medtune.config import tuning_method
from medtune.errors import DataError
from medtune.report.cells import CSV_COLUMNS, build_cell, column_label
from medtune.report.command import main
from medtune.report.matrix import build_matrix, build_report, choose_runs
from medtune.report.records import HYDRA_CONFIG, RunRecord, collect_local, read_run_dir
from medtune.report.tables import render_cell
from medtune.report.wandb_log import log_report_to_wandb
from medtune.report.write import write_report
from medtune.run_dir import PREDICTIONS, RESOLVED_CONFIG, RESULTS_FILE, STATUS_FILE
from medtune.stats import mcnemar_exact

from wandb_records import finished_offline_runs

N = 40
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OOM = "OutOfMemoryError: CUDA out of memory | tried to allocate 2.00 GiB"


def _correct(n_right: int) -> list[bool]:
    return [True] * n_right + [False] * (N - n_right)


def _config(base: str, adapter: str, quant: str, steps: int = 5, stage: str = "sft", seed: int = 42) -> dict:
    return {
        "base_model": {"name": base, "path": f"/models/{base}", "arch": "gpt_neox"},
        "adapter": {"method": adapter, "r": 8},
        "quantization": {"mode": quant},
        "trainer": {"max_steps": steps, "learning_rate": 2e-3, "seed": seed},
        "eval": {"suite": "demo"},
        "experiment_name": "demo_matrix",
        "stage": stage,
    }


def _write_predictions(path: Path, correct: list[bool]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"problem_id": f"q{i:03d}", "response": "x", "correct": c, "gestalt": 0.5} for i, c in enumerate(correct)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_run(
    run_dir: Path,
    config: dict,
    status: str = "finished",
    base: list[bool] | None = None,
    tuned: list[bool] | None = None,
    error: str = "",
    started: float = 1_000_000.0,
) -> Path:
    """A run dir with the files train.py writes; `started` sets the config's mtime (the run's start)."""
    run_dir.mkdir(parents=True)
    (run_dir / RESOLVED_CONFIG).write_text(yaml.safe_dump(config))
    os.utime(run_dir / RESOLVED_CONFIG, (started, started))
    (run_dir / STATUS_FILE).write_text(json.dumps({"status": status} | ({"error": error} if error else {})))
    if base is not None:
        _write_predictions(run_dir / PREDICTIONS["base"], base)
    if tuned is not None:
        _write_predictions(run_dir / PREDICTIONS["tuned"], tuned)
    scored = tuned if tuned is not None else base
    if status == "finished" and scored is None:  # a pretraining run: no QA score
        (run_dir / RESULTS_FILE).write_text(json.dumps({"train/loss": 2.5}))
    elif status == "finished":
        assert scored is not None
        accuracy = sum(scored) / len(scored)
        results = {
            "eval/demo/accuracy": accuracy,
            "eval/demo/exact_match": accuracy / 2,
            "eval/demo/gestalt": 0.61,
            "eval/demo/base_accuracy": sum(base or []) / N,
            "memory/peak_rss_mb": 900.0 + 100 * len(run_dir.name),
        }
        if tuned is not None:
            results |= {"perf/train_runtime_s": 12.5, "perf/train_tokens_per_s": 4321.0, "train/global_step": 5}
        (run_dir / RESULTS_FILE).write_text(json.dumps(results))
    return run_dir


def build_sweep(root: Path) -> Path:
    make_run(root / "0_gx_untuned", _config("tiny_gptneox", "none", "none"), base=_correct(12))
    make_run(root / "1_gx_lora_old", _config("tiny_gptneox", "lora", "none"), "failed", error="KeyboardInterrupt: ")
    make_run(
        root / "2_gx_lora", _config("tiny_gptneox", "lora", "none"), base=_correct(12), tuned=_correct(30), started=2e6
    )
    make_run(root / "3_gx_qlora", _config("tiny_gptneox", "lora", "nf4"), base=_correct(11), tuned=_correct(13))
    make_run(root / "4_ll_untuned", _config("tiny_llama", "none", "none"), base=_correct(10))
    make_run(root / "5_ll_qlora", _config("tiny_llama", "lora", "nf4"), "failed", error=OOM)
    make_run(root / "6_pretrain", _config("tiny_gptneox", "full", "none", stage="pretrain"))
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the tests that only read it (building the report takes a second on 2 cores)."""
    return build_sweep(tmp_path_factory.mktemp("sweep") / "multirun")


@pytest.fixture(scope="module")
def report_dir(sweep: Path) -> Path:
    main([str(sweep), "--wandb-mode", "disabled", "--n-boot", "2000"])
    return sweep / "report"


def _csv_rows(report_dir: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (report_dir / "report.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CSV_COLUMNS
    return {(r["base_model"], r["tuning"]): r for r in rows}


def test_csv_holds_every_cell_with_its_status(report_dir: Path):
    rows = _csv_rows(report_dir)
    assert len(rows) == 6  # 2 base models × {untuned, lora · 5, qlora · 5}; the pretraining run is not a cell
    statuses = {key: row["status"] for key, row in rows.items()}
    assert statuses == {
        ("tiny_gptneox", "untuned"): "finished",
        ("tiny_gptneox", "lora"): "finished",  # the finished re-run, not the earlier failure
        ("tiny_gptneox", "qlora"): "finished",
        ("tiny_llama", "untuned"): "finished",
        ("tiny_llama", "lora"): "missing",
        ("tiny_llama", "qlora"): "failed",
    }
    assert rows["tiny_llama", "qlora"]["error"] == OOM
    assert rows["tiny_llama", "qlora"]["accuracy"] == ""
    assert rows["tiny_gptneox", "lora"]["steps"] == "5"


def test_csv_figures_carry_ci_and_paired_test(report_dir: Path):
    rows = _csv_rows(report_dir)
    lora = rows["tiny_gptneox", "lora"]
    assert float(lora["accuracy"]) == pytest.approx(30 / N)
    assert float(lora["ci_low"]) < 30 / N < float(lora["ci_high"])
    assert float(lora["n_questions"]) == N
    expected = mcnemar_exact(_correct(12), _correct(30))
    assert (int(lora["gains"]), int(lora["losses"])) == (18, 0)
    assert float(lora["p_value"]) == pytest.approx(expected.p_value)
    assert float(rows["tiny_gptneox", "qlora"]["p_value"]) == pytest.approx(0.5)  # 2 gains, 0 losses
    assert (lora["train_time_s"], lora["tokens_per_s"], lora["memory_kind"]) == ("12.5", "4321.0", "rss")
    untuned = rows["tiny_llama", "untuned"]
    assert float(untuned["accuracy"]) == pytest.approx(10 / N)
    assert untuned["ci_low"] != "" and untuned["p_value"] == "" and untuned["train_time_s"] == ""


def test_markdown_shows_matrix_failures_and_tests(report_dir: Path):
    text = (report_dir / "report.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| base model"))
    assert header == "| base model | untuned | lora · 5 steps | qlora · 5 steps |"
    llama = next(line for line in text.splitlines() if line.startswith("| tiny_llama"))
    assert "**MISSING**" in llama and "**FAILED**" in llama
    assert "OutOfMemoryError: CUDA out of memory \\| tried" in llama  # the pipe cannot break the table
    assert llama.count(" | ") == 3  # four cells, the escaped pipe is not a separator
    gptneox = next(line for line in text.splitlines() if line.startswith("| tiny_gptneox"))
    assert "**0.750** [" in gptneox and "p = 7.63e-06 (+18 / −0)" in gptneox  # 2 · 2⁻¹⁸
    assert "(+2 / −0)" in gptneox and gptneox.count("p = ") == 2
    assert "## Failed, unfinished and missing cells" in text and "1_gx_lora_old" in text
    assert "Runs outside the matrix" in text and "6_pretrain" in text
    assert "![accuracy/demo](accuracy_demo.png)" in text


def test_plots_are_valid_pngs(report_dir: Path):
    for name in ("accuracy_demo.png", "memory_vs_accuracy_demo.png"):
        path = report_dir / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        height, width, _channels = imread(path).shape
        assert height > 200 and width > 300


def test_an_untrained_job_and_a_killed_run_are_shown_as_such(tmp_path: Path):
    sweep = build_sweep(tmp_path / "multirun")
    killed = make_run(sweep / "7_ll_lora", _config("tiny_llama", "lora", "none"), "running")
    hydra_only = sweep / "8_ll_dora"  # Hydra composed it, train.py stopped before writing anything
    (hydra_only / ".hydra").mkdir(parents=True)
    (hydra_only / ".hydra" / "config.yaml").write_text(yaml.safe_dump(_config("tiny_llama", "dora", "none")))
    (hydra_only / "train.log").write_text("[INFO] start\nmedtune: error: demo.jsonl:3: not valid JSON\n\n")
    main([str(sweep), "--out", str(tmp_path / "out"), "--wandb-mode", "disabled", "--n-boot", "500"])
    rows = _csv_rows(tmp_path / "out")
    assert rows["tiny_llama", "lora"]["status"] == "preempted"  # running, with no live process: as sweep status says
    assert "killed" in rows["tiny_llama", "lora"]["error"] and rows["tiny_llama", "lora"]["source"] == str(killed)
    assert rows["tiny_llama", "dora"]["status"] == "not started"
    assert rows["tiny_llama", "dora"]["error"] == "medtune: error: demo.jsonl:3: not valid JSON"
    assert rows["tiny_gptneox", "dora"]["status"] == "missing"


def test_runs_given_one_by_one_and_duplicate_choice(tmp_path: Path):
    early = make_run(tmp_path / "a", _config("m", "lora", "none"), base=_correct(5), tuned=_correct(6), started=1e6)
    late = make_run(tmp_path / "b", _config("m", "lora", "none"), base=_correct(5), tuned=_correct(9), started=2e6)
    failed_later = make_run(tmp_path / "c", _config("m", "lora", "none"), "failed", error="boom", started=3e6)
    chosen, superseded = choose_runs(collect_local([failed_later, late, early]))
    assert [r.source for r in chosen] == [str(late)]
    assert {r.source for r in superseded} == {str(early), str(failed_later)}


def test_tuning_method_names_the_matrix_columns():
    names = {
        ("none", "none"): "untuned",
        ("lora", "none"): "lora",
        ("lora", "nf4"): "qlora",
        ("lora", "int8"): "lora-int8",
        ("dora", "none"): "dora",
        ("full", "none"): "full",
        ("none", "nf4"): "untuned-nf4",  # a quantized base is a different model from the untuned one
    }
    assert {pair: tuning_method(*pair) for pair in names} == names


def test_file_names_agree_with_the_writers():
    """The report keeps its own names (importing training would load torch); they must not drift."""
    from medtune.evaluation import scoring

    assert PREDICTIONS["tuned"].endswith("/" + scoring.PREDICTIONS_FILE)


def test_bad_predictions_line_names_file_and_line(tmp_path: Path):
    run_dir = make_run(tmp_path / "r", _config("m", "lora", "none"), base=_correct(5), tuned=_correct(6))
    path = run_dir / PREDICTIONS["tuned"]
    path.write_text(path.read_text() + '{"problem_id": "q999"}\n')
    with pytest.raises(DataError, match=r"predictions\.jsonl:41: missing field \(field 'correct'\)"):
        collect_local([run_dir])


def test_not_a_run_dir_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "empty").mkdir()
    for argv in ([str(tmp_path / "empty")], [str(tmp_path / "nowhere")], []):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--wandb-mode", "disabled"])
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "holds no train.py runs" in err and "is not a directory" in err and "--wandb-project" in err


def test_report_logged_to_wandb_offline(sweep: Path, tmp_path: Path):
    records = collect_local([sweep])
    report = build_report(records, [str(sweep)], n_boot=500)
    out = tmp_path / "out"
    files = write_report(report, out)
    run_id = log_report_to_wandb(report, files, out, project="medtune-test", mode="offline")
    (logged,) = finished_offline_runs(out)
    assert logged.run_id == run_id
    summary = logged.summary  # nested media dicts arrive flattened: report/matrix/_type, ...
    assert (summary["report/matrix/_type"], summary["report/matrix/nrows"]) == ("table-file", 6)
    assert summary["report/accuracy/demo/_type"] == summary["report/memory_vs_accuracy/demo/_type"] == "image-file"
    (table_file,) = out.glob(f"wandb/offline-run-*/files/{summary['report/matrix/path']}")
    table = json.loads(table_file.read_text())
    assert table["columns"] == CSV_COLUMNS
    rows = {(row[1], row[2]): row for row in table["data"]}
    assert rows["tiny_llama", "qlora"][4] == "failed" and rows["tiny_llama", "lora"][4] == "missing"
    assert logged.exit_code == 0


def test_columns_follow_the_study_order_then_steps():
    def record(method: str, steps: int) -> RunRecord:
        return RunRecord("x", "m", method, steps, "demo", "sft", "failed", "boom")

    runs = [record(m, s) for m, s in [("full", 5), ("dora-nf4", 5), ("qlora", 50), ("qlora", 5), ("untuned", 0)]]
    matrix = build_matrix("demo", runs)
    assert [column_label(c) for c in matrix.columns] == [
        "untuned",
        "qlora · 5 steps",
        "qlora · 50 steps",
        "dora-nf4 · 5 steps",
        "full · 5 steps",
    ]


def _shifted(n_right: int, shift: int) -> list[bool]:
    """n_right correct answers starting at question `shift` (so seeds get some questions right differently)."""
    return [(i - shift) % N < n_right for i in range(N)]


def test_seeds_of_a_cell_are_grouped_with_spread_flips_and_one_paired_test(tmp_path: Path):
    root = tmp_path / "sweep"
    for seed, (n_right, shift) in zip((1, 2, 3), ((20, 0), (24, 2), (22, 4)), strict=True):
        lora = _config("tiny_gptneox", "lora", "none", seed=seed)
        make_run(root / f"lora_s{seed}", lora, base=_correct(8), tuned=_shifted(n_right, shift))
        make_run(root / f"untuned_s{seed}", _config("tiny_gptneox", "none", "none", seed=seed), base=_correct(8))
    make_run(root / "lora_s4", _config("tiny_gptneox", "lora", "none", seed=4), "failed", error=OOM)
    main([str(root), "--wandb-mode", "disabled", "--n-boot", "2000"])
    rows = {row["tuning"]: row for row in csv.DictReader((root / "report" / "report.csv").open())}
    lora = rows["lora"]
    assert lora["n_seeds"] == "3" and lora["seed_accuracies"] == "1:0.5000 2:0.6000 3:0.5500"
    assert float(lora["accuracy"]) == pytest.approx(0.55) and float(lora["accuracy_std"]) == pytest.approx(0.05)
    assert lora["seed_flips"] == "10"  # right in all seeds: 4-19; in some: 0-3 and 20-25
    assert lora["paired_test"] == "sign-flip" and float(lora["p_value"]) < 0.001
    assert float(lora["ci_low"]) < 0.5 < 0.6 < float(lora["ci_high"])  # wider than any seed's own spread
    assert "seed 4: failed" in lora["error"] and lora["status"] == "finished"
    assert rows["untuned"]["seed_flips"] == "0"
    markdown = (root / "report" / "report.md").read_text()
    assert "3 seeds: 0.500 / 0.600 / 0.550 · 10 questions flip" in markdown


def test_one_seed_keeps_the_exact_mcnemar_test(tmp_path: Path):
    root = build_sweep(tmp_path / "sweep")
    main([str(root), "--wandb-mode", "disabled", "--n-boot", "200"])
    rows = list(csv.DictReader((root / "report" / "report.csv").open()))
    assert {row["paired_test"] for row in rows if row["p_value"]} == {"mcnemar"}
    assert {row["n_seeds"] for row in rows if row["status"] == "finished"} == {"1"}


def test_cells_show_official_caveats_normalisations_rotations_and_the_exam_verdict(tmp_path: Path):
    run_dir = make_run(tmp_path / "r", _config("tiny_gptneox", "lora", "none"), base=_correct(12), tuned=_correct(30))
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    results |= {
        "eval/demo/official_accuracy": 0.7,
        "eval/demo/n_unparsed": 3.0,
        "eval/demo/n_excluded": 2.0,
        "eval/demo/accuracy_norm_chars": 0.71,
        "eval/demo/accuracy_bytes": 0.72,
        "eval/demo/accuracy_norm_tokens": 0.73,
        "eval/demo/consistent_accuracy": 0.5,
        "eval/demo/year/2025/required_points": 170.0,
        "eval/demo/year/2025/required_total": 200.0,
        "eval/demo/year/2025/required_pass": 1.0,
        "eval/demo/year/2025/general_points": 200.0,
        "eval/demo/year/2025/general_total": 300.0,
        "eval/demo/year/2025/general_pass": 0.0,
        "eval/demo/year/2025/passed": 0.0,
    }
    (run_dir / RESULTS_FILE).write_text(json.dumps(results))
    cell = build_cell([read_run_dir(run_dir)], n_boot=200)
    text = render_cell(cell)
    assert "official 0.700 (3 unparsed, 2 excluded)" in text
    assert "/char 0.710 · /byte 0.720 · /token 0.730" in text and "consistent over rotations 0.500" in text
    assert cell.exam == "2025: required 170/200 pass · general 200/300 fail → FAIL" and cell.exam in text
    row = cell.as_row()
    assert row["n_unparsed"] == 3.0 and row["accuracy_bytes"] == 0.72 and row["exam"] == cell.exam


@pytest.fixture
def chromium() -> str:
    """Debian's chromium; CI installs it (.ci/run), so there a missing browser fails instead of skipping."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but chromium is not installed: .ci/run must apt-get install chromium")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", "--hide-scrollbars"]
    proc = subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.subprocess  # starts a program of its own
def test_report_html_renders_in_a_real_browser_from_disk(report_dir: Path, chromium: str, tmp_path: Path):
    page = (report_dir / "report.html").as_uri()  # file://, no server
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", page).stdout
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", dom)
    assert header and re.findall(r"<th>(.*?)</th>", header[1]) == [
        "base model",
        "untuned",
        "lora · 5 steps",
        "qlora · 5 steps",
    ]
    assert '<td class="failed">' in dom and "OutOfMemoryError: CUDA out of memory | tried" in dom
    assert "p = 7.63e-06 (+18 / −0)" in dom and "1_gx_lora_old" in dom and "6_pretrain" in dom
    assert dom.count('src="data:image/png;base64,') == 2  # both plots inline
    shot = tmp_path / "page.png"
    _chromium(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,2600", page)
    pixels = imread(shot)[..., :3]
    bar_blue = np.all(np.abs(pixels - np.array([31, 119, 180]) / 255) < 0.03, axis=-1)  # matplotlib's first colour
    assert bar_blue.sum() > 2000  # the plot images were decoded and drawn, not just referenced


def _evaluation_dir(path: Path, status: str, correct: list[bool] | None = None, error: str = "") -> Path:
    """The files evaluate.py backend=openai writes: its composed config, status, metrics and predictions."""
    (path / ".hydra").mkdir(parents=True)
    config = {"backend": "openai", "openai": {"model": "gpt-4o"}, "eval": {"suite": "demo"}, "run_dir": None}
    (path / HYDRA_CONFIG).write_text(yaml.safe_dump(config))
    (path / STATUS_FILE).write_text(json.dumps({"status": status} | ({"error": error} if error else {})))
    if correct is not None:
        _write_predictions(path / "predictions.jsonl", correct)
        (path / "metrics.json").write_text(json.dumps({"accuracy": sum(correct) / len(correct), "n_failed": 0}))
    else:
        (path / "metrics.json").write_text(json.dumps({"status": "failed", "n_questions": N, "n_failed": 3}))
    return path


def test_an_api_evaluation_is_a_row_and_a_failed_one_is_never_a_score(tmp_path: Path):
    root = build_sweep(tmp_path / "sweep")
    _evaluation_dir(root / "eval_gpt4o", "finished", _correct(31))
    failed = _evaluation_dir(tmp_path / "eval_down", "failed", error="ApiFailed: 3 of 40 questions failed")
    main([str(root), str(failed), "--wandb-mode", "disabled", "--n-boot", "200"])
    rows = list(csv.DictReader((root / "report" / "report.csv").open()))
    (api,) = [r for r in rows if r["base_model"] == "api:gpt-4o"]  # only its api column; the failed rerun is older
    assert api["status"] == "finished" and api["tuning"] == "api" and float(api["accuracy"]) == pytest.approx(31 / N)
    assert not [r for r in rows if r["tuning"] == "api" and r["base_model"] != "api:gpt-4o"]
    assert "| **—** |" in (root / "report" / "report.md").read_text()  # not applicable, not "missing"
    main([str(failed), "--out", str(tmp_path / "only_failed"), "--wandb-mode", "disabled"])
    (row,) = csv.DictReader((tmp_path / "only_failed" / "report.csv").open())
    assert row["status"] == "failed" and row["accuracy"] == "" and "3 of 40 questions failed" in row["error"]


def test_base_and_tuned_scored_on_different_questions_of_the_same_count_do_not_pair(tmp_path: Path):
    run_dir = make_run(tmp_path / "r", _config("m", "lora", "none"), base=_correct(5), tuned=_correct(6))
    tuned = run_dir / PREDICTIONS["tuned"]
    tuned.write_text(tuned.read_text().replace('"q000"', '"x000"'))
    with pytest.raises(DataError, match=r"do not pair up.*1 only before, e\.g\. \['q000'\]"):
        build_cell([read_run_dir(run_dir)])


def test_a_single_runs_report_shows_its_base_scoring_as_the_untuned_column(tmp_path: Path):
    run = make_run(tmp_path / "run", _config("m", "lora", "none"), base=_correct(8), tuned=_correct(30))
    results = json.loads((run / RESULTS_FILE).read_text())
    (run / RESULTS_FILE).write_text(json.dumps(results | {"eval/demo/base_exact_match": 0.05}))
    main([str(run), "--wandb-mode", "disabled", "--n-boot", "200"])
    with (run / "report" / "report.csv").open(newline="") as handle:
        rows = {r["tuning"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"untuned", "lora"}
    assert float(rows["untuned"]["accuracy"]) == pytest.approx(8 / N)
    assert float(rows["untuned"]["exact_match"]) == pytest.approx(0.05)
    assert rows["untuned"]["status"] == "finished" and rows["untuned"]["source"].endswith("(eval/base)")
    assert int(rows["lora"]["gains"]) > 0  # the tuned cell keeps its paired test against that same base


def test_an_untuned_run_is_not_doubled_by_a_tuned_runs_base_scoring(report_dir: Path):
    rows = _csv_rows(report_dir)
    assert rows["tiny_gptneox", "untuned"]["source"].endswith("0_gx_untuned")
