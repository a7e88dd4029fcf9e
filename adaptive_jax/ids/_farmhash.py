"""farmhash's Fingerprint64 (TensorFlow's) over many strings at once, in numpy.

The strings come as a `Words` layout (`ids._bytes` builds it from numpy
arrays, lists and int64 ids): their bytes as little-endian uint64 words, one
row per string or one row shared by all. Lanes are grouped by the algorithm's
length classes (0-16 bytes in four cases, 17-32, 33-64, and the loop over
64-byte chunks beyond), and each class is hashed with uint64 array arithmetic,
which wraps modulo 2**64 as the C++ does (no warnings: numpy warns only on
scalar overflow, and every operand here is an array).

Written from farmhash's description of `farmhashna::Hash64` (Fingerprint64 is
that function); the tests check it bit for bit against the `farmhash` module's
per-string Fingerprint64 and TensorFlow's known answers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_MASK64 = (1 << 64) - 1
_K0 = np.uint64(0xC3A5C85C97CB3127)
_K1 = np.uint64(0xB492B66FBE98F273)
_K2 = np.uint64(0x9AE16A3B2F90404F)
_SEED = 81  # the seed of the loop over 64-byte chunks
_Y0 = (_SEED * int(_K1) + 113) & _MASK64
_U64 = np.uint64


@dataclasses.dataclass(frozen=True)
class Words:
    """Strings as little-endian 64-bit words, for unaligned reads.

    A read of 8 bytes may run past its string (the hash then masks or shifts
    out what lies beyond), into the rest of the row, the next row or, at the
    very end, zeros; so a row needs no room after its string.

    Attributes:
      words: `[rows, width] uint64`; string `i` is the bytes
        `[start[i], start[i] + lengths[i])` of row `row[i]`.
      start: `[n] int64`, each string's first byte in its row, or one int for
        all.
      lengths: `[n] int64`, each string's length in bytes.
      row: `[n] int64`, each string's row; None for row `i` (one per string),
        which lets reads at a common offset take whole columns.
      reads_anywhere: every class of the algorithm up to 32 bytes reads
        inside the rows whatever a string's length (so one class may hash
        every lane, its results for other lengths then overwritten).
      length: the one length of every string, or None: reads from a
        string's end are then at one offset, found without a pass.
    """

    words: np.ndarray
    start: np.ndarray | int
    lengths: np.ndarray
    row: np.ndarray | None = None
    reads_anywhere: bool = False
    length: int | None = None

    def before_end(self, count: int) -> np.ndarray | int:
        """Each string's offset `count` bytes before its end."""
        return self.lengths - count if self.length is None else self.length - count

    def lengths64(self) -> np.ndarray:
        """The lengths as uint64 (one, broadcast, when they are one)."""
        if self.length is None:
            return self.lengths.astype(_U64)
        return np.full(1, _U64(self.length))

    def take(self, lanes: np.ndarray | slice) -> Words:
        """The strings `lanes` (indices or a slice), as a layout of their own."""
        start = self.start if isinstance(self.start, int) else self.start[lanes]
        if self.row is None:
            words = self.words
            if words.flags.f_contiguous and not words.flags.c_contiguous:
                words = words.T[:, lanes].T  # column by column
            else:
                words = words[lanes]
            return Words(words, start, self.lengths[lanes])
        return Words(self.words, start, self.lengths[lanes], self.row[lanes])

    def fetch64(self, offset: np.ndarray | int) -> np.ndarray:
        """`[n] uint64`: the 8 bytes at `offset` (per lane or one for all) of
        each string, little-endian, as farmhash's `Fetch64`. Read-only: it may
        be a view of the words."""
        at = self.start + offset
        if isinstance(at, np.ndarray):
            low, high = int(at.min()), int(at.max())
            at = low if low == high else at
        else:
            low = high = at
        if self.row is None and high <= (low & ~7) + 8:  # two columns hold it
            return self._columns(low >> 3, at - (low & ~7))
        return self._gathered(np.broadcast_to(at, self.lengths.shape))

    def _columns(self, first: int, skip: np.ndarray | int) -> np.ndarray:
        """Column `first` and the next, shifted by `skip` bytes (0 to 8)."""
        low = self.words[:, first]
        if isinstance(skip, int) and skip == 0:
            return low
        width = self.words.shape[1]
        high = self.words[:, first + 1] if first + 1 < width else _U64(0)
        shift = _U64(skip << 3) if isinstance(skip, int) else (skip << 3).astype(_U64)
        return (low >> shift) | (high << (_U64(64) - shift))

    def _gathered(self, at: np.ndarray) -> np.ndarray:
        """The reads, word by word from the flat words (past the end: 0s)."""
        rows = np.arange(at.size) if self.row is None else self.row
        flat = self.words.reshape(-1)
        index = rows * self.words.shape[1] + (at >> 3)
        after = np.minimum(index + 1, flat.size - 1)  # only ever shifted out
        shift = ((at & 7) << 3).astype(_U64)
        return (flat[index] >> shift) | (flat[after] << (_U64(64) - shift))

    def fetch32(self, offset: np.ndarray | int) -> np.ndarray:
        """`[n] uint64`: the 4 bytes at `offset`, as farmhash's `Fetch32`."""
        return self.fetch64(offset) & _U64(0xFFFFFFFF)


