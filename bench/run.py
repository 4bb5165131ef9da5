#!/usr/bin/env python3
"""Run every benchmark in bench/ and print their JSON reports (``python3 dev.py bench``).

Each benchmark is a script ``bench/<name>.py`` that prints one JSON object; this runs them
one after the other with the same interpreter and prints ``{"<name>": report, ...}``.
Arguments after the names are passed to every benchmark, e.g.
``python bench/run.py --dialect sqlite --duration 10``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("ingest", "identity", "matching", "crm", "reports", "forms", "leads")


def main(argv: list[str]) -> int:
    reports: dict[str, object] = {}
    status = 0
    for name in BENCHMARKS:
        print(f"running bench/{name}.py ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py"), *argv],
            capture_output=True,
            text=True,
            check=False,
        )
        sys.stderr.write(done.stderr)
        try:
            reports[name] = json.loads(done.stdout)
        except json.JSONDecodeError:
            reports[name] = {
                "error": f"exit status {done.returncode}",
                "output": done.stdout[-2000:],
            }
        status = status or done.returncode
    print(json.dumps(reports, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
