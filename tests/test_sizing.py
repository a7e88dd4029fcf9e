"""feature_column.size_columns: the columns it sizes fit the budget, in the
arrays `init_state` really makes and the export really writes; a larger budget
never gives a smaller table; bad input names the option."""

import re

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptive_jax import export, optim, sparse
from adaptive_jax import feature_column as fc

KINDS = ("adaptive", "filtered", "dynamic", "static")
OPTIMIZERS = {"ftrl": optim.ftrl(0.1), "adagrad": optim.adagrad(0.1)}

# Per feature, how often each distinct id occurred: a long tail of small counts
# and a few large ones, as a survey of click logs finds.
frequencies = st.dictionaries(
    st.sampled_from(["site", "app", "device", "hour"]),
    st.lists(
        st.one_of(st.integers(1, 3), st.integers(1, 40), st.integers(1, 5_000)),
        min_size=0,
        max_size=300,
    ),
    min_size=1,
    max_size=4,
)
cases = st.fixed_dictionaries(
    {
        "frequencies": frequencies,
        "dimension": st.integers(1, 8),
        "optimizer": st.sampled_from(sorted(OPTIMIZERS)),
        "kind": st.sampled_from(KINDS),
        "stack_key": st.sampled_from([None, "fields"]),
        "migration": st.sampled_from(["fitted", "deeprec"]),
        "min_filter_freq": st.integers(1, 4),
    }
)


def _sized(case: dict, budget) -> fc.Sizing:
    return fc.size_columns(
        {k: np.asarray(v, np.int64) for k, v in case["frequencies"].items()},
        case["dimension"],
        OPTIMIZERS[case["optimizer"]],
        budget,
        kind=case["kind"],
        stack_key=case["stack_key"],
        migration=case["migration"],
        min_filter_freq=case["min_filter_freq"],
    )


def _least(case: dict, name: str) -> int:
    """The least budget, as the error of a budget of 1 byte says it."""
    with pytest.raises(ValueError, match=rf"budget\['{name}'\]") as error:
        _sized(case, {name: 1})
    return int(
        re.search(r"give at least ([\d,]+)", str(error.value))[1].replace(",", "")
    )


def _real_bytes(sized: fc.Sizing, optimizer: str) -> int:
    """Bytes of the arrays `init_state` makes for the sized columns."""
    state = fc.init_state(sized.columns, OPTIMIZERS[optimizer], jax.random.key(0))
    return sum(x.nbytes for x in jax.tree.leaves(state))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases, over=st.floats(0.0, 30.0))
def test_the_state_it_sizes_fits_the_training_budget(case, over):
    # Arrange: a budget from the least these columns need to 31 times that.
    least = _least(case, "training")
    budget = int(least * (1 + over))

    # Act
    sized = _sized(case, budget)

    # Assert
    real = _real_bytes(sized, case["optimizer"])
    assert real == sized.training_bytes
    assert real <= budget
    assert _sized(case, least).training_bytes <= least  # the least one fits too


@settings(max_examples=30, deadline=None)
@given(case=cases, over=st.floats(0.0, 30.0))
def test_the_export_bound_fits_the_export_budget(case, over):
    least = _least(case, "export")
    budget = int(least * (1 + over))

    sized = _sized(case, {"export": budget})

    assert sized.export_bytes <= budget
    assert fc.export_bytes_bound(sized.columns, OPTIMIZERS[case["optimizer"]]) == (
        sized.export_bytes
    )


@settings(max_examples=60, deadline=None)
@given(
    case=cases,
    budgets=st.lists(st.floats(0.0, 40.0), min_size=2, max_size=2, unique=True),
    kind=st.sampled_from(["training", "export"]),
)
def test_a_larger_budget_never_gives_a_smaller_table(case, budgets, kind):
    least = _least(case, kind)
    small, large = (int(least * (1 + b)) for b in sorted(budgets))

    before, after = (_sized(case, {kind: b}).sizes for b in (small, large))

    for key, size in before.items():
        bigger = after[key]
        assert (bigger.capacity or 0) >= (size.capacity or 0), key
        assert (bigger.hash_bucket_size or 0) >= (size.hash_bucket_size or 0), key
        if size.filter_freq is not None:  # more rows: a threshold as low or lower
            assert bigger.filter_freq <= size.filter_freq, key


