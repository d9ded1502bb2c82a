"""``twin.memory.retain_freed_memory``: large arrays come from the heap and reuse freed memory (glibc).

Each check runs in a child process (the setting is process-wide and cannot be undone) and reads glibc's
own accounting (``mallinfo2``: bytes in mmapped blocks), so it fails if the setting does not take."""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys

import pytest

_CHILD = r"""
import ctypes, ctypes.util, json, os, sys
import numpy as np
from twin.memory import retain_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                              "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = retain_freed_memory() if sys.argv[1] == "call" else None
before = libc.mallinfo2()
a = np.ones(64 * 2**20 // 8)              # 64 MiB: above glibc's largest mmap threshold (32 MiB)
held = libc.mallinfo2()
addr = a.ctypes.data
del a
freed = libc.mallinfo2()
b = np.ones(64 * 2**20 // 8)
print(json.dumps({"applied": applied, "mmapped_while_held": held.hblkhd - before.hblkhd, "heap_free_after_del": freed.fordblks,
                  "same_block_reused": b.ctypes.data == addr}))
"""

glibc = pytest.mark.skipif(not hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2"),
                           reason="glibc >= 2.33 only (mallinfo2)")


def _child(mode: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout)


@glibc
def test_large_arrays_come_from_the_heap_and_the_next_reuses_the_freed_one():
    r = _child("call")
    assert r["applied"] is True
    assert r["mmapped_while_held"] == 0            # not a fresh mapping from the kernel
    assert r["heap_free_after_del"] >= 64 * 2**20  # freed into the heap, not unmapped
    assert r["same_block_reused"]


@glibc
def test_without_it_glibc_maps_and_unmaps_each_large_array():
    r = _child("skip")
    assert r["mmapped_while_held"] >= 64 * 2**20
    assert r["heap_free_after_del"] < 64 * 2**20


@glibc
def test_twin_malloc_system_leaves_the_allocator_as_it_is():
    r = _child("call", TWIN_MALLOC="system")
    assert r["applied"] is False
    assert r["mmapped_while_held"] >= 64 * 2**20


@glibc
def test_the_twin_command_applies_it():
    code = ("import json, sys; from unittest import mock; import twin.memory as m; from twin.cli import main\n"
            "with mock.patch.object(m, 'retain_freed_memory', wraps=m.retain_freed_memory) as spy:\n"
            "    rc = main(['run', '/nonexistent/scenario.yaml'])\n"
            "print(json.dumps({'rc': rc, 'calls': spy.call_count}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r == {"rc": 2, "calls": 1}
