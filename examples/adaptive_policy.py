"""An adaptive column with no mask at all: the library counts, admits, evicts.

Run: `python examples/adaptive_policy.py` (`make demo` runs it too).

A logistic-regression model over one adaptive column reads a stream of ids whose
popularity drifts: every 40 steps the popular ids change. Nobody computes a
mask. New ids live in their static buckets; an id seen 3 times
(`CounterFilter(3)`, counted in a fixed-size sketch) gets a private row, copied
from its bucket; rows unused for 30 steps are evicted every 10 steps
(`GlobalStepEvict(30)`), and when the table is over 85% full the stalest rows go
first (`PressureEvict`). The statistics, read from counters in the state, show
it happening.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import adaptive_jax as aj
from adaptive_jax import feature_column as fc

NUM_IDS = 200_000
BATCH = 4096
STEPS = 160
DRIFT_EVERY = 40


def main() -> None:
    option = aj.EmbeddingVariableOption(
        capacity=3072,
        filter_option=aj.CounterFilter(3),
        evict_option=(aj.GlobalStepEvict(30), aj.options.PressureEvict(0.85, 0.7)),
    )
    column = fc.embedding_column(
        fc.categorical_column_with_adaptive_embedding(
            "item", hash_bucket_size=1024, dtype="int64", ev_option=option
        ),
        dimension=8,
        combiner="mean",
    )
    optimizer = aj.optim.ftrl(0.05, l1_regularization_strength=0.01)
    state = fc.init_state([column], optimizer, jax.random.key(0))
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0.0, 1.5, NUM_IDS)  # each id's hidden click-through rate

    @jax.jit
    def train_step(state, features, labels):
        emb, state, residuals = fc.input_layer(
            features, [column], state, optimizer=optimizer
        )

        def log_loss(emb):
            logits = jnp.sum(emb, axis=1)
            return jnp.mean(jnp.logaddexp(0.0, logits) - labels * logits)

        loss, d_emb = jax.value_and_grad(log_loss)(emb)
        state = fc.apply_gradients(state, residuals, d_emb, [column], optimizer)
        return fc.maybe_evict(state, [column], optimizer, every=10), loss

    print(
        " step  loss   live  load  promoted  refused  evicted(steps,pressure)  "
        "served(static,dynamic)  mean age"
    )
    for step in range(1, STEPS + 1):
        shift = (step // DRIFT_EVERY) * 5000  # the popular ids move on
        items = (rng.zipf(1.15, BATCH) + shift) % NUM_IDS
        clicks = rng.random(BATCH) < 1 / (1 + np.exp(-true_logit[items]))
        features = fc.prepare({"item": items[:, None]}, [column])
        state, loss = train_step(state, features, jnp.asarray(clicks, jnp.float32))
        if step % 20 == 0:
            s = fc.summary(state)["item_embedding"]
            print(
                f"{step:5d} {float(loss):5.3f} {s['live_rows']:6d} {s['load']:5.2f}"
                f" {s['promotions']:9d} {s['refused_admissions']:8d}"
                f"   {s['evicted_steps']:7d},{s['evicted_pressure']:<7d}"
                f"          {s['served_static_last']:5d},{s['served_dynamic_last']:<5d}"
                f"          {s['mean_age_at_eviction']:5.1f}"
            )
    print(
        "\nIds are promoted once seen 3 times, and rows that the drift leaves"
        "\nbehind are evicted: the table keeps the ids that are popular now."
    )


if __name__ == "__main__":
    main()
