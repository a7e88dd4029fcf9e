"""Synthetic click logs in the Criteo format, with a known click model.

`generate` writes a time-ordered stream of examples, split into a train file
and the test file that follows it, in the format `criteo.CriteoReader` reads:
26 categorical features whose ids are drawn from power laws over up to
millions of values, 13 heavy-tailed integer features, and labels drawn from a
hidden logistic model,

  logit = bias + sum_f [own_f(id) + shared_f(popularity class of id)] + dense,

so that the best possible AUC (the Bayes AUC, that of the true probabilities)
is known. A fraction of the ids of large features is late: never seen before
`late_start` of the stream, seen as often as the others after it, so that the
test split has examples with ids a model has seen little or never (cold
start). The output is a pure function of the seed, the sizes and the
`SyntheticSpec`; nothing is downloaded.

A data set is a directory of four files (see `DatasetFiles`): `train.txt`,
`test.txt`, `truth.npz` (per example: the true probability and the number of
late ids) and, written last, `meta.json` (parameters and, per split, the click
rate and the Bayes AUC and log loss, over all examples and over those with
late ids).

Example:

  >>> import tempfile
  >>> files = DatasetFiles(tempfile.mkdtemp())
  >>> meta = generate(files.directory, num_train=1000, num_test=300, seed=1)
  >>> meta["late_start_index"], meta["test"]["examples"]
  (845, 300)
  >>> 0.6 < meta["test"]["bayes_auc"] < 0.9
  True
  >>> truth = files.ground_truth("test")
  >>> truth.probabilities.shape, int((truth.late_ids > 0).sum()) > 0
  ((300,), True)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Literal, NamedTuple

import numpy as np

from adaptive_jax import metrics
from adaptive_jax.data import _batch, _click_model, _encode
from adaptive_jax.data._spec import SyntheticSpec as SyntheticSpec

DEFAULT_TRAIN = 200_000
DEFAULT_TEST = 50_000
DEFAULT_SEED = 0
DATA_ENV = "ADAPTIVE_JAX_DATA"  # overrides `default_directory`
FORMAT_VERSION = 2  # bump when the same parameters give other bytes
CHUNK_EXAMPLES = 16_384  # drawn and written at once; part of the output's recipe
SPLITS = ("train", "test")
Split = Literal["train", "test"]


class GroundTruth(NamedTuple):
    """What the hidden click model knows of each example of a split.

    Attributes:
      probabilities: `[n] float32`, the true click probabilities.
      late_ids: `[n] uint8`, how many of the example's ids are late ones;
        `late_ids > 0` selects the cold-start examples.
    """

    probabilities: np.ndarray
    late_ids: np.ndarray


@dataclasses.dataclass(frozen=True)
class DatasetFiles:
    """The files of one generated data set, in `directory`.

    Attributes:
      directory: where the files are.
    """

    directory: pathlib.Path

    def __init__(self, directory: os.PathLike | str):
        object.__setattr__(self, "directory", pathlib.Path(directory))

    @property
    def train(self) -> pathlib.Path:
        """The training examples, the start of the stream."""
        return self.directory / "train.txt"

    @property
    def test(self) -> pathlib.Path:
        """The test examples, the end of the stream."""
        return self.directory / "test.txt"

    @property
    def truth(self) -> pathlib.Path:
        """`truth.npz`: each split's `GroundTruth`, as `<split>_<field>`."""
        return self.directory / "truth.npz"

    @property
    def meta(self) -> pathlib.Path:
        """`meta.json`: what `generate` returned; written last."""
        return self.directory / "meta.json"

    def metadata(self) -> dict[str, Any]:
        """The metadata that `generate` wrote."""
        return json.loads(self.meta.read_text())

    def ground_truth(self, split: Split) -> GroundTruth:
        """The true probabilities and late-id counts of a split, in file order."""
        if split not in SPLITS:
            raise ValueError(f"ground_truth: split {split!r} is not one of {SPLITS}")
        with np.load(self.truth) as truth:
            return GroundTruth(*(truth[f"{split}_{f}"] for f in GroundTruth._fields))


