"""Admission that counts: precision, recall and memory of each way to count.

Run: `python benchmarks/admission_bench.py [--quick]`.

A stream of `--steps` batches of 256 ids drawn Zipf(1.1) (numpy's
`rng.zipf(1.1, 256)`, seed 0; 1,500 steps: about 146K distinct ids, 142 times
a dynamic capacity of 1,024) goes through each way of counting the ids that
have no row yet, with DeepRec's rule: an id is admitted when its count, this
step's occurrences included, reaches `filter_freq` (2 and 3). An admitted id
gets a row and is counted no more, as in a column whose table has room for
every admitted id, so that no capacity hides a filter's mistakes.

- precision: the share of admitted ids whose true count had reached
  `filter_freq` when they were admitted;
- recall: the share of ids whose true count reached `filter_freq` in the
  stream that were admitted;
- memory: the bytes of the counts' state.

The ways: the sketch before this change (`count_min_by_capacity`: a plain
count-min sketch of 3 rows of float32 counters as wide as the capacity, at
least 1,024, halved whenever it held `filter_freq / 2` counts per counter);
`CounterFilter` at its defaults, sized for the stream, and sized for a
quarter of it (it then halves, forgetting); `CBFFilter` sized for the stream;
the same sketch with plain (not conservative) updates; and exact counts of
candidate keys in a bounded table (a model in Python: 8-byte key, 1-byte
count, 4-byte last use per slot, the least recently seen candidate replaced
when full) of the memory of the sketches sized for the stream and for a
quarter of it. Then `column_capacity_1024`: an adaptive column of capacity
1,024 with `CounterFilter(filter_freq)` at its defaults, through
`fc.input_layer`, as the issue measured it: the share of its promoted ids
(those that got a row before the table filled) whose true count had reached
`filter_freq`. One JSON line each.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import platform

import jax
import jax.numpy as jnp
import numpy as np

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax import ids
from adaptive_jax.table import _sketch

CAPACITY = 1_024
BATCH = 256
CANDIDATE_BYTES = 8 + 1 + 4  # key, count, last use


def evaluate(stream: np.ndarray, filter_freq: int, admit_batch) -> dict:
    """Precision and recall of `admit_batch(keys, absent) -> admitted mask`
    over the stream, against exact counts."""
    truth, admitted, at_admission = collections.Counter(), set(), []
    for batch in stream:
        keys = batch.tolist()
        truth.update(keys)
        absent = np.array([k not in admitted for k in keys])
        for key, admit in zip(keys, admit_batch(batch, absent).tolist(), strict=True):
            if admit and key not in admitted:
                admitted.add(key)
                at_admission.append(truth[key])
    reached = {k for k, c in truth.items() if c >= filter_freq}
    return {
        "precision": round(float(np.mean(np.asarray(at_admission) >= filter_freq)), 4),
        "recall": round(len(reached & admitted) / len(reached), 4),
        "admitted": len(admitted),
        "reached_filter_freq": len(reached),
        "distinct_ids": len(truth),
    }


def library_filter(admission) -> tuple:
    """The library's sketch and rule (`table._sketch.add`, `admits`)."""
    depth, width = admission.sketch_shape(CAPACITY)
    state = [_sketch.Sketch.create(depth, width, admission.counter_dtype)]
    add = jax.jit(
        lambda s, k, m: _sketch.add(s, k, m, halve_at=admission.halve_at(width))
    )

    def admit_batch(batch, absent):
        state[0], after = add(state[0], ids.from_numpy(batch), jnp.asarray(absent))
        return np.asarray(admission.admits(after)) & absent

    return admit_batch, admission.sketch_bytes()


def plain_count_min(depth: int, width: int, halve_every: float, dtype) -> tuple:
    """A count-min sketch with plain updates (every counter of an occurrence
    +1), halved when it has held `halve_every` occurrences per row."""
    sketch = _sketch.Sketch.create(depth, width, dtype)
    top = float(jnp.iinfo(dtype).max) if jnp.issubdtype(dtype, jnp.integer) else 2**24

    @jax.jit
    def add(counts, held, keys, mask):
        at = _sketch._positions(sketch, keys) + width * jnp.arange(depth)[:, None]
        at = jnp.where(mask[None, :], at, depth * width).reshape(-1)
        flat = counts.reshape(-1).astype(jnp.float32).at[at].add(1.0, mode="drop")
        flat = jnp.minimum(flat, top)
        after = jnp.min(flat[jnp.minimum(at, depth * width - 1)].reshape(depth, -1), 0)
        held = held + jnp.sum(mask, dtype=jnp.float32)
        full = held >= halve_every
        flat = jnp.where(
            full, jnp.floor(flat * 0.5) if dtype != jnp.float32 else flat * 0.5, flat
        )
        return (
            flat.reshape(depth, width).astype(dtype),
            jnp.where(full, held * 0.5, held),
            after,
        )

    state = [sketch.counts, jnp.zeros([], jnp.float32)]

    def make(filter_freq):
        def admit_batch(batch, absent):
            counts, held, after = add(
                *state, ids.from_numpy(batch), jnp.asarray(absent)
            )
            state[:] = [counts, held]
            return (np.asarray(after) >= filter_freq) & absent

        return admit_batch

    return make, depth * width * jnp.dtype(dtype).itemsize


