"""Migration "fitted": the share of its bucket a promoted row starts from,
measured on ids that never get the copy.

A bucket learns what the rare ids of its feature have in common; an id that
reaches the admission threshold is no longer one of them (with sampled
negatives a new item is mostly a negative, a popular one is not), so copying
the whole bucket can start a row far from where it goes (docs/claim.md). How
much of the bucket promoted rows really hold is measured, per feature, on a
control group: one promoted id in `HOLDOUT` (by a hash of its key) starts from
the initializer alone, as under "none", whatever the evidence. Over the
lookups of those rows, with `v` a row's value, `b` its bucket's and `p` the
row's coefficient on its bucket (`v . b / |b|**2`, weighted by `|b|**2`),

    share_f = clip(slope - Z * spread / sqrt(k - 1), 0, 1) * k / (k + PRIOR_IDS)
    slope = sum(v . b) / sum(|b|**2),  spread**2 = weighted variance of p

the least-squares slope of the control rows on their buckets, less `Z` standard
errors over the `k` control ids promoted (none with one id), and shrunk toward
0 while `k` is small (a feature of 7 values has one control id at most: its
slope says little). The error takes the `k` ids as independent while the sums
weigh each id by its reads, so it is optimistic where a few ids hold most
reads; measuring each id once instead copied less everywhere and did no
better (docs/claim.md). Copy only what the evidence says promoted rows hold: on
frappe a share of 0.2 of its user field's bucket, the slope shrunk by its
50-odd ids alone, cost a ten-thousandth of AUC against no copy. Every other
promoted id starts from its initial value plus `share_f * b`, with FTRL slots
that keep that part (the initial value then fades as it does under "none").
With no evidence the share is 0 and the migration is "none"; where control rows
come to hold their bucket whole and alike, it is a copy. Nothing here passes
over a table: the evidence is `[features, 4]` sums and `[features]` squares,
updated from each lookup's entries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from adaptive_jax import ids as ids_lib
from adaptive_jax.ids import _device_hash
from adaptive_jax.table import _dedup

HOLDOUT = 16  # one promoted id in 16 is a control row
PRIOR_IDS = 16.0  # control ids promoted at which the share is halved
Z = 2.0  # standard errors of the slope taken off it
_HOLDOUT_SEED = 0x5A4E


@struct.dataclass
class ShareEvidence:
    """Per feature of a column (its stacked members, or one), over the lookups
    of control rows: `sums[f] = (sum v . b, sum |b|**2, entries, promotions)`,
    `[features, 4] float32` (promotions: control keys given a row, each once
    however often its batch repeats it; under `shard_map`, once per device
    whose batch holds it), and `squares[f] = sum (v . b)**2 / |b|**2`,
    `[features] float32`, for the spread of the rows' coefficients."""

    sums: jax.Array
    squares: jax.Array

    @classmethod
    def create(cls, features: int) -> ShareEvidence:
        return cls(
            jnp.zeros((features, 4), jnp.float32), jnp.zeros((features,), jnp.float32)
        )


def held_out(
    keys: ids_lib.Ids, row_ids: jax.Array, feature_salts: tuple[int, ...]
) -> jax.Array:
    """`[n] bool`: the keys of the control group, one in `HOLDOUT`, chosen by
    the key without its feature's salt (a stacked column's members pick the
    ids they would pick apart)."""
    if any(feature_salts):
        words = np.array(feature_salts, np.uint64)
        feature = features_of(row_ids, len(feature_salts))
        hi = jnp.asarray((words >> np.uint64(32)).astype(np.uint32))[feature]
        lo = jnp.asarray((words & np.uint64(0xFFFFFFFF)).astype(np.uint32))[feature]
        keys = ids_lib.Ids(keys.hi ^ hi, keys.lo ^ lo)
    return _device_hash.hash32(keys, _HOLDOUT_SEED) % jnp.uint32(HOLDOUT) == 0


def shares(evidence: ShareEvidence) -> jax.Array:
    """`[features] float32`: the share of its bucket a promoted row starts from."""
    along, norm, _, promoted = evidence.sums.T
    safe_norm = jnp.maximum(norm, 1e-30)
    slope = along / safe_norm
    variance = jnp.maximum(evidence.squares / safe_norm - slope * slope, 0.0)
    # One control id's reads say nothing of how ids spread: no share yet.
    error = jnp.sqrt(variance / jnp.maximum(promoted - 1.0, 1.0))
    lower = jnp.clip(slope - Z * error, 0.0, 1.0)
    known = (norm > 0) & (promoted > 1)
    return jnp.where(known, lower, 0.0) * promoted / (promoted + PRIOR_IDS)


def features_of(row_ids: jax.Array, features: int) -> jax.Array:
    """The feature of each entry: a stacked column's rows are example-major
    (`example * features + feature`)."""
    return jnp.remainder(row_ids, features) if features > 1 else row_ids * 0


def starting_part(
    evidence: ShareEvidence,
    bucket_values: jax.Array,
    keys: ids_lib.Ids,
    row_ids: jax.Array,
    feature_salts: tuple[int, ...],
) -> jax.Array:
    """`[n, dim]`: what each entry's key starts from beside its initial value if
    it is promoted now: its feature's share of its bucket, 0 for a control key."""
    share = shares(evidence)[features_of(row_ids, len(feature_salts))]
    share = jnp.where(held_out(keys, row_ids, feature_salts), 0.0, share)
    return share[:, None] * bucket_values


def record(
    evidence: ShareEvidence,
    row_values: jax.Array,
    bucket_values: jax.Array,
    read: jax.Array,
    new: jax.Array,
    keys: ids_lib.Ids,
    row_ids: jax.Array,
    feature_salts: tuple[int, ...],
    axis_name: str | None = None,
) -> ShareEvidence:
    """The evidence with this lookup's control entries added: those that
    `read` their row (`row_values`, `[n, dim]`), against their bucket's value
    (`bucket_values`), and those `new` in the table. Under `shard_map`, summed
    over the devices of `axis_name`."""
    features = len(feature_salts)
    held = held_out(keys, row_ids, feature_salts)
    control = (read & held).astype(jnp.float32)
    along = jnp.sum(row_values * bucket_values, axis=1) * control
    norm = jnp.sum(bucket_values * bucket_values, axis=1) * control
    square = jnp.where(norm > 0, along * along / jnp.maximum(norm, 1e-30), 0.0)
    promoted = _first_of_each_key(keys, new & held).astype(jnp.float32)
    added = jax.ops.segment_sum(
        jnp.stack([along, norm, control, promoted, square], axis=1),
        features_of(row_ids, features),
        num_segments=features,
    )
    if axis_name is not None:
        added = jax.lax.psum(added, axis_name)
    return evidence.replace(
        sums=evidence.sums + added[:, :4], squares=evidence.squares + added[:, 4]
    )


def _first_of_each_key(keys: ids_lib.Ids, entries: jax.Array) -> jax.Array:
    """`[n] bool`: the first of `entries` with each key (a promoted key counts
    once, not once per repeat: a feature of 7 values whose one control id fills
    a batch is still one id of evidence)."""
    first = _dedup.first_occurrence((keys.hi, keys.lo), entries)
    return entries & (first == jnp.arange(first.shape[0], dtype=jnp.int32))
