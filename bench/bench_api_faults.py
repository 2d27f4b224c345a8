"""API faults as a user meets them (issue 23.3): the real `evaluate.py backend=openai` on the 104 demo questions
against loopback servers that misbehave, with the default timeout and retry settings.

1. drops: a quarter of the questions lose their connection after the reply's headers on their first try:
   the run must finish (exit 0), its last line counting the dropped connections.
2. drops_all: every connection is dropped after the headers: the run must stop (exit 2) with a line naming the
   closed connection, never "nothing answers".
3. hang: the server accepts and never answers: seconds until the progress bar names the wait (target <= 15 s),
   and until the run stops with a timeout message (the default timeout_s is 60 s, evaluation's retry budget 120 s).

python bench/bench_api_faults.py                 # about 2.5 minutes, most of it the hang's two 60 s attempts
python bench/bench_api_faults.py --skip-hang     # the two drop cases only (about 30 s)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from medtune.testing import Fault, OpenAIServer

REPO = Path(__file__).resolve().parent.parent
WAIT_MARK = b"waiting "  # the progress bar's text for a request in flight longer than openai.slow_request_s


def watched_run(server: OpenAIServer, run_dir: Path) -> dict:
    """Exit status, wall seconds (interpreter start-up and imports included), seconds from the first request's
    arrival until the bar named its wait, the error or summary line."""
    overrides = ["backend=openai", "openai.model=m", f"openai.base_url={server.base_url}", "eval.shots=0",
                 "wandb.mode=disabled", f"hydra.run.dir={run_dir}"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(REPO / "evaluate.py"), *overrides], stderr=subprocess.PIPE)
    err, first_wait = bytearray(), []

    def read() -> None:
        assert proc.stderr is not None
        while chunk := proc.stderr.read1(4096):
            err.extend(chunk)
            if not first_wait and WAIT_MARK in err:
                first_wait.append(time.monotonic())

    reader = threading.Thread(target=read)
    reader.start()
    status = proc.wait(timeout=600)
    reader.join()
    lines = err.decode("utf-8", "replace").replace("\r", "\n").splitlines()
    error = next((line for line in lines if line.startswith("medtune: error:")), None)
    summary = next((line for line in lines if line.startswith("questions: ") and " done, " in line), None)
    calls = server.calls
    return {
        "exit_status": status,
        "seconds": round(time.perf_counter() - started, 1),
        "bar_named_the_wait_after_s": round(first_wait[0] - calls[0].started, 1) if first_wait and calls else None,
        "error": error,
        "summary": summary,
        "says_nothing_answers": any("nothing answers" in line for line in lines),
    }


def quarter_dropped(request: dict, attempt: int) -> Fault | None:
    return Fault.drop() if attempt == 0 and sum(map(ord, request["messages"][-1]["content"])) % 4 == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-hang", action="store_true")
    args = parser.parse_args()
    cases = {
        "drops": lambda request, attempt: quarter_dropped(request, attempt),
        "drops_all": lambda request, attempt: Fault.drop(),
        "hang": lambda request, attempt: Fault.hang(600),
    }
    if args.skip_hang:
        del cases["hang"]
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fault_for in cases.items():
            with OpenAIServer(lambda request: "a", fault_for=fault_for) as server:
                figures[name] = watched_run(server, Path(tmp) / name)
                figures[name]["requests"] = server.request_count
    print(json.dumps(figures, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
