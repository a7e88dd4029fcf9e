"""adaptive_jax: DeepRec's Adaptive Embedding in JAX."""

from adaptive_jax import hashing as hashing
from adaptive_jax import ids as ids
from adaptive_jax import optim as optim
from adaptive_jax import sparse as sparse
from adaptive_jax import table as table
from adaptive_jax.ids import Ids as Ids
from adaptive_jax.sparse import SparseIds as SparseIds
from adaptive_jax.table import DynamicTable as DynamicTable

__version__ = "0.1.0"

__all__ = (
    "DynamicTable",
    "Ids",
    "SparseIds",
    "hashing",
    "ids",
    "optim",
    "sparse",
    "table",
)