# The arithmetic works in place on the arrays it has made (`x *= mul`), never
# on its arguments (a read may be a view of the words): at 8,192 lanes an
# array fewer is a pass fewer over memory.


def _rotate(value: np.ndarray, shift: int) -> np.ndarray:
    """Rotate right by `shift` in [1, 63], into a new array."""
    out = value >> _U64(shift)
    out |= value << _U64(64 - shift)
    return out


def _shift_mix(value: np.ndarray) -> np.ndarray:
    """`value ^ (value >> 47)`, in place."""
    value ^= value >> _U64(47)
    return value


def _hash_len16(u: np.ndarray, v: np.ndarray, mul: np.ndarray) -> np.ndarray:
    """farmhash's `HashLen16(u, v, mul)`: two multiply-xorshift rounds."""
    a = u ^ v
    a *= mul
    b = v ^ _shift_mix(a)
    b *= mul
    _shift_mix(b)
    b *= mul
    return b


def _multiplier(s: Words) -> np.ndarray:
    """`k2 + 2 * len`, the multiplier of the 4-to-64-byte cases (one number
    when the strings have one length, which saves an array)."""
    if s.length is not None:
        return np.full(1, _K2 + _U64(2 * s.length))  # one lane, broadcast
    return _K2 + (s.lengths.astype(_U64) << _U64(1))


def _len1to3(s: Words) -> np.ndarray:
    first = s.fetch64(0)  # the string's 1-3 bytes are in its first word
    length = s.lengths64()
    a = first & _U64(0xFF)
    b = (first >> ((length >> _U64(1)) << _U64(3))) & _U64(0xFF)
    c = (first >> ((length - _U64(1)) << _U64(3))) & _U64(0xFF)
    y = a + (b << _U64(8))
    z = length + (c << _U64(2))
    y *= _K2
    z *= _K0
    y ^= z
    _shift_mix(y)
    y *= _K2
    return y


def _len4to7(s: Words) -> np.ndarray:
    mul = _multiplier(s)
    a = s.fetch32(0) << _U64(3)
    a += s.lengths64()
    return _hash_len16(a, s.fetch32(s.before_end(4)), mul)


def _len8to16(s: Words) -> np.ndarray:
    mul = _multiplier(s)
    a = s.fetch64(0) + _K2
    b = s.fetch64(s.before_end(8))
    c = _rotate(b, 37)
    c *= mul
    c += a
    d = _rotate(a, 25)
    d += b
    d *= mul
    return _hash_len16(c, d, mul)


def _len17to32(s: Words) -> np.ndarray:
    mul = _multiplier(s)
    a = s.fetch64(0) * _K1
    b = s.fetch64(8)
    c = s.fetch64(s.before_end(8)) * mul
    d = s.fetch64(s.before_end(16)) * _K2
    u = _rotate(a + b, 43)
    u += _rotate(c, 30)
    u += d
    v = _rotate(b + _K2, 18)
    v += a
    v += c
    return _hash_len16(u, v, mul)


def _len33to64(s: Words) -> np.ndarray:
    mul = _multiplier(s)
    a = s.fetch64(0) * _K2
    b = s.fetch64(8)
    c = s.fetch64(s.before_end(8)) * mul
    d = s.fetch64(s.before_end(16)) * _K2
    y = _rotate(a + b, 43) + _rotate(c, 30) + d
    z = _hash_len16(y, a + _rotate(b + _K2, 18) + c, mul)
    e = s.fetch64(16) * mul
    f = s.fetch64(24)
    g = (y + s.fetch64(s.before_end(32))) * mul
    h = (z + s.fetch64(s.before_end(24))) * mul
    return _hash_len16(
        _rotate(e + f, 43) + _rotate(g, 30) + h, e + _rotate(f + a, 18) + g, mul
    )


