"""The prefetching iterator and the Grain transform: order, bounds, errors, end
of data, shutdown; and batches prepared in workers equal `prepare`'s."""

from __future__ import annotations

import importlib.util
import pathlib
import threading
import time

import grain
import jax
import numpy as np
import pytest
from absl import flags

import adaptive_jax as aj
from adaptive_jax import feature_column as fc
from adaptive_jax.pipeline import Prefetcher, PrepareBatch


def threads_named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def wait_until(condition, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# The iterator.


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_results_come_in_the_order_of_the_items_whatever_the_workers(workers):
    # Later items finish first: the order must come from the items, not from
    # the workers.
    def slow_for_small(x):
        time.sleep(0.002 * (20 - x))
        return x * 10

    with Prefetcher(range(20), slow_for_small, workers=workers, depth=4) as it:
        assert list(it) == [x * 10 for x in range(20)]


def test_no_more_than_depth_items_are_read_ahead_of_the_consumer():
    read = []

    def items():
        for i in range(100):
            read.append(i)
            yield i

    with Prefetcher(items(), lambda x: x, workers=2, depth=3) as it:
        assert next(it) == 0
        assert wait_until(lambda: len(read) == 4)  # the one taken + 3 ahead
        time.sleep(0.1)
        assert len(read) == 4  # and no more, however long we wait
        assert next(it) == 1
        assert wait_until(lambda: len(read) == 5)


def test_an_error_in_fn_is_raised_at_its_item_after_the_results_before_it():
    def fn(x):
        if x == 3:
            raise KeyError("bad batch 3")
        return x

    it = Prefetcher(range(10), fn, workers=2, depth=4)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(KeyError, match="bad batch 3"):
        next(it)
    with pytest.raises(StopIteration):  # the error ends the iteration
        next(it)
    assert wait_until(lambda: not threads_named("aj-prefetch"))


def test_an_error_reading_the_items_is_raised_in_the_consumer():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    it = Prefetcher(items(), lambda x: -x)
    assert next(it) == -1 and next(it) == -2
    with pytest.raises(OSError, match="disk gone"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_the_end_of_the_items_ends_the_iteration_and_the_threads():
    it = Prefetcher(iter([]), lambda x: x)
    assert list(it) == []
    assert list(Prefetcher([5, 6], str, workers=2)) == ["5", "6"]
    assert wait_until(lambda: not threads_named("aj-prefetch"))


def test_closing_early_stops_the_threads_and_closes_a_generator():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    with Prefetcher(endless(), lambda x: x, workers=2, depth=2) as it:
        assert next(it) == 0 and next(it) == 1
    assert closed.wait(5.0)
    assert wait_until(lambda: not threads_named("aj-prefetch"))
    with pytest.raises(StopIteration):
        next(it)
    it.close()  # twice is fine


def test_a_prefetcher_dropped_without_close_stops_its_threads():
    it = Prefetcher(iter(range(1_000_000)), lambda x: x, depth=2)
    assert next(it) == 0
    del it
    assert wait_until(lambda: not threads_named("aj-prefetch"))


@pytest.mark.parametrize(
    ("workers", "depth", "message"),
    [(0, 2, "workers must be >= 1"), (3, 2, "depth must be >= workers")],
    ids=["no_workers", "depth_below_workers"],
)
def test_bad_options_raise_naming_them(workers, depth, message):
    with pytest.raises(ValueError, match=message):
        Prefetcher([1], str, workers=workers, depth=depth)


def test_the_workers_run_beside_the_consumer():
    # Two items of 0.2 s each with two workers take about 0.2 s, not 0.4 s:
    # time.sleep, like numpy's loops, lets go of Python's lock.
    start = time.perf_counter()
    with Prefetcher(range(2), lambda x: time.sleep(0.2), workers=2) as it:
        list(it)
    assert time.perf_counter() - start < 0.35


# Prepared batches: the same as `prepare` in the consumer.


def columns():
    admit = aj.EmbeddingVariableOption(filter_option=aj.CounterFilter(2))
    members = [
        fc.categorical_column_with_adaptive_embedding(k, 7, "string", ev_option=admit)
        for k in ("site", "device")
    ]
    user = fc.categorical_column_with_adaptive_embedding(
        "user", 11, "int64", ev_option=admit
    )
    return [
        fc.embedding_column(fc.stacked_column(members, "fields"), 2),
        fc.embedding_column(user, 2),
    ]


def raw_batches(count: int, size: int = 6) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        {
            "site": np.array([f"s{v}" for v in rng.integers(0, 50, size)]),
            "device": np.array([f"d{v}" for v in rng.integers(0, 4, size)]),
            "user": rng.integers(-(2**40), 2**40, size),
            "label": rng.integers(0, 2, size).astype(np.float32),
        }
        for _ in range(count)
    ]


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_prefetched_batches_equal_prepare_in_the_loop():
    cols, batches = columns(), raw_batches(8)

    def prepare(batch):
        return fc.prepare({k: batch[k] for k in ("site", "device", "user")}, cols)

    with Prefetcher(batches, prepare, workers=2, depth=3) as it:
        for got, batch in zip(it, batches, strict=True):
            assert_same(got, prepare(batch))


@pytest.fixture
def absl_flags_parsed():
    """Grain's worker processes read absl flags, which a program run without
    `absl.app` has not parsed: parse them (defaults) for the test only."""
    parsed = flags.FLAGS.is_parsed()
    if not parsed:
        flags.FLAGS.mark_as_parsed()
    yield
    if not parsed:
        flags.FLAGS.unparse_flags()


def test_the_grain_transform_in_worker_processes_equals_prepare(absl_flags_parsed):
    # Arrange: records of one example each, batched by Grain, prepared in two
    # worker processes (spawned: they import the library and pickle the
    # columns, initializers' closures included).
    cols, batches = columns(), raw_batches(4)
    records = [
        {k: v[i] for k, v in batch.items()} for batch in batches for i in range(6)
    ]
    dataset = (
        grain.MapDataset.source(records)
        .batch(6)
        .map(PrepareBatch(cols, size=16))
        .to_iter_dataset()
        .mp_prefetch(grain.MultiprocessingOptions(num_workers=2))
    )

    # Act
    iterator = iter(dataset)
    try:
        got = list(iterator)
    finally:
        iterator.close()

    # Assert: in order, each batch's ids as `prepare` makes them, labels kept.
    assert len(got) == len(batches)
    for out, batch in zip(got, batches, strict=True):
        features = {k: batch[k] for k in ("site", "device", "user")}
        assert_same(out["ids"], fc.prepare(features, cols, size=16))
        np.testing.assert_array_equal(out["label"], batch["label"])


def test_the_grain_transform_rejects_bad_features_naming_the_column():
    batch = raw_batches(1)[0]
    batch["user"] = batch["user"].astype(np.float32)
    with pytest.raises(Exception, match="user"):
        PrepareBatch(columns()).map(batch)


# The example.


def load_example(name: str):
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_grain_example_trains_on_batches_prepared_in_the_pipeline(capsys):
    # In this process (no worker), so that the fast tests stay fast; the
    # worker processes run in the test above and in the slow one below.
    means = load_example("grain_input").main(["--workers", "0", "--steps", "40"])
    assert len(means) == 10 and means[-1] < means[0] - 0.05  # the loss falls
    assert "mean loss by tenth" in capsys.readouterr().out


@pytest.mark.slow  # two worker processes start: about a minute on 2 cores
def test_the_grain_example_trains_with_worker_processes(absl_flags_parsed):
    means = load_example("grain_input").main(["--workers", "2", "--steps", "20"])
    assert means[-1] < means[0]