def exact_candidates(slots: int, filter_freq: int) -> tuple:
    """Exact counts of at most `slots` candidate keys, least recently seen out."""
    counts: collections.OrderedDict[int, int] = collections.OrderedDict()

    def admit_batch(batch, absent):
        admit = np.zeros(len(batch), bool)
        for i, (key, is_absent) in enumerate(zip(batch.tolist(), absent, strict=True)):
            if not is_absent:
                continue
            counts[key] = counts.pop(key, 0) + 1
            if counts[key] >= filter_freq:
                admit[i] = True
                del counts[key]
            elif len(counts) > slots:
                counts.popitem(last=False)
        return admit

    return admit_batch, slots * CANDIDATE_BYTES


def column_precision(stream: np.ndarray, filter_freq: int) -> dict:
    """The issue's measurement: an adaptive column of capacity 1,024."""
    option = aj.EmbeddingVariableOption(
        capacity=CAPACITY, filter_option=aj.CounterFilter(filter_freq)
    )
    categorical = fc.categorical_column_with_adaptive_embedding(
        "ids", 4_096, dtype="int64", ev_option=option
    )
    column = fc.embedding_column(categorical, 8)
    optimizer = aj.optim.ftrl(0.05)
    state = fc.init_state([column], optimizer, jax.random.key(0))
    lookup = jax.jit(
        lambda s, f: fc.input_layer(f, [column], s, optimizer=optimizer)[1],
        donate_argnums=0,
    )
    truth, promoted = collections.Counter(), []
    rows = np.zeros(0, np.int64)
    for batch in stream:
        truth.update(batch.tolist())
        features = fc.prepare({"ids": batch[:, None]}, [column], size=BATCH)
        state = lookup(state, features)
        table = state[column.name].dynamic.table
        live = int(CAPACITY - int(table.num_free))
        if live > len(rows):
            keys = ids.to_numpy(ids.Ids(table.row_keys[:, 0], table.row_keys[:, 1]))
            new = keys[len(rows) : live]  # rows are taken in order: none freed
            promoted += [truth[int(k)] for k in new]
            rows = keys[:live]
    counts = np.asarray(promoted)
    return {
        "promoted": len(promoted),
        "precision": round(float(np.mean(counts >= filter_freq)), 4),
        "promoted_seen_once": int(np.sum(counts == 1)),
        "memory_bytes": option.filter_option.sketch_bytes(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 steps")
    parser.add_argument("--steps", type=int, default=1_500)
    args = parser.parse_args()
    steps = 300 if args.quick else args.steps
    stream = np.random.default_rng(0).zipf(1.1, (steps, BATCH)).astype(np.int64)
    distinct = len(np.unique(stream))
    design = 10_000 * math.ceil(distinct / 10_000)  # the stream's, rounded up
    print(
        json.dumps(
            {
                "stream": f"Zipf(1.1), {steps} steps of {BATCH}",
                "distinct_ids": distinct,
                "times_capacity": round(distinct / CAPACITY, 1),
                "machine": platform.processor() or platform.machine(),
            }
        ),
        flush=True,
    )
    for filter_freq in (2, 3):
        old_width = max(1024, 1 << (CAPACITY - 1).bit_length())
        make_old, old_bytes = plain_count_min(
            3, old_width, old_width * filter_freq / 2, jnp.float32
        )
        stream_filter = aj.CounterFilter(filter_freq, max_element_size=design)
        plain_shape = stream_filter.sketch_shape(CAPACITY)
        make_plain, plain_bytes = plain_count_min(*plain_shape, math.inf, jnp.uint8)
        quarter = aj.CounterFilter(filter_freq, max_element_size=design // 4)
        ways = {
            "count_min_by_capacity_before": (make_old(filter_freq), old_bytes),
            "counter_filter_default": library_filter(aj.CounterFilter(filter_freq)),
            "counter_filter_sized_for_stream": library_filter(stream_filter),
            "counter_filter_sized_for_quarter": library_filter(quarter),
            "cbf_filter_sized_for_stream": library_filter(
                aj.CBFFilter(filter_freq, design, 0.005)
            ),
            "plain_update_sized_for_stream": (make_plain(filter_freq), plain_bytes),
            "exact_candidates_memory_of_stream_sketch": exact_candidates(
                stream_filter.sketch_bytes() // CANDIDATE_BYTES, filter_freq
            ),
            "exact_candidates_memory_of_quarter_sketch": exact_candidates(
                quarter.sketch_bytes() // CANDIDATE_BYTES, filter_freq
            ),
        }
        for name, (admit_batch, memory) in ways.items():
            line = {"name": name, "filter_freq": filter_freq, "memory_bytes": memory}
            line |= evaluate(stream, filter_freq, admit_batch)
            print(json.dumps(line), flush=True)
        line = {"name": "column_capacity_1024", "filter_freq": filter_freq}
        print(json.dumps(line | column_precision(stream, filter_freq)), flush=True)


if __name__ == "__main__":
    main()
