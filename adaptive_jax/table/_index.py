"""A set-associative index from int64 keys to rows, with a fixed probe cost.

Each key has two candidate buckets of `WAYS` slots, one in each half of the index,
and is stored in the emptier of the two, the left one on ties (two-choice hashing,
"always go left", Vöcking 2003). With two slots per row of capacity, a table of
2**21 rows filled to capacity, and then with half its keys replaced five times,
holds at most 7 keys in any bucket of 8 (a test checks it), so that a key finding
both its buckets full is astronomically rare; it is refused and counted as an
overflow, like a key that finds the table full.

A bucket is one 64-byte line of `2 * WAYS` int32: the tags of its slots, then their
rows. A key's tag is an odd 31-bit hash, independent of its buckets; a free slot
has tag 0. A probe compares the tags of the two buckets, reads the row of the
match and checks the key stored at that row, so it costs the same whatever the
load and however many keys were removed: no probe chains, no tombstones. When a
tag matches a row that holds another key (two keys of one bucket pair sharing a
tag), an exact slow path checks every candidate.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from adaptive_jax import ids as ids_lib
from adaptive_jax.ids import _device_hash

WAYS = 8
SLOTS_PER_ROW = 2
EMPTY = -1  # the row of a free slot, and "no row"
FREE_TAG = 0  # the tag of a free slot; key tags are odd, claims even and negative
_SEED_LEFT, _SEED_TAG = 1, 2


class Candidates(NamedTuple):
    """Where a key may live: its two buckets and its tag."""

    left: jax.Array  # [n] int32, bucket in [0, num_buckets // 2)
    right: jax.Array  # [n] int32, bucket in [num_buckets // 2, num_buckets)
    tag: jax.Array  # [n] int32, odd


class Probe(NamedTuple):
    """Where each key was found."""

    row: jax.Array  # [n] int32, the key's row, EMPTY where absent
    slot: jax.Array  # [n] int32, flat position of its tag entry, -1 where absent


class Claims(NamedTuple):
    """The outcome of `claim_slots` for each entry."""

    first: jax.Array  # [n] int32, index of the key's first contending occurrence;
    #   -1 where both buckets were full or the entry did not contend
    slot: jax.Array  # [n] int32, flat position of the claimed tag entry, or -1


def num_buckets(capacity: int) -> int:
    """Buckets for `capacity` rows: `SLOTS_PER_ROW` slots per row, at least two."""
    return max(2, SLOTS_PER_ROW * capacity // WAYS)


def create(capacity: int) -> jax.Array:
    """An empty index, `[num_buckets, 2 * WAYS] int32`: a bucket's tags, then rows."""
    tags = jnp.full((num_buckets(capacity), WAYS), FREE_TAG, jnp.int32)
    return jnp.concatenate([tags, jnp.full_like(tags, EMPTY)], axis=1)


def candidates(ids: ids_lib.Ids, slots: jax.Array) -> Candidates:
    """The two buckets and the tag of each of the flat `ids`.

    The tag and the left bucket come from two independent hashes, so that two
    keys of one bucket share a tag with probability 2**-31; the right bucket mixes
    both hashes.
    """
    total = slots.shape[0]
    half = total // 2
    h_left = _device_hash.hash32(ids, _SEED_LEFT)
    h_tag = _device_hash.hash32(ids, _SEED_TAG)
    h_right = _device_hash.fmix32(h_left ^ (h_tag >> 16 | h_tag << 16))
    return Candidates(
        left=_device_hash.reduce_range(h_left, half),
        right=half + _device_hash.reduce_range(h_right, total - half),
        tag=jax.lax.bitcast_convert_type(h_tag | 1, jnp.int32),
    )


def _tag_position(bucket: jax.Array, way: jax.Array) -> jax.Array:
    """Flat position of a slot's tag in `slots.reshape(-1)`; its row is `WAYS` on."""
    return bucket * (2 * WAYS) + way


def _tags(slots: jax.Array, bucket: jax.Array) -> jax.Array:
    return slots.at[bucket, :WAYS].get(mode="promise_in_bounds")


def _matching_way(slots: jax.Array, bucket: jax.Array, tag: jax.Array) -> jax.Array:
    """The last way of `bucket` whose tag is `tag`, or -1. Reads tags only."""
    way = jnp.arange(WAYS, dtype=jnp.int32)[None, :]
    return jnp.max(jnp.where(_tags(slots, bucket) == tag[:, None], way, -1), axis=1)


