"""Does pruning pay? The demo search space (tiny GPT-NeoX, LoRA learning rate × r × alpha) searched with the same trial
budget by TPE + the median pruner and by random search without pruning, for several search seeds: the best value each
reaches, and the training steps each spends in total (a pruned trial counts the steps it trained).

python bench/bench_search.py                                   # 3 seeds × 8 trials × 12 steps, held-out loss
python bench/bench_search.py --seeds 0 1 2 --trials 12 --steps 24 --objective eval/demo/accuracy

The objective defaults to the held-out loss: the demo QA accuracy on a random-init tiny model moves in steps of one
question and ties between trials, which gives the pruner nothing to rank (BENCHMARKS.md "Hyper-parameter search").
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
SPACE = [
    "trainer.learning_rate=tag(log, interval(1e-5, 5e-2))",
    "adapter.r=choice(4,8,16,32)",
    "adapter.alpha=range(8,136,step=32)",
]
ARMS = {  # name → sweeper overrides
    "tpe+median": ["hydra.sweeper.sampler=tpe", "hydra.sweeper.pruner=median", "hydra.sweeper.startup_trials=2"],
    "random": ["hydra.sweeper.sampler=random", "hydra.sweeper.pruner=none"],
}


def search(arm: str, seed: int, args: argparse.Namespace, root: Path) -> tuple[float, int, float]:
    """(best value, total training steps, seconds) of one search."""
    sweep = root / f"{arm}-seed{seed}"
    eval_every = max(args.steps // 4, 1)
    figure = (
        ["trainer.eval_steps=" + str(eval_every), "eval.at_end=false"]
        if args.objective == "eval/loss"
        else [f"eval.every_steps={eval_every}", f"eval.limit={args.questions}"]
    )
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "hydra/sweeper=medtune_optuna",
        *ARMS[arm],
        f"hydra.sweeper.seed={seed}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.objective={args.objective}",
        f"hydra.sweeper.direction={'minimize' if args.objective == 'eval/loss' else 'maximize'}",
        *SPACE,
        f"trainer.max_steps={args.steps}",
        "trainer.batch_size=2",
        f"trainer.logging_steps={eval_every}",
        "trainer.save_steps=100000",
        "wandb.mode=disabled",
        *figure,
        f"hydra.sweep.dir={sweep}",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=root)
    seconds = time.perf_counter() - started
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{sweep / 'optuna.db'}")
    steps = sum(
        trial.last_step if trial.state == optuna.trial.TrialState.PRUNED else args.steps for trial in study.trials
    )
    return study.best_value, steps, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--objective", default="eval/loss", choices=["eval/loss", "eval/demo/accuracy"])
    parser.add_argument("--questions", type=int, default=16, help="eval.limit for the accuracy objective")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    figures: dict[str, list[tuple[float, int, float]]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            for arm in ARMS:
                figures[arm].append(search(arm, seed, args, Path(scratch)))
                best, steps, seconds = figures[arm][-1]
                print(
                    f"seed {seed} {arm:<10} best {args.objective} {best:.4f}  steps {steps:>4}  {seconds:.0f} s",
                    flush=True,
                )
    best = {arm: statistics.mean(f[0] for f in rows) for arm, rows in figures.items()}
    steps = {arm: sum(f[1] for f in rows) for arm, rows in figures.items()}
    print(
        f"mean best {args.objective}: tpe+median {best['tpe+median']:.4f}, random {best['random']:.4f}; "
        f"training steps: tpe+median {steps['tpe+median']}, random {steps['random']} "
        f"({steps['tpe+median'] / steps['random']:.2f}x, {1 - steps['tpe+median'] / steps['random']:.0%} fewer)"
    )


if __name__ == "__main__":
    main()
