"""The CTR example: DeepFM on Criteo-format logs, four kinds of embedding columns.

Run `python -m adaptive_jax.examples.ctr` (`make demo` does): it trains the same
DeepFM click model for one pass over the same data with each variant of
embedding columns (`variants`: plain hash buckets, a plain dynamic table with a
row per id, that table behind DeepRec's `CounterFilter`, and adaptive columns
with admission and eviction), scores the serving export of each on the test
split, and reports AUC, log loss, bytes and speed (`report`). The modules:

- `model`: the DeepFM module (flax.linen) and its loss;
- `scan`: one pass over a split: ids, counts, late ids, the data's defects;
- `variants`: the columns of each variant, sized from that pass;
- `choice`: which of adaptive's fields keep their buckets, chosen on the end
  of the training split held out (by default; `--rare-zero`);
- `train`: the jitted step, one pass of training, evaluation from the export;
- `report`: the table, the JSON and the plot;
- `cli`: the command line's options; `run`: `main(argv)`.
"""

from adaptive_jax.examples.ctr.run import main as main

__all__ = ("main",)