def generate(
    directory: os.PathLike | str,
    *,
    num_train: int = DEFAULT_TRAIN,
    num_test: int = DEFAULT_TEST,
    seed: int = DEFAULT_SEED,
    spec: SyntheticSpec = SyntheticSpec(),  # noqa: B008 (frozen, so shared safely)
) -> dict[str, Any]:
    """Writes a synthetic data set into `directory` (see `DatasetFiles`).

    Args:
      directory: where to write; made if needed; its files are overwritten.
      num_train: examples in `train.txt`, the first of the stream.
      num_test: examples in `test.txt`, the rest of the stream.
      seed: picks the click model's effects, the late ids and every draw.
      spec: the distributions and the click model's scales.

    Returns:
      The metadata, also written to `meta.json`: `format_version`, `seed`,
      `spec`, `num_train`, `num_test`, `bias` (the logit's constant, solved
      for `spec.click_rate`), `late_start_index` (the first example
      of the stream that may hold a late id), and for each of "train" and
      "test": `examples`, `bytes`, `ctr` (the labels' mean),
      `mean_probability`, `examples_with_late_ids`, `bayes_auc` and
      `bayes_log_loss` (the true probabilities' scores on the labels), and
      `bayes_auc_late_ids` (on the examples with late ids). An AUC is None
      where its examples hold only one class.

    Raises:
      ValueError: `num_train` or `num_test` < 1, or `seed` < 0.
    """
    for name, value, least in (
        ("num_train", num_train, 1),
        ("num_test", num_test, 1),
        ("seed", seed, 0),
    ):
        if value < least:
            raise ValueError(f"generate: {name}={value}, must be >= {least}")
    files = DatasetFiles(directory)
    files.directory.mkdir(parents=True, exist_ok=True)
    files.meta.unlink(missing_ok=True)  # the meta file, last, marks completion
    rng = np.random.default_rng(seed)
    bias = _click_model.solve_bias(spec, seed)
    late_start_index = round(spec.late_start * (num_train + num_test))
    stream = {"train": range(num_train), "test": range(num_train, num_train + num_test)}
    summaries, arrays = {}, {}
    for split, indices in stream.items():
        path = getattr(files, split)
        labels, truth = _write(path, rng, spec, seed, bias, indices, late_start_index)
        summaries[split] = {"bytes": path.stat().st_size, **_summary(labels, truth)}
        arrays.update({f"{split}_{k}": v for k, v in truth._asdict().items()})
    np.savez(files.truth, **arrays)
    meta = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "spec": dataclasses.asdict(spec),
        "num_train": num_train,
        "num_test": num_test,
        "bias": bias,
        "late_start_index": late_start_index,
        **summaries,
    }
    text = json.dumps(meta, indent=1)
    files.meta.write_text(text + "\n")
    return json.loads(text)  # as it reads back: lists, not tuples


def _write(
    path: pathlib.Path,
    rng: np.random.Generator,
    spec: SyntheticSpec,
    seed: int,
    bias: float,
    indices: range,
    late_start_index: int,
) -> tuple[np.ndarray, GroundTruth]:
    """Draws the examples of `indices` (positions in the stream) and writes
    them to `path`, a chunk at a time; returns their labels and truth."""
    labels = np.empty(len(indices), bool)
    probabilities = np.empty(len(indices), np.float32)
    late_ids = np.empty(len(indices), np.uint8)
    with open(path, "wb") as out:
        for start in range(0, len(indices), CHUNK_EXAMPLES):
            rows = slice(start, min(start + CHUNK_EXAMPLES, len(indices)))
            early = np.asarray(indices[rows]) < late_start_index
            text, labels[rows], probabilities[rows], late_ids[rows] = _draw(
                rng, spec, seed, bias, early
            )
            out.write(text)
    return labels, GroundTruth(probabilities, late_ids)


def _draw(
    rng: np.random.Generator,
    spec: SyntheticSpec,
    seed: int,
    bias: float,
    early: np.ndarray,
) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """A run of examples, `early` where late ids are barred: their lines, and
    their labels, true probabilities and numbers of late ids."""
    dense, dense_missing = _click_model.draw_dense(rng, spec, early.size)
    logit = bias + _click_model.dense_effects(spec, seed, dense, dense_missing)
    shape = (early.size, len(_batch.CATEGORICAL_COLUMNS))
    ids, missing = np.empty(shape, np.uint32), np.empty(shape, bool)
    late_ids = np.zeros(early.size, np.uint8)
    for feature, missing_rate in enumerate(spec.categorical_missing_rates):
        ranks = _click_model.draw_feature(rng, spec, seed, feature, early)
        missing[:, feature] = rng.random(early.size) < missing_rate
        present = ~missing[:, feature]
        effects = _click_model.id_effects(spec, seed, feature, ranks)
        logit += np.where(present, effects, 0.0)
        late_ids += present & _click_model.is_late(spec, seed, feature, ranks)
        ids[:, feature] = _click_model.category_ids(feature, ranks)
    probabilities = 1.0 / (1.0 + np.exp(-logit))
    labels = rng.random(early.size) < probabilities
    text = _encode.lines(
        [
            _encode.labels(labels),
            _encode.integers(dense, dense_missing),
            _encode.hex_ids(ids, missing),
        ]
    )
    return text, labels, probabilities.astype(np.float32), late_ids


