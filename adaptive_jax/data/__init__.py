"""Click-log data for CTR models: the Criteo format, read and generated.

- `criteo`: `CriteoReader` streams `Batch`es (labels, dense integers with
  their missing masks, categorical strings with "" for missing) from Criteo
  text or gzip files, a chunk at a time, skipping malformed lines with a
  warning; `log_transform` for the integers.
- `synthetic`: `generate` writes a train and a test file of Criteo-format
  logs from a hidden click model with a known Bayes AUC and ids that appear
  late in the stream; `ensure_dataset` makes the default set on first use and
  reuses it.

Example:

  >>> import tempfile
  >>> files = ensure_dataset(tempfile.mkdtemp(), num_train=500, num_test=100)
  >>> reader = CriteoReader(files.train, batch_size=128, drop_remainder=True)
  >>> batches = list(reader)
  >>> [batch.size for batch in batches], reader.examples
  ([128, 128, 128], 384)
  >>> batches[0].dense.shape, batches[0].categorical["C3"].shape
  ((128, 13), (128, 1))
  >>> files.metadata()["test"]["examples"], files.ground_truth("test").late_ids.shape
  (100, (100,))
"""

from adaptive_jax.data._batch import pad as pad_batch
from adaptive_jax.data.criteo import CATEGORICAL_COLUMNS as CATEGORICAL_COLUMNS
from adaptive_jax.data.criteo import INTEGER_COLUMNS as INTEGER_COLUMNS
from adaptive_jax.data.criteo import Batch as Batch
from adaptive_jax.data.criteo import CriteoReader as CriteoReader
from adaptive_jax.data.criteo import MalformedLineWarning as MalformedLineWarning
from adaptive_jax.data.criteo import UnusualValueWarning as UnusualValueWarning
from adaptive_jax.data.criteo import data_files as data_files
from adaptive_jax.data.criteo import log_transform as log_transform
from adaptive_jax.data.synthetic import DatasetFiles as DatasetFiles
from adaptive_jax.data.synthetic import GroundTruth as GroundTruth
from adaptive_jax.data.synthetic import SyntheticSpec as SyntheticSpec
from adaptive_jax.data.synthetic import default_directory as default_directory
from adaptive_jax.data.synthetic import ensure_dataset as ensure_dataset
from adaptive_jax.data.synthetic import generate as generate
from adaptive_jax.data.synthetic import late_id_values as late_id_values

__all__ = (
    "CATEGORICAL_COLUMNS",
    "INTEGER_COLUMNS",
    "Batch",
    "CriteoReader",
    "DatasetFiles",
    "GroundTruth",
    "MalformedLineWarning",
    "SyntheticSpec",
    "UnusualValueWarning",
    "data_files",
    "default_directory",
    "ensure_dataset",
    "generate",
    "late_id_values",
    "log_transform",
    "pad_batch",
)
