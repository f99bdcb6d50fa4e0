"""The worker's heap settings reach glibc, and the trimming thread stops when told."""

import platform
import subprocess
import sys
import threading

import pytest

from driftline.agents.heap import HeapTrimmer, limit_arenas

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_the_arena_limit_is_taken_by_glibc() -> None:
    # In a child: the limit is process-wide and stays.
    code = "from agents.heap import limit_arenas; print(limit_arenas(2))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_no_arena_limit_leaves_glibc_alone() -> None:
    assert limit_arenas(0) is False


@glibc
def test_the_trimmer_trims_until_stopped() -> None:
    trimmer = HeapTrimmer(0.01)
    calls: list[int] = []
    trim = trimmer._trim
    assert trim is not None
    trimmer._trim = lambda pad: calls.append(pad) or trim(pad)
    thread = threading.Thread(target=trimmer.run)
    thread.start()
    while len(calls) < 3:
        threading.Event().wait(0.01)
    trimmer.stop()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert calls[:3] == [0, 0, 0]


def test_a_trimmer_without_an_interval_returns_at_once() -> None:
    thread = threading.Thread(target=HeapTrimmer(0).run)
    thread.start()
    thread.join(timeout=2)
    assert not thread.is_alive()
