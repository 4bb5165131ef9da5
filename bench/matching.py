#!/usr/bin/env python3
"""Speed and accuracy of probabilistic matching (``patron.identity.matching``).

Generates labelled synthetic persons (fixed seed, 25% of records extra copies of a person,
corrupted with typos, nicknames, swapped names, email case and address changes, phone and
postcode formats, moves and missing fields), then times

- ``find_duplicates`` on 10,000 and on 100,000 records, and
- ``match_new`` of 1,000 new records against 100,000 existing ones (the new records are
  drawn from the same population, so some are duplicates of existing persons),

and scores each against the known truth at the default threshold: pairwise precision,
recall and F1. Prints one JSON object, including the machine it ran on. No network.
Extra arguments (``bench/run.py`` passes its own to every benchmark) are ignored.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

from patron.identity._matching_synthetic import SyntheticPersons, generate_persons
from patron.identity.matching import CandidatePair, find_duplicates, match_new

SEED = 20261123


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    memory_gb = None
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gb": memory_gb}


def score(pairs: list[CandidatePair], truth: set[tuple[str, str]]) -> dict[str, Any]:
    found = {(p.left_id, p.right_id) for p in pairs}
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "pairs": len(found),
        "true_pairs": len(truth),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }


def bench_dedupe(n: int) -> dict[str, Any]:
    data = generate_persons(n, seed=SEED)
    started = time.perf_counter()
    pairs = find_duplicates(data.records)
    seconds = time.perf_counter() - started
    return {"records": n, "seconds": round(seconds, 2), **score(pairs, data.true_pairs())}


def bench_incremental(n_existing: int, n_new: int) -> dict[str, Any]:
    data: SyntheticPersons = generate_persons(n_existing + n_new, seed=SEED + 1)
    existing, new = data.records[:n_existing], data.records[n_existing:]
    new_ids = {r.person_id for r in new}
    truth = {pair for pair in data.true_pairs() if pair[0] in new_ids or pair[1] in new_ids}
    started = time.perf_counter()
    pairs = match_new(new, existing)
    seconds = time.perf_counter() - started
    return {
        "existing": n_existing,
        "new": n_new,
        "seconds": round(seconds, 2),
        **score(pairs, truth),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="find_duplicates sizes")
    parser.add_argument("--existing", type=int, default=100_000, help="0 skips match_new")
    parser.add_argument("--new", type=int, default=1_000)
    args, _ = parser.parse_known_args(argv)
    # Splink warns about levels it could not train; the benchmark reports numbers only.
    logging.getLogger("splink").setLevel(logging.ERROR)
    report: dict[str, Any] = {"machine": machine(), "seed": SEED}
    report["find_duplicates"] = [bench_dedupe(int(n)) for n in args.sizes.split(",")]
    if args.existing:
        report["match_new"] = bench_incremental(args.existing, args.new)
    # Peak resident memory of this process over all runs (Linux reports KiB).
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