def _weak_hash32(
    s: Words, at: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """farmhash's `WeakHashLen32WithSeeds` of the 32 bytes at `at`, seeds a, b."""
    w, x, y, z = (s.fetch64(at + 8 * i) for i in range(4))
    a = a + w
    b = _rotate(b + a + z, 21)
    c = a
    a = a + x + y
    b = b + _rotate(a, 44)
    return a + z, b + c


def _over64(s: Words) -> np.ndarray:
    """The loop over 64-byte chunks. Lanes are sorted by their number of
    chunks, so that those still looping at each round are a prefix."""
    chunks = (s.lengths - 1) // 64
    order = np.argsort(-chunks, kind="stable")
    s = s.take(order)
    chunks = chunks[order]
    n = s.lengths.size
    x = np.full(n, _U64(_SEED)) * _K2 + s.fetch64(0)
    y = np.full(n, _U64(_Y0))
    z = _shift_mix(y * _K2 + _U64(113)) * _K2
    v0, v1, w0, w1 = (np.zeros(n, _U64) for _ in range(4))
    at = np.zeros(n, np.int64)
    for round_ in range(int(chunks[0])):
        m = int(np.count_nonzero(chunks > round_))  # the lanes still looping
        p = s.take(slice(0, m))
        a = at[:m]
        x[:m] = _rotate(x[:m] + y[:m] + v0[:m] + p.fetch64(a + 8), 37) * _K1
        y[:m] = _rotate(y[:m] + v1[:m] + p.fetch64(a + 48), 42) * _K1
        x[:m] ^= w1[:m]
        y[:m] += v0[:m] + p.fetch64(a + 40)
        z[:m] = _rotate(z[:m] + w0[:m], 33) * _K1
        new_v = _weak_hash32(p, a, v1[:m] * _K1, x[:m] + w0[:m])
        new_w = _weak_hash32(p, a + 32, z[:m] + w1[:m], y[:m] + p.fetch64(a + 16))
        (v0[:m], v1[:m]), (w0[:m], w1[:m]) = new_v, new_w
        x[:m], z[:m] = z[:m], x[:m].copy()
        at[:m] += 64
    last = s.lengths - 64
    mul = _K1 + ((z & _U64(0xFF)) << _U64(1))
    w0 += ((s.lengths - 1) & 63).astype(_U64)
    v0 += w0
    w0 += v0
    x = _rotate(x + y + v0 + s.fetch64(last + 8), 37) * mul
    y = _rotate(y + v1 + s.fetch64(last + 48), 42) * mul
    x ^= w1 * _U64(9)
    y += v0 * _U64(9) + s.fetch64(last + 40)
    z = _rotate(z + w0, 33) * mul
    v0, v1 = _weak_hash32(s, last, v1 * mul, x + w0)
    w0, w1 = _weak_hash32(s, last + 32, z + w1, y + s.fetch64(last + 16))
    x, z = z, x
    hashed = _hash_len16(
        _hash_len16(v0, w0, mul) + _shift_mix(y) * _K0 + z,
        _hash_len16(v1, w1, mul) + x,
        mul,
    )
    out = np.empty(n, _U64)
    out[order] = hashed
    return out


# (smallest length, largest length, hash) of each case of the algorithm.
_CLASSES = (
    (1, 3, _len1to3),
    (4, 7, _len4to7),
    (8, 16, _len8to16),
    (17, 32, _len17to32),
    (33, 64, _len33to64),
    (65, None, _over64),
)


def fingerprint64(strings: Words) -> np.ndarray:
    """farmhash's Fingerprint64 of each string of `strings`: `[n] uint64`.

    Example:
      >>> from adaptive_jax.ids import _bytes
      >>> int(fingerprint64(_bytes.from_objects(["hello"]))[0])
      13009744463427800296
    """
    lengths = strings.lengths
    if lengths.size == 0:
        return np.zeros(0, _U64)
    shortest, longest = int(lengths.min()), int(lengths.max())
    if shortest > 0:
        for low, high, hash_class in _CLASSES:
            if shortest >= low and (high is None or longest <= high):
                if shortest == longest and high is not None:
                    strings = dataclasses.replace(strings, length=shortest)
                return hash_class(strings)  # one class holds them all
    classes = []  # (lanes, hash) of each class with strings in it
    for low, high, hash_class in _CLASSES:
        if longest >= low and (high is None or shortest <= high):
            lanes = np.flatnonzero((lengths >= low) & (lengths <= (high or longest)))
            if lanes.size:
                classes.append((lanes, hash_class))
    out = np.full(lengths.size, _K2)  # the empty string's
    if strings.reads_anywhere and classes:  # the commonest class on every lane
        lanes, hash_class = classes.pop(int(np.argmax([c[0].size for c in classes])))
        out[lanes] = hash_class(strings)[lanes]
    for lanes, hash_class in classes:
        out[lanes] = hash_class(strings.take(lanes))
    return out