@pytest.mark.parametrize("kind", ["adaptive", "filtered", "dynamic"])
def test_a_large_table_fits_its_budget(kind):
    # A row's bytes measured from a table of one row would miss that a small
    # index is held at its least buckets: over 100K rows that is kilobytes.
    counts = {"user": np.full(300_000, 3), "hour": np.full(24, 10_000)}

    sized = fc.size_columns(counts, 16, optim.ftrl(0.1), 30_000_000, kind=kind)

    assert sum(s.capacity for s in sized.sizes.values()) > 100_000
    assert sized.training_bytes <= 30_000_000


def test_both_budgets_hold_at_once():
    counts = {"site": np.arange(1, 2_001), "device": np.array([900, 80, 3])}
    training, exported = 1_500_000, 60_000

    sized = fc.size_columns(
        counts, 8, optim.ftrl(0.1), {"training": training, "export": exported}
    )

    assert sized.training_bytes <= training and sized.export_bytes <= exported
    alone = fc.size_columns(counts, 8, optim.ftrl(0.1), training)
    assert alone.export_bytes > exported  # so the export budget is the one that binds


def test_a_filled_table_exports_exactly_the_bound():
    # Arrange: a plain dynamic column of 100 rows past its least export (its
    # default values), each row taken by an id.
    case = {"frequencies": {"item": [3] * 500}, "dimension": 4, "optimizer": "ftrl",
            "kind": "dynamic", "stack_key": None, "migration": "fitted",
            "min_filter_freq": 2}  # fmt: skip
    budget = _least(case, "export") + 100 * (8 + 4 * 4 + 4 + 4)  # key, row, counts
    sized = fc.size_columns(
        {"item": np.full(500, 3)}, 4, optim.ftrl(0.1), {"export": budget},
        kind="dynamic", dtype="int64",
    )  # fmt: skip
    (column,) = sized.columns
    rows = sized.sizes["item"].capacity
    assert rows == 101  # the least's one, and 100
    opt = optim.ftrl(0.1)
    state = fc.init_state([column], opt, jax.random.key(0))

    # Act: as many distinct ids as rows, then the export of every row.
    features = {"item": sparse.from_ragged([[i] for i in range(rows)])}
    _, state, _ = fc.input_layer(features, [column], state, optimizer=opt)
    exported = export.export(state, [column], drop_zero_rows=False)

    # Assert
    assert exported.columns[column.name].keys.size == rows
    assert exported.nbytes == sized.export_bytes <= budget


def test_two_slots_cost_more_than_one():
    # FTRL keeps an accumulator and a linear term per value, Adagrad an
    # accumulator: at the same budget Adagrad's tables are larger.
    counts = {"site": np.arange(1, 3_001)}  # a threshold for every table size
    by = {
        name: fc.size_columns(counts, 16, o, 400_000, kind="filtered")
        for name, o in OPTIMIZERS.items()
    }
    assert by["adagrad"].sizes["site"].capacity > by["ftrl"].sizes["site"].capacity
    assert "2 slot array(s)" in by["ftrl"].reason
    assert "1 slot array(s)" in by["adagrad"].reason