def _holds(row_keys: jax.Array, rows: jax.Array, ids: ids_lib.Ids) -> jax.Array:
    """Whether `row_keys[rows]` holds `ids` (rows of any shape, EMPTY allowed)."""
    stored = row_keys.at[jnp.maximum(rows, 0)].get(mode="promise_in_bounds")
    return (rows >= 0) & (stored[..., 0] == ids.hi) & (stored[..., 1] == ids.lo)


def _probe_one(
    slots: jax.Array, row_keys: jax.Array, ids: ids_lib.Ids, cand: Candidates
) -> tuple[jax.Array, jax.Array]:
    """Checks the key at every slot whose tag matches, for one key: (row, slot)."""
    way_iota = jnp.arange(WAYS, dtype=jnp.int32)
    found_row, found_slot = jnp.int32(EMPTY), jnp.int32(-1)
    for bucket in (cand.right, cand.left):  # the left one wins: it is checked last
        line = slots[bucket]
        rows = line[WAYS:]
        hit = (line[:WAYS] == cand.tag) & _holds(row_keys, rows, ids)
        way = jnp.max(jnp.where(hit, way_iota, -1))
        found_slot = jnp.where(way >= 0, _tag_position(bucket, way), found_slot)
        found_row = jnp.where(way >= 0, jnp.max(jnp.where(hit, rows, EMPTY)), found_row)
    return found_row, found_slot


def _recheck(
    slots: jax.Array,
    row_keys: jax.Array,
    ids: ids_lib.Ids,
    cand: Candidates,
    fast: Probe,
    suspicious: jax.Array,
) -> Probe:
    """Replaces the `suspicious` answers of `fast` by exact ones, one at a time.

    Suspicious entries are rare (a key sharing its tag with another key of its
    buckets: about one query in 2**28 at full load), so a loop over them costs
    nothing in the usual case, where an exact pass over the batch would cost
    several probes.
    """

    if suspicious.size == 0:
        return fast

    def one(state):
        row, slot, todo = state
        i = jnp.argmax(todo)
        pick = jax.tree.map(lambda a: a[i], (ids, cand))
        exact_row, exact_slot = _probe_one(slots, row_keys, *pick)
        return (
            row.at[i].set(exact_row),
            slot.at[i].set(exact_slot),
            todo.at[i].set(False),
        )

    row, slot, _ = jax.lax.while_loop(
        lambda state: jnp.any(state[2]), one, (fast.row, fast.slot, suspicious)
    )
    return Probe(row, slot)


def probe(
    slots: jax.Array, row_keys: jax.Array, ids: ids_lib.Ids, cand: Candidates
) -> Probe:
    """Finds the flat `ids` in the index.

    Args:
      slots: the index, `[num_buckets, 2 * WAYS] int32`.
      row_keys: `[capacity, 2] uint32`, the key (hi, lo) stored at each row.
      ids: `[n]` keys to find.
      cand: their `candidates`.

    Returns:
      A `Probe`: row and slot of each key, EMPTY / -1 where absent.
    """
    way_left = _matching_way(slots, cand.left, cand.tag)
    way_right = _matching_way(slots, cand.right, cand.tag)
    in_left = way_left >= 0
    bucket = jnp.where(in_left, cand.left, cand.right)
    way = jnp.where(in_left, way_left, way_right)
    slot = _tag_position(bucket, way)
    row_at = slots.reshape(-1).at[slot + WAYS].get(mode="promise_in_bounds")
    row = jnp.where(way >= 0, row_at, EMPTY)
    holds = _holds(row_keys, row, ids)
    fast = Probe(jnp.where(holds, row, EMPTY), jnp.where(holds, slot, -1))
    # One matching tag whose row holds another key: the key is absent. But if two
    # tags match, the key may be at the other one: then check them all.
    return _recheck(slots, row_keys, ids, cand, fast, (way >= 0) & ~holds)


