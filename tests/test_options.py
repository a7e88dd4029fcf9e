"""Options: DeepRec's names, checked at construction, hashable."""

import pytest

import adaptive_jax as aj


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: aj.CounterFilter(0), "CounterFilter: filter_freq"),
        (lambda: aj.CBFFilter(2, 0, 0.01), "CBFFilter: max_element_size"),
        (lambda: aj.CBFFilter(2, 100, 1.5), "CBFFilter: false_positive_probability"),
        (lambda: aj.GlobalStepEvict(-1), "GlobalStepEvict: steps_to_live"),
        (lambda: aj.GlobalStepEvict(0), "GlobalStepEvict: steps_to_live"),
        (lambda: aj.L2WeightEvict(-0.5), "L2WeightEvict: l2_weight_threshold"),
        (lambda: aj.L2WeightEvict(float("nan")), "L2WeightEvict: l2_weight_threshold"),
        (lambda: aj.CBFFilter(2, 100, 0.0), "CBFFilter: false_positive_probability"),
        (lambda: aj.CounterFilter(-2), "CounterFilter: filter_freq"),
        (lambda: aj.options.PressureEvict(0.5, 0.9), "PressureEvict"),
        (lambda: aj.InitializerOption(default_value_dim=0), "InitializerOption"),
        (lambda: aj.EmbeddingVariableOption(capacity=0), "capacity"),
        (lambda: aj.EmbeddingVariableOption(l1_mode="column"), "l1_mode"),
        (lambda: aj.EmbeddingVariableOption(filter_option=3), "filter_option"),
    ],
    ids=[
        "filter_freq",
        "cbf_size",
        "cbf_probability",
        "steps_to_live",
        "steps_to_live_0",
        "l2_threshold",
        "l2_threshold_nan",
        "cbf_probability_0",
        "filter_freq_negative",
        "pressure_loads",
        "default_value_dim",
        "capacity",
        "l1_mode",
        "filter_type",
    ],
)
def test_bad_options_raise_naming_the_option_and_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_options_are_hashable_so_columns_can_be_static():
    option = aj.EmbeddingVariableOption(
        capacity=1024,
        filter_option=aj.CounterFilter(3),
        evict_option=aj.GlobalStepEvict(100),
    )
    assert hash(option) == hash(
        aj.EmbeddingVariableOption(
            capacity=1024,
            filter_option=aj.CounterFilter(3),
            evict_option=aj.GlobalStepEvict(100),
        )
    )
