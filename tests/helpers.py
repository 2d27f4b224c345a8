"""What tests share besides fixtures: the repo's paths, composing the real config, running and killing the scripts.

Fixtures live in conftest.py; test files import these plain functions (`from helpers import run_script`).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def compose(name: str, *overrides: str, cache_dir: Path | None = None) -> DictConfig:
    """Compose a primary config (train | evaluate | generate_data) in-process, as its script would (Hydra's compose
    API); tests reach it through the `compose_config` fixture, which passes the session's cache_dir."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from medtune.config import register_configs
    from medtune.datagen.config import register_configs as register_generate
    from medtune.evaluation.config import register_configs as register_evaluate

    for register in (register_configs, register_evaluate, register_generate):
        register()
    cache = [f"cache_dir={cache_dir}"] if cache_dir is not None and name != "generate_data" else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name=name, overrides=[*cache, *overrides])


def train_job(cfg: DictConfig, run_dir: Path) -> dict | None:
    """train.py's job in-process, through the same `run_job` wrapper: a user error exits 2 with one line."""
    from medtune.cli import run_job
    from medtune.training import run

    return run_job(lambda: run(cfg, run_dir))


def small_generate(corpus: Path, base_url: str) -> list[str]:
    """generate_data overrides of a test: `corpus` in 3-line chunks, the suite's local server, quick retries."""
    return [
        f"source.paths=[{corpus}]",
        "chunking.lines_per_chunk=3",
        "generator=local",
        "generator.model=test-model",
        f"generator.base_url={base_url}",
        "generator.retry.backoff_initial_s=0.01",
        "decontamination.eval_sets=[]",
        "progress=false",
    ]


def script_env() -> dict[str, str]:
    """Environment for subprocess runs of the entry scripts (inherits the offline settings of conftest.py).

    Without WANDB_SERVICE, as in a user's shell: the suite's own in-process W&B runs set it, and a script attached to
    that shared service and then killed would hold its run id there for the rest of the session (resume fails)."""
    return {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}


def run_script(script: str, *overrides: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run an entry script from a temp cwd (so nothing lands in the repo) and capture its output."""
    return _run([str(REPO / script), *overrides], cwd, timeout)


def run_module(module: str, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m module args...` from a temp cwd, with the test environment."""
    return _run(["-m", module, *args], cwd, timeout)


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=script_env(), capture_output=True, text=True, timeout=timeout
    )


def kill_script_when(script: str, *overrides: str, cwd: Path, ready: Callable[[], bool], timeout: float = 300) -> None:
    """Start an entry script, wait until `ready()` holds, then SIGKILL it: a crash at that very point."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / script), *overrides],
        cwd=cwd,
        env=script_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def kill() -> None:
        proc.kill()  # SIGKILL: no handler, no cleanup, as when a node dies
        proc.wait()

    _kill_when(script, lambda: proc.poll() is None, kill, ready, timeout)


def _kill_when(
    script: str, alive: Callable[[], bool], kill: Callable[[], None], ready: Callable[[], bool], timeout: float
) -> None:
    """Poll `ready()` while the script is `alive()` and within `timeout`, then `kill()` it, whatever happened."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert alive(), f"{script} ended before it could be killed"
            assert time.monotonic() < deadline, f"{script} did not get there within {timeout} s"
            time.sleep(0.02)
    finally:
        kill()


_HOLD_RUN_DIR = """
import sys, time
from pathlib import Path
from medtune.run_dir import claimed
with claimed(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(120)
"""


@contextmanager
def another_process_holding(run_dir: Path) -> Iterator[None]:
    """A second live medtune process holding `run_dir` (its lock), killed at the end: its lock goes with it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_RUN_DIR, str(run_dir)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield
    finally:
        holder.kill()
        holder.wait()


def run_script_reporting_torch(script: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    """An entry script in one interpreter that prints `torch imported: True|False` on exit: a check that fails before
    the heavy imports shows the user its one line in seconds, not after torch's ~10 s."""
    path = str(REPO / script)
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules))\n"
        f"sys.argv = {[path, *overrides]!r}\n"
        f"runpy.run_path({path!r}, run_name='__main__')\n"
    )
    return _run(["-c", code], cwd, timeout=300)