def _choose_free_slot(
    slots: jax.Array, cand: Candidates, pending: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The free slot each pending key would take now: (tag position, none free)."""
    left = jnp.where(pending, cand.left, 0)  # the others read bucket 0: cached
    right = jnp.where(pending, cand.right, 0)
    free_left = _tags(slots, left) == FREE_TAG  # [n, WAYS]
    free_right = _tags(slots, right) == FREE_TAG
    n_left = jnp.sum(free_left, axis=1, dtype=jnp.int32)
    n_right = jnp.sum(free_right, axis=1, dtype=jnp.int32)
    go_left = n_left >= n_right
    free = jnp.where(go_left[:, None], free_left, free_right)
    # Distinct keys start at different ways (by tag) and take the first free way
    # from there on, cyclically, so that they rarely contend.
    start = (jax.lax.bitcast_convert_type(cand.tag, jnp.uint32) >> 1) % WAYS
    way_iota = jnp.arange(WAYS, dtype=jnp.uint32)[None, :]
    distance = (way_iota - start[:, None]) % WAYS
    nearest = jnp.min(jnp.where(free, distance, WAYS), axis=1)
    way = ((start + nearest) % WAYS).astype(jnp.int32)
    bucket = jnp.where(go_left, left, right)
    return _tag_position(bucket, way), nearest == WAYS


def claim_slots(
    slots: jax.Array, ids: ids_lib.Ids, cand: Candidates, contending: jax.Array
) -> tuple[jax.Array, Claims]:
    """Gives each distinct contending key its own free slot, deterministically.

    In each round every unsettled key picks a free slot in the emptier of its
    buckets and writes the claim `2 * (i - n)` (even, negative) into its tag with a
    scatter-min, so that the lowest index wins. Repeats of a key pick the same slot
    in the same round and settle together on their first occurrence; a key whose
    slot went to another key tries again. A key settles within `2 * WAYS + 1`
    rounds: when both its buckets are full at the latest.

    Args:
      slots: the index.
      ids: `[n]` keys; `cand` their candidates.
      contending: `[n] bool`, the entries that need a slot.

    Returns:
      The index with each claimed tag holding its claim, and the `Claims`. The
      caller must `settle` every claimed slot.
    """
    n = contending.shape[0]
    claim = 2 * (jnp.arange(n, dtype=jnp.int32) - n)
    shape = slots.shape

    def round_(state):
        flat, pending, first, slot = state
        target, full = _choose_free_slot(flat.reshape(shape), cand, pending)
        claiming = pending & ~full
        flat = flat.at[jnp.where(claiming, target, flat.size)].min(claim, mode="drop")
        winner = jnp.clip(flat[target] // 2 + n, 0, n - 1)
        settled = claiming & ids_lib.equal(ids[winner], ids)
        first = jnp.where(settled, winner, first)
        slot = jnp.where(settled, target, slot)
        return flat, pending & ~settled & ~full, first, slot

    none = jnp.full((n,), -1, jnp.int32)
    flat, _, first, slot = jax.lax.while_loop(
        lambda state: jnp.any(state[1]),
        round_,
        (slots.reshape(-1), contending, none, none),
    )
    return flat.reshape(shape), Claims(first, slot)


def _write(
    slots: jax.Array, position: jax.Array, tag: jax.Array | int, row: jax.Array | int
) -> jax.Array:
    """Sets tag and row of the slots at the tag positions `position` in one
    scatter; a position of `slots.size` is skipped."""
    bucket, way = position // (2 * WAYS), position % (2 * WAYS)
    pair = jnp.stack(jnp.broadcast_arrays(tag, row), axis=-1).astype(jnp.int32)
    lines = slots.reshape(-1, 2, WAYS).at[bucket, :, way].set(pair, mode="drop")
    return lines.reshape(slots.shape)


def settle(
    slots: jax.Array, claims: Claims, first: jax.Array, rows: jax.Array, tag: jax.Array
) -> jax.Array:
    """Turns the claims of the `first` entries into keys at `rows`, or frees them.

    Args:
      slots: the index returned by `claim_slots`.
      claims: its claims.
      first: `[n] bool`, the entries whose claim to settle (one per claimed slot).
      rows: `[n] int32`, the row each gets, EMPTY to free the slot instead.
      tag: `[n] int32`, the keys' tags.
    """
    at = jnp.where(first, claims.slot, slots.size)
    return _write(slots, at, jnp.where(rows >= 0, tag, FREE_TAG), rows)


def erase(
    slots: jax.Array, found: Probe, hit: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Frees the slots of the `hit` entries; returns the index and which entry was
    the first occurrence of its key, so that each freed row is counted once."""
    n = hit.shape[0]
    claim = jnp.arange(n, dtype=jnp.int32) - n - 1  # below EMPTY and every row
    flat = slots.reshape(-1)
    row_at = jnp.where(hit, found.slot + WAYS, flat.size)
    flat = flat.at[row_at].min(claim, mode="drop")
    winner = flat.at[row_at].get(mode="fill", fill_value=0)
    first = hit & (winner == claim)
    # Index the write through `winner` (a claim for every hit), so that XLA orders
    # it after the read and updates the index in place, not a copy.
    at = jnp.where(hit & (winner < EMPTY), found.slot, flat.size)
    return _write(flat.reshape(slots.shape), at, FREE_TAG, EMPTY), first
