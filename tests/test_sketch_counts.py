"""What a forgetting admission sketch will count (`_sketch_counts`), and the
sizing that reads it: rows sized from a budget fill in training when the
sketch is smaller than the pass's distinct ids."""

import functools

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_jax import feature_column as fc
from adaptive_jax import optim
from adaptive_jax.feature_column import _sketch_counts

features = st.lists(
    st.lists(st.one_of(st.integers(1, 3), st.integers(1, 300)), max_size=200),
    min_size=1,
    max_size=3,
)


@settings(max_examples=40, deadline=None)
@given(features=features, halve_at=st.floats(1.0, 400.0))
def test_each_id_reaches_at_least_one_and_at_most_its_pass_count(features, halve_at):
    counts = [np.asarray(f, np.int64) for f in features]

    peaks = _sketch_counts.peak_counts(counts, halve_at)

    for count, peak in zip(counts, peaks, strict=True):
        assert peak.shape == count.shape
        assert np.all(peak == np.sort(peak))
        # An id's peak is at most its count in the pass, so sorted peaks sit
        # below the sorted counts one by one; its first occurrence counts 1.
        assert np.all(peak <= np.sort(count)) and np.all(peak >= 1)


def test_a_sketch_for_every_id_reaches_the_pass_counts():
    counts = [np.array([5, 1, 9, 2]), np.array([3, 3])]

    peaks = _sketch_counts.peak_counts(counts, halve_at=6)

    assert [p.tolist() for p in peaks] == [[1, 2, 5, 9], [3, 3]]


def test_a_small_sketch_forgets_the_ids_spread_over_the_pass():
    # 200 ids seen 20 times and 20,000 seen once, in a sketch that halves at
    # 2,000 ids held: each halving comes after ~1/10 of the pass, so a
    # 20-times id holds ~2 occurrences from its window and ~2 from before.
    counts = [np.concatenate([np.full(200, 20), np.ones(20_000, np.int64)])]

    (peaks,) = _sketch_counts.peak_counts(counts, halve_at=2_000)

    assert np.sum(peaks >= 20) == 0  # no id holds its whole pass at once
    assert 150 <= np.sum(peaks >= 3) <= 200  # the frequent ids still stand out
    assert np.sum(peaks >= 2) < 1_000  # the ids seen once never reach 2


def test_a_sample_of_a_long_pass_stands_for_its_ids(monkeypatch):
    counts = [np.concatenate([np.full(300, 40), np.ones(6_000, np.int64)])]
    whole = _sketch_counts.peak_counts(counts, halve_at=1_500)[0]
    monkeypatch.setattr(_sketch_counts, "MAX_EVENTS", 9_000)  # half the pass

    sampled = _sketch_counts.peak_counts(counts, halve_at=1_500)[0]

    assert sampled.size == whole.size
    for t in (2, 8, 16):  # as many ids reach each count, within the sample's noise
        assert abs(np.sum(sampled >= t) - np.sum(whole >= t)) <= 60


def _zipf_stream(distinct: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, distinct + 1) ** 1.05
    return rng.choice(distinct, size=length, p=weights / weights.sum()).astype(np.int64)


def test_the_rows_sized_from_a_budget_fill_in_training():
    # Arrange: a long tail of 60K ids seen 200K times, a budget whose sketch
    # holds a fraction of them, so it forgets as it counts.
    stream = _zipf_stream(60_000, 200_000, seed=0)
    _, counts = np.unique(stream, return_counts=True)
    opt = optim.ftrl(0.05)
    sized = fc.size_columns(
        {"site": counts}, 4, opt, 250_000, kind="filtered", dtype="int64"
    )
    size = sized.sizes["site"]
    assert "sketch is sized for" in sized.reason  # it forgets
    # Read off the pass's counts, this threshold would want more rows than
    # there are: the sketch's counts reach it for far fewer ids.
    assert np.sum(counts >= size.filter_freq) > 1.5 * size.capacity
    (column,) = sized.columns
    state = fc.init_state(sized.columns, opt, jax.random.key(0))

    @functools.partial(jax.jit, donate_argnums=1)
    def admit(batch, state):
        _, state, _ = fc.input_layer(batch, [column], state, optimizer=opt)
        return state

    # Act: the pass, in batches of 2,000 ids.
    for start in range(0, stream.size, 2_000):
        ids = stream[start : start + 2_000, None]
        state = admit(fc.prepare({"site": ids}, [column]), state)

    # Assert: most of the rows hold an id by the end (as the pass's counts
    # read them, 17% did on the Criteo slice).
    load = fc.summary(state)[column.name]["load"]
    assert 0.6 <= load <= 1.0


def test_a_larger_budget_gives_more_rows_in_all_with_a_forgetting_sketch():
    # Arrange: three long-tailed features; budgets from one whose sketch holds
    # a fifth of the ids to one that holds them all, 6% apart.
    rng = np.random.default_rng(1)
    counts = {
        f"f{i}": np.unique(rng.zipf(a, 40_000), return_counts=True)[1]
        for i, a in enumerate((1.2, 1.5, 2.0))
    }
    opt = optim.ftrl(0.05)
    for stack_key in ("fields", None):
        before = None
        for budget in np.geomspace(120_000, 1_200_000, 40).astype(int):
            # Act
            sized = fc.size_columns(counts, 4, opt, int(budget), stack_key=stack_key)

            # Assert: the threshold falls or stays, the rows in all grow or stay.
            threshold = next(iter(sized.sizes.values())).filter_freq
            rows = sum(s.capacity for s in sized.sizes.values())
            if before is not None:
                assert threshold <= before[0] and rows >= before[1], budget
            before = threshold, rows