# What a train.py / evaluate.py process imports before its first step (~10 s of CPU on this machine), imported once
# by the fork server so that every forked script starts with it; W&B's launch-inputs module is what `wandb.init`
# itself imports (~1.5 s).
FORK_PRELOAD = (
    "medtune.commands.train",  # first: its quiet_known_warnings() precedes the bitsandbytes import, as in train.py
    "medtune.commands.evaluate",
    "medtune.training",
    "medtune.evaluation.pipeline",
    "medtune.tiny",
    "wandb.sdk.launch.inputs.internal",
)


def fork_script(script: str, *overrides: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python <script> <overrides>` from `cwd` as a child of a fork server: a clean interpreter that imported only
    FORK_PRELOAD (no pytest, no test's W&B run, no threads), so the script runs as __main__ with its own argv, cwd,
    environment (script_env), stdout, stderr and exit status, without paying those imports again. What only a fresh
    interpreter shows (a signal's handling, import-time warnings, the README's commands) uses run_script."""
    import tempfile

    with tempfile.TemporaryDirectory() as streams:
        out, err = Path(streams) / "stdout", Path(streams) / "stderr"
        child = _fork(script, overrides, cwd, out, err)
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired([str(REPO / script), *overrides], timeout)
        stdout, stderr = (path.read_text(encoding="utf-8", errors="replace") for path in (out, err))
    argv = [sys.executable, str(REPO / script), *overrides]
    return subprocess.CompletedProcess(argv, child.exitcode, stdout, stderr)


def kill_forked_script_when(
    script: str, *overrides: str, cwd: Path, ready: Callable[[], bool], timeout: float = 300
) -> None:
    """kill_script_when for a forked script (fork_script): SIGKILL once `ready()` holds, a crash at that very point."""
    child = _fork(script, overrides, cwd, Path(os.devnull), Path(os.devnull))

    def kill() -> None:
        child.kill()  # SIGKILL: no handler, no cleanup, as when a node dies
        child.join()

    _kill_when(script, child.is_alive, kill, ready, timeout)


def _fork(script: str, overrides: tuple[str, ...], cwd: Path, out: Path, err: Path) -> multiprocessing.Process:
    """Start `script` with `overrides` in a child of the fork server (stdout to `out`, stderr to `err`)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(FORK_PRELOAD))  # read when this process first starts its server
    child = context.Process(target=_forked_main, args=(REPO / script, list(overrides), cwd, script_env(), out, err))
    child.start()
    return child


def _forked_main(script: Path, overrides: list[str], cwd: Path, env: dict[str, str], out: Path, err: Path) -> None:
    """The forked child's life: the script as __main__, then the atexit handlers it registered (W&B's teardown), then
    the exit status the interpreter would give, without multiprocessing's own exit handling. The server's handlers
    are dropped first: what its imports made (e.g. W&B's media temp dir) is the server's, and stays for the next."""
    import atexit
    import runpy
    import traceback

    code = 1
    try:
        atexit._clear()
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            os.dup2(stdout.fileno(), 1)
            os.dup2(stderr.fileno(), 2)
        sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115 (lives until _exit)
        sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [str(script), *overrides]
        try:
            runpy.run_path(str(script), run_name="__main__")
            code = 0
        except SystemExit as stop:
            code = _exit_status(stop.code)
        except BaseException:
            traceback.print_exc()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


def _exit_status(code: object) -> int:
    """SystemExit's code as the interpreter turns it into an exit status (None: 0; a message: printed, 1)."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def compose_many(name: str, command_lines: list[list[str]], cache_dir: Path | None = None) -> list[DictConfig]:
    """compose() of many command lines under one Hydra initialisation and one schema registration (compose() pays
    both per call: a third of the time of composing a 27-line sweep file)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    compose(name, *command_lines[0], cache_dir=cache_dir)  # registers the schemas
    cache = [f"cache_dir={cache_dir}"] if cache_dir is not None and name != "generate_data" else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return [hydra_compose(config_name=name, overrides=[*cache, *line]) for line in command_lines]