def _summary(labels: np.ndarray, truth: GroundTruth) -> dict[str, Any]:
    """A split's size, click rate and Bayes scores, overall and on late ids."""
    late = truth.late_ids > 0
    return {
        "examples": int(labels.size),
        "ctr": float(labels.mean()),
        "mean_probability": float(truth.probabilities.mean()),
        "examples_with_late_ids": int(late.sum()),
        "bayes_auc": _auc_or_none(labels, truth.probabilities),
        "bayes_log_loss": metrics.log_loss(labels, truth.probabilities),
        "bayes_auc_late_ids": _auc_or_none(labels[late], truth.probabilities[late]),
    }


def _auc_or_none(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The AUC, or None where the labels are not of both classes."""
    both_classes = 0 < labels.sum() < labels.size
    return metrics.auc(labels, scores) if both_classes else None


def late_id_values(
    column: str,
    *,
    seed: int = DEFAULT_SEED,
    spec: SyntheticSpec = SyntheticSpec(),  # noqa: B008 (frozen, so shared safely)
) -> np.ndarray:
    """The late ids of a categorical column, as the strings the data holds.

    Args:
      column: "C1" to "C26".
      seed: the data set's seed.
      spec: the data set's spec (`SyntheticSpec(**meta["spec"])`).

    Returns:
      `[k] str`, in rank order (most frequent first); empty if the column's
      vocabulary is below `spec.late_min_vocabulary`.

    Raises:
      ValueError: `column` is not a categorical column.
    """
    if column not in _batch.CATEGORICAL_COLUMNS:
        raise ValueError(f"late_id_values: column {column!r} is not one of C1..C26")
    feature = _batch.CATEGORICAL_COLUMNS.index(column)
    ranks = np.arange(1, spec.vocabulary_sizes[feature] + 1)
    ranks = ranks[_click_model.is_late(spec, seed, feature, ranks)]
    ids = _click_model.category_ids(feature, ranks)
    chars, _ = _encode.hex_ids(ids, np.zeros(ids.shape, bool))
    return chars.astype(np.uint32).view("U8")[:, 0]


def default_directory() -> pathlib.Path:
    """Where `ensure_dataset` keeps the default data set: `$ADAPTIVE_JAX_DATA`
    if set, else `adaptive_jax/synthetic` in the user's cache directory
    (`$XDG_CACHE_HOME`, or `~/.cache`), outside any source tree."""
    if os.environ.get(DATA_ENV):
        return pathlib.Path(os.environ[DATA_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(cache) / "adaptive_jax" / "synthetic"


def ensure_dataset(
    directory: os.PathLike | str | None = None,
    *,
    num_train: int = DEFAULT_TRAIN,
    num_test: int = DEFAULT_TEST,
    seed: int = DEFAULT_SEED,
    spec: SyntheticSpec = SyntheticSpec(),  # noqa: B008 (frozen, so shared safely)
) -> DatasetFiles:
    """The data set of these parameters, generated on first use, then reused.

    It is reused if its meta file says it was made with the same parameters
    and format version and the data files have the sizes recorded there;
    otherwise (first use, other parameters, an interrupted run) it is written
    again, in a few seconds for the default sizes. Nothing is downloaded.

    Args:
      directory: where the data set lives; None for `default_directory()`.
      num_train, num_test, seed, spec: as for `generate`.

    Returns:
      The data set's files.
    """
    files = DatasetFiles(default_directory() if directory is None else directory)
    wanted = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "spec": json.loads(json.dumps(dataclasses.asdict(spec))),
        "num_train": num_train,
        "num_test": num_test,
    }
    if not _is_complete(files, wanted):
        generate(
            files.directory,
            num_train=num_train,
            num_test=num_test,
            seed=seed,
            spec=spec,
        )
    return files


def _is_complete(files: DatasetFiles, wanted: dict[str, Any]) -> bool:
    """Whether the files exist, whole, and were made with the `wanted` values."""
    try:
        meta = files.metadata()
        whole = all(
            getattr(files, split).stat().st_size == meta[split]["bytes"]
            for split in SPLITS
        )
        return whole and files.truth.is_file() and wanted.items() <= meta.items()
    except (OSError, ValueError, KeyError, TypeError):
        return False
