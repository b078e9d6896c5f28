"""One BLAS thread while probability models run: one process-wide limit shared by every coder."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None  # threadpoolctl's limiter while any coder runs
_threadpools = None  # threadpoolctl.ThreadpoolController, made once


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Keep the BLAS behind numpy on one thread while any coder runs in this process.

    OpenBLAS gives different float results for the same product on 1 and 2 threads (and gains
    nothing at these sizes), so a float probability model needs this to stay deterministic on one
    machine; an exact (integer) model needs it only for speed. The limit is process-wide: it is set
    when the first coder starts and lifted when the last one ends, so coders in several Python
    threads, float or integer, do not undo each other's.
    """
    global _blas_users, _blas_limiter, _threadpools
    with _blas_lock:
        if _blas_users == 0:
            if _threadpools is None:  # finding the loaded libraries takes milliseconds: once
                from threadpoolctl import ThreadpoolController

                _threadpools = ThreadpoolController()
            _blas_limiter = _threadpools.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
