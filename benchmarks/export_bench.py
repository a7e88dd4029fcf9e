"""Size of the serving export of an adaptive column, against a plain dynamic table.

Run: `python benchmarks/export_bench.py [--quick]`.

The setting of `step_bench.py`, trained from scratch: one adaptive column, dim
16, 1M static buckets, dynamic capacity 2**21; each step a fresh batch of 65,536
ids drawn Zipf(1.1) over 10M raw ids, the ids of the 1M most frequent raw ids
routed to the dynamic table (a frequency-threshold mask), the jitted, donated
step of `step_bench.py`. At a few points of the run, `export.export` (float32,
zero rows dropped) and `export.size_report`:

- `export_size`: the export's bytes (static table + the rows that earned a key:
  keys, values, freqs, versions) against what a plain dynamic table with a row
  for every id seen so far would need in training (values, FTRL slots, key,
  index, counters; `plain_dynamic_bytes`), with the exact count of ids seen
  (`ratio`) and with the statistics' HyperLogLog estimate (`ratio_estimate`);
  also against that plain table's own export (`ratio_to_plain_export`). Target:
  `ratio` <= 0.30 at the end of the run.
- `export_size_bfloat16`: the same export in bfloat16, at the end.
- `delta_size`: deltas since the point before the end (half the run), and since
  10 steps before the end, against the full export.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from step_bench import Adaptive, zipf_ranks

from adaptive_jax import export


def sizes(ours: Adaptive, ids_seen: int, steps: int, **options) -> dict:
    start = time.perf_counter()
    exported = export.export(ours.state, [ours.column], **options)
    seconds = time.perf_counter() - start
    report = export.size_report(ours.state, exported)[ours.column.name]
    per_plain_row = report["plain_dynamic_bytes"] / report["distinct_ids"]
    plain = ids_seen * per_plain_row
    plain_export = report["plain_dynamic_export_bytes"] / report["distinct_ids"]
    return exported, {
        "steps": steps,
        "ids_seen": ids_seen,
        "distinct_ids_estimate": report["distinct_ids"],
        "exported_rows": report["exported_rows"],
        "training_mb": round(report["training_bytes"] / 1e6, 1),
        "export_mb": round(report["export_bytes"] / 1e6, 1),
        "plain_dynamic_mb": round(plain / 1e6, 1),
        "ratio": round(report["export_bytes"] / plain, 3),
        "ratio_estimate": round(
            report["export_bytes"] / report["plain_dynamic_bytes"], 3
        ),
        "ratio_to_plain_export": round(
            report["export_bytes"] / (ids_seen * plain_export), 3
        ),
        "export_s": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run")
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    steps = 250 if args.quick else args.steps
    points = {steps // 8, steps // 4, steps // 2, steps}
    delta_since = {steps // 2, steps - 10}
    rng = np.random.default_rng(0)
    raw = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, 10_000_000)
    ours = Adaptive(2**21, raw, frequent=1_000_000, batch=args.batch, fill=False)
    seen = np.zeros(raw.size, bool)
    previous, deltas = {}, []
    for step in range(1, steps + 1):
        ranks = zipf_ranks(rng, args.batch, raw.size)
        seen[ranks] = True
        ours.run((ours.features(ranks), None))
        if step in delta_since:
            previous[step] = export.export(ours.state, [ours.column])
        if step in points:
            exported, line = sizes(ours, int(seen.sum()), step)
            print(json.dumps({"name": "export_size"} | line), flush=True)
    for since, old in sorted(previous.items()):
        change = export.delta(ours.state, [ours.column], old)
        deltas.append(
            {
                "name": "delta_size",
                "since_step": since,
                "steps": steps,
                "delta_mb": round(change.nbytes / 1e6, 1),
                "export_mb": round(exported.nbytes / 1e6, 1),
                "ratio": round(change.nbytes / exported.nbytes, 3),
            }
        )
    _, line = sizes(ours, int(seen.sum()), steps, value_dtype="bfloat16")
    print(json.dumps({"name": "export_size_bfloat16"} | line), flush=True)
    for line in deltas:
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
