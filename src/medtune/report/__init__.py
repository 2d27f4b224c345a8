"""The comparison report: every run of a sweep as the study's matrix, with uncertainty and a paired test.

    python -m medtune.report multirun/2026-01-01/12-00-00-000000          # → that dir's report/
    python -m medtune.report outputs/run_a outputs/run_b --out /tmp/report --wandb-mode disabled
    python -m medtune.report --wandb-project me/medtune --wandb-sweep abc123 --out report/   # online only

Rows are base models, columns tuning method × training steps; each cell holds accuracy with a 95 %
bootstrap CI over questions, exact match, gestalt, peak memory, train time, tokens/s, and the exact
McNemar p-value of the tuned model against the same run's base model before tuning (its
eval/base predictions, so the questions are the same by construction). A cell whose run failed,
is still running (or was killed), or never ran while its combination exists in another row is
shown as such. Output: report.md, report.html (self-contained: opens from disk), report.csv, PNG plots
(learning curves from each run dir's metrics.jsonl), and (offline by default) a W&B run of job_type "report"
holding the table and plots, which uses the results artifact of every run it read.

One module per job, in the order the data flows (this file imports none of them, so reading a run dir's records
does not load matplotlib):
    records       run dirs (train.py, evaluate.py) read into RunRecords; status and per-question correctness
    wandb_source  a W&B project's or sweep's runs read into RunRecords (online)
    cells         one cell from its runs (seeds): figures, CIs, the paired test, exam verdict; its CSV row
    matrix        runs chosen per cell, the per-suite matrices in study order, the Report
    tables        report.md (matrix, legend, problem lists) and report.csv; the cell text the page shares
    html          report.html, self-contained
    plots         accuracy, memory vs accuracy, learning curves (PNG)
    search        a search's section per study: best trial, history, importances, Pareto front, pruned trials
    write         every file of the report into one dir
    wandb_log     the report as a W&B run (job_type "report")
    command       the command line (`python -m medtune.report`, `medtune report`)
"""
