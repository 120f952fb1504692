"""The out-of-core column cache: a dimension-major copy of .npy inputs,
built once on disk and scored from in place.

- `build.py`: when a copy is used, and building it (`cached`, `prepare`);
- `entries.py`: an entry's key, record and checks;
- `lock.py`: the per-entry lock that keeps two builds apart;
- `admin.py`: listing and clearing entries (`zcore-fast cache`);
- `writer.py`: writing a copy from Python, for Parquet and row shards.
"""

from zcore_fast.cache.build import (
    AUTO_BYTES,
    CACHE_MODES,
    CacheMode,
    Prepared,
    cache_dir_or_default,
    cached,
    cached_copy,
    check_mode,
    default_cache_dir,
    prepare,
)

__all__ = [
    "AUTO_BYTES",
    "CACHE_MODES",
    "CacheMode",
    "Prepared",
    "cache_dir_or_default",
    "cached",
    "cached_copy",
    "check_mode",
    "default_cache_dir",
    "prepare",
]
