"""Optimizers for CTR models: FTRL and Adagrad, as TensorFlow computes them.

Each comes in two forms from one formula: a dense optax transformation
(`ftrl`, `adagrad`) for the parameters of a model, and a sparse row update
(`apply_sparse` with an `Ftrl` or `Adagrad` spec) for embedding tables, whose
cost is O(ids in the batch x dim).
"""

from adaptive_jax.optim._adagrad import Adagrad as Adagrad
from adaptive_jax.optim._adagrad import AdagradSlots as AdagradSlots
from adaptive_jax.optim._adagrad import adagrad as adagrad
from adaptive_jax.optim._dense import OptimizerState as OptimizerState
from adaptive_jax.optim._dense import spec_of as spec_of
from adaptive_jax.optim._ftrl import Ftrl as Ftrl
from adaptive_jax.optim._ftrl import FtrlSlots as FtrlSlots
from adaptive_jax.optim._ftrl import ftrl as ftrl
from adaptive_jax.optim._sparse import apply_sparse as apply_sparse
from adaptive_jax.optim._sparse import apply_sparse_split as apply_sparse_split
from adaptive_jax.optim._sparse import first_occurrence as first_occurrence
from adaptive_jax.optim._sparse import set_rows as set_rows
from adaptive_jax.optim._sparse import sparse_update as sparse_update
from adaptive_jax.optim._sparse import sparse_update_split as sparse_update_split

__all__ = (
    "Adagrad",
    "AdagradSlots",
    "Ftrl",
    "FtrlSlots",
    "OptimizerState",
    "adagrad",
    "apply_sparse",
    "apply_sparse_split",
    "first_occurrence",
    "ftrl",
    "set_rows",
    "sparse_update",
    "sparse_update_split",
    "spec_of",
)
