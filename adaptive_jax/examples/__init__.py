"""Examples that ship with the package, runnable as modules.

- `ctr`: a DeepFM click model over the 26 categorical columns of Criteo-format
  logs, with four kinds of embedding columns compared on the same data
  (`python -m adaptive_jax.examples.ctr --help`).
"""
