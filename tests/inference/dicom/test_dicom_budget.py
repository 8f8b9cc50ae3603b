"""The decode budget: however many decodes are asked for at once, the bytes being decoded stay bounded."""

from __future__ import annotations

import threading
import time

from inference.dicom._budget import DecodeBudget


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
