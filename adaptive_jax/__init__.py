"""adaptive_jax: DeepRec's Adaptive Embedding in JAX."""

from adaptive_jax import adaptive as adaptive
from adaptive_jax import combiners as combiners
from adaptive_jax import ev as ev
from adaptive_jax import feature_column as feature_column
from adaptive_jax import hashing as hashing
from adaptive_jax import ids as ids
from adaptive_jax import initializers as initializers
from adaptive_jax import optim as optim
from adaptive_jax import sparse as sparse
from adaptive_jax import table as table
from adaptive_jax.ids import Ids as Ids
from adaptive_jax.options import CBFFilter as CBFFilter
from adaptive_jax.options import CounterFilter as CounterFilter
from adaptive_jax.options import EmbeddingVariableOption as EmbeddingVariableOption
from adaptive_jax.options import GlobalStepEvict as GlobalStepEvict
from adaptive_jax.options import InitializerOption as InitializerOption
from adaptive_jax.options import L2WeightEvict as L2WeightEvict
from adaptive_jax.sparse import SparseIds as SparseIds
from adaptive_jax.table import DynamicTable as DynamicTable

__version__ = "0.1.0"

__all__ = (
    "CBFFilter",
    "CounterFilter",
    "DynamicTable",
    "EmbeddingVariableOption",
    "GlobalStepEvict",
    "Ids",
    "InitializerOption",
    "L2WeightEvict",
    "SparseIds",
    "adaptive",
    "combiners",
    "ev",
    "feature_column",
    "hashing",
    "ids",
    "initializers",
    "optim",
    "sparse",
    "table",
)
