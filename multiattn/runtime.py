"""Process-wide settings the ``multiattn`` command and the benchmarks apply before any work.

:func:`keep_freed_memory` tunes glibc's ``malloc`` (mallopt(3)). By default glibc serves every
block over 128 KiB with a fresh ``mmap`` and unmaps it on ``free`` (the threshold then adapts, but
the heap top is still trimmed back to the OS): every step of a batched beam search allocates
tensors of 0.1-3 MB (scores, CTC forward variables, attention hidden layers), so each step pays
page faults to map and zero memory it had just given back (docs/asr.md, "Decoding speed", has
the measured fault counts and speed). The one-utterance search's tensors stay under the
threshold, so it does not change.

PyTorch's CPU tuning guides suggest the same cure by swapping the allocator (jemalloc or tcmalloc
through ``LD_PRELOAD``); this does it without an extra library. Set ``MULTIATTN_MALLOC=default``
to keep glibc's defaults.

Importing this module also registers :func:`destroy_process_group_at_exit`: Lightning destroys
its process group at exit only for NCCL, and a gloo (CPU) process that exits with the group
alive can abort in interpreter finalization ("terminate called without an active exception",
SIGABRT) when gloo's worker threads release tensors after Python is gone (pytorch/pytorch#179291)
— a spawned training process then reports failure after a finished run. The ``multiattn``
command and every task system import it, so their processes, spawned ones included, do this.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import sys

__all__ = ["destroy_process_group_at_exit", "keep_freed_memory"]

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed heap for reuse


def keep_freed_memory() -> bool:
    """Let glibc's ``malloc`` reuse freed blocks of up to 32 MiB instead of unmapping them.

    The process keeps up to 1 GiB of freed memory for reuse (its resident size stays near its
    peak), which is what a training or decoding process wants. Idempotent.

    Returns:
        ``True`` when glibc accepted both settings; ``False`` off glibc (macOS, Windows, musl),
        or with ``MULTIATTN_MALLOC=default``. Under ``LD_PRELOAD``-ed jemalloc or tcmalloc the
        call is harmless and changes nothing (those allocators do not use glibc's settings).
    """
    if os.environ.get("MULTIATTN_MALLOC", "").strip().lower() == "default":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def destroy_process_group_at_exit() -> None:
    """Destroy the default ``torch.distributed`` process group, if one is alive (an atexit hook)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


atexit.register(destroy_process_group_at_exit)
