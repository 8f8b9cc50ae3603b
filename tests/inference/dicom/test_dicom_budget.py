"""The decode budget: however many decodes are asked for at once, the bytes being decoded stay bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from _dicom_factory import compressed, dataset, phantom, to_bytes
from pydicom import uid

from inference.dicom import Instance, Limits, read_instance
from inference.dicom._budget import DecodeBudget, configure_decode_budget, decode_budget


def test_concurrent_holders_never_exceed_the_capacity() -> None:
    budget = DecodeBudget(100)
    peak = 0
    lock = threading.Lock()

    def decode(cost: int) -> None:
        nonlocal peak
        with budget.hold(cost):
            with lock:
                peak = max(peak, budget.in_use)
            time.sleep(0.01)

    threads = [threading.Thread(target=decode, args=(cost,)) for cost in [40, 30, 60, 50, 20, 90] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)  # nobody starved
    assert 0 < peak <= 100
    assert budget.in_use == 0


def test_a_file_larger_than_the_budget_goes_alone() -> None:
    budget = DecodeBudget(100)
    with budget.hold(10_000):
        assert budget.in_use == 100  # all of it, nothing more
        started = threading.Event()

        def other() -> None:
            with budget.hold(1):
                started.set()

        thread = threading.Thread(target=other)
        thread.start()
        assert not started.wait(0.2)  # waits while the large file decodes
    thread.join(timeout=5)
    assert started.is_set()


@pytest.fixture
def small_budget() -> Iterator[DecodeBudget]:
    """The process's decode budget at 8 MiB for one test."""
    before = decode_budget().capacity
    yield configure_decode_budget(8 << 20)
    configure_decode_budget(before)


@pytest.mark.parametrize("syntax", [uid.DeflatedExplicitVRLittleEndian, uid.JPEG2000Lossless])
def test_a_read_waits_for_room_for_what_it_decodes_not_for_its_file_size(
    small_budget: DecodeBudget, syntax: str
) -> None:
    # 1024 x 1024 x 2 bytes = 2 MiB decoded (inflated) from files of 150 to 300 KB.
    pixels = phantom(1024, 1024)
    ds = dataset(pixels, bits_stored=12)
    data = compressed(ds, syntax) if syntax == uid.JPEG2000Lossless else to_bytes(ds, syntax)
    assert len(data) < 512 << 10
    limits = Limits(max_instance_bytes=64 << 20, max_pixels=16 << 20, max_instances=1)
    read: list[Instance] = []
    done = threading.Event()

    def upload() -> None:
        read.append(read_instance(data, limits=limits))
        done.set()

    thread = threading.Thread(target=upload)
    with small_budget.hold(small_budget.capacity - (1 << 20)):  # 1 MiB left: room for the file only
        thread.start()
        assert not done.wait(2)  # waits for 2 MiB of room
    thread.join(timeout=60)
    assert done.is_set() and read[0].pixels.shape == (1024, 1024)
    assert small_budget.in_use == 0
