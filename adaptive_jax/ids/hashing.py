"""Hashes of ids: TensorFlow's buckets on the host, a fast integer hash on device.

On the host, bit for bit as TensorFlow and DeepRec compute them (farmhash's
Fingerprint64 of the UTF-8 bytes; ints through their decimal string):

- `fingerprint64(values)`: TensorFlow's `Fingerprint64`, `np.uint64`;
- `to_hash_bucket_fast(values, num_buckets)`: `tf.strings.to_hash_bucket_fast`,
  and DeepRec's static bucket of an int or string id;
- `string_to_key(values)`: DeepRec's embedding-variable key of a string.

On device, jittable, with x64 off or on, on `ids.Ids`:

- `hash32(ids, seed)`: a 32-bit hash, one independent function per seed;
- `bucket(ids, num_buckets, seed=0)`, `partition(ids, num_partitions)`;
- `fmix32`, `reduce_range`: the pieces they are made of.
"""

from adaptive_jax.ids._device_hash import bucket as bucket
from adaptive_jax.ids._device_hash import fmix32 as fmix32
from adaptive_jax.ids._device_hash import hash32 as hash32
from adaptive_jax.ids._device_hash import partition as partition
from adaptive_jax.ids._device_hash import reduce_range as reduce_range
from adaptive_jax.ids._fingerprint import fingerprint64 as fingerprint64
from adaptive_jax.ids._fingerprint import string_to_key as string_to_key
from adaptive_jax.ids._fingerprint import to_hash_bucket_fast as to_hash_bucket_fast

__all__ = (
    "bucket",
    "fingerprint64",
    "fmix32",
    "hash32",
    "partition",
    "reduce_range",
    "string_to_key",
    "to_hash_bucket_fast",
)
