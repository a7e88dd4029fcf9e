"""Ids in: 64-bit ids in JAX, their hashes, and sparse batches of them.

The lowest layer: it imports nothing of the package but itself.

- the int64 id as two uint32 words, exact with x64 off or on (`Ids`,
  `from_numpy`, `split` (the same, on the host), `to_numpy`, `as_ids`, ...:
  this package's own names);
- `hashing`: TensorFlow's Fingerprint64 and hash buckets (`_fingerprint`, on
  the host) and a fast on-device integer hash (`_device_hash`: buckets and
  partitions);
- `sparse`: `SparseIds`, a padded batch of id lists, from dense, ragged or
  TensorFlow-sparse inputs;
- `_host_ids`: a column's ids on the host, to dynamic-table keys, static
  buckets and a routing mask (`ColumnIds`), shared by training and serving;
  `_checks`: its checks (mask values, the int32 range, raw features in jit).
"""

from adaptive_jax.ids._int64 import Ids as Ids
from adaptive_jax.ids._int64 import IdsLike as IdsLike
from adaptive_jax.ids._int64 import as_ids as as_ids
from adaptive_jax.ids._int64 import as_int64 as as_int64
from adaptive_jax.ids._int64 import equal as equal
from adaptive_jax.ids._int64 import from_numpy as from_numpy
from adaptive_jax.ids._int64 import remainder as remainder
from adaptive_jax.ids._int64 import split as split
from adaptive_jax.ids._int64 import to_numpy as to_numpy

__all__ = (
    "Ids",
    "IdsLike",
    "as_ids",
    "as_int64",
    "equal",
    "from_numpy",
    "remainder",
    "split",
    "to_numpy",
)