def test_the_threshold_is_the_lowest_whose_ids_fit_the_rows():
    # Arrange: 1,000 ids seen 10 times, 10,000 seen twice; a budget whose rows
    # hold the 1,000 (1,250 rows with headroom), not the 11,000 (13,750).
    counts = {"site": np.concatenate([np.full(10_000, 2), np.full(1_000, 10)])}

    # Act
    sized = fc.size_columns(counts, 8, optim.ftrl(0.1), 600_000, migration="deeprec")

    # Assert
    size = sized.sizes["site"]
    assert size.filter_freq == 3  # 2 would need 13,750 rows; 3 to 10, 1,250
    assert 1_250 <= size.capacity < 13_750  # the rest toward threshold 2's rows
    assert "for its 1,000 ids the sketch will count to 3" in size.reason
    assert size.hash_bucket_size == 1 and sized.training_bytes <= 600_000


def test_an_adaptive_column_keeps_one_bucket_and_leaves_unused_bytes_unspent():
    # Arrange: 300 ids seen 5 times and 300 seen once; budgets from one that
    # holds a few rows to ten times one that holds a row for each of the 300.
    counts = {"site": np.concatenate([np.ones(300, np.int64), np.full(300, 5)])}
    case = {"frequencies": counts, "dimension": 8, "optimizer": "ftrl",
            "kind": "adaptive", "stack_key": None, "migration": "fitted",
            "min_filter_freq": 2}  # fmt: skip
    least = _least(case, "training")

    sized = [_sized(case, least * k) for k in (2, 5, 50)]

    # Assert: one bucket whatever the budget; the largest budget buys the rows
    # of every id counted to 2 (375 with headroom), and no more.
    assert [s.sizes["site"].hash_bucket_size for s in sized] == [1, 1, 1]
    assert [s.sizes["site"].filter_freq for s in sized][-1] == 2
    assert sized[-1].sizes["site"].capacity == 375
    assert sized[-1].training_bytes < least * 10


@pytest.mark.parametrize("kind", ["adaptive", "filtered", "dynamic"])
def test_sized_tables_keep_64_default_values(kind):
    # DeepRec's 4,096 rows of default values would be most of a small budget.
    opt = optim.ftrl(0.1)
    sized = fc.size_columns({"site": np.arange(1, 500)}, 8, opt, 10**6, kind=kind)

    state = fc.init_state(sized.columns, opt, jax.random.key(0))

    shapes = [
        x.shape
        for path, x in jax.tree_util.tree_leaves_with_path(state)
        if "default_values" in jax.tree_util.keystr(path)
    ]
    assert shapes == [(64, 8)]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"budget": 1_000}, r"budget\['training'\] = 1,000 bytes is below the least"),
        ({"budget": -5}, r"budget\['training'\] must be an int of bytes >= 1"),
        ({"budget": {"memory": 10**7}}, r"budget\['memory'\]: an unknown budget kind"),
        ({"budget": {}}, "budget must be an int or a dict"),
        ({"budget": {"export": 1.5e6}}, r"budget\['export'\] must be an int"),
        ({"kind": "hybrid"}, "kind must be one of"),
        ({"dimension": 0}, "dimension must be an int >= 1"),
        ({"min_filter_freq": 0}, "min_filter_freq must be an int >= 1"),
        ({"headroom": 0.5}, "headroom must be >= 1"),
        ({"frequencies": {}}, "frequencies must be a non-empty dict"),
        ({"frequencies": {"site": [3, -1]}}, r"frequencies\['site'\] must hold int"),
        ({"frequencies": {"site": [[3]]}}, r"frequencies\['site'\] must be a 1-D"),
    ],
    ids=[
        "too_small",
        "negative",
        "unknown_kind_of_budget",
        "no_budget",
        "float_budget",
        "unknown_column_kind",
        "dimension",
        "min_filter_freq",
        "headroom",
        "no_features",
        "negative_count",
        "counts_not_1d",
    ],
)
def test_bad_input_raises_naming_the_option(change, match):
    arguments = {
        "frequencies": {"site": np.array([5, 3, 1])},
        "dimension": 8,
        "optimizer": optim.ftrl(0.1),
        "budget": 10**7,
    }
    arguments.update(change)
    with pytest.raises(ValueError, match=match):
        fc.size_columns(**arguments)
