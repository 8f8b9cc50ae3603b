"""The shared grouping state of received DIMSE studies (`record.dimse_studies`), SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest

from inference.record import Record


def _eventually(predicate: object, *, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the database clock to pass a lease")
        time.sleep(0.05)


def test_a_study_is_claimed_by_one_instance_and_finished_only_at_its_claimed_generation(
    record: Record,
) -> None:
    claims = record.dimse_studies
    claims.arrived("1.2.3")
    claims.arrived("1.2.3")  # a second instance of the same study, perhaps on another listener
    assert claims.count() == 1
    # Not quiet yet (an hour of quiet asked): nobody takes it.
    assert claims.claim_next(owner="a", quiet_seconds=3600, lease_seconds=60) is None
    first = claims.claim_next(owner="a", quiet_seconds=0, lease_seconds=60)
    assert first is not None and first.key == "1.2.3" and first.generation == 2
    # Held: the other instance gets nothing.
    assert claims.claim_next(owner="b", quiet_seconds=0, lease_seconds=60) is None
    claims.arrived("1.2.3")  # grew during the analysis
    assert claims.finish(key="1.2.3", owner="a", generation=first.generation) is False
    again = claims.claim_next(owner="b", quiet_seconds=0, lease_seconds=60)
    assert again is not None and again.generation == 3
    assert claims.finish(key="1.2.3", owner="b", generation=again.generation) is True
    assert claims.count() == 0


def test_a_lapsed_lease_is_taken_over_and_the_dead_holder_can_no_longer_finish(record: Record) -> None:
    claims = record.dimse_studies
    claims.arrived("9.8")
    held = claims.claim_next(owner="dead", quiet_seconds=0, lease_seconds=0.2)
    assert held is not None
    taken = _eventually(lambda: claims.claim_next(owner="alive", quiet_seconds=0, lease_seconds=60))
    assert taken.generation == held.generation  # type: ignore[attr-defined]
    assert claims.renew(key="9.8", owner="dead", lease_seconds=60) is False
    assert claims.finish(key="9.8", owner="dead", generation=held.generation) is False
    assert claims.finish(key="9.8", owner="alive", generation=held.generation) is True


def test_failed_attempts_are_counted_across_instances_and_a_retry_waits(record: Record) -> None:
    claims = record.dimse_studies
    assert claims.register(["5.5", "6.6"]) == ["5.5", "6.6"]
    assert claims.register(["5.5"]) == []  # queued already: its quiet period is not restarted
    study = claims.claim_next(owner="a", quiet_seconds=0, lease_seconds=60)
    assert study is not None
    assert claims.count_attempt(key=study.key) == 1
    assert claims.release(key=study.key, owner="a", delay_seconds=3600) is True
    other = claims.claim_next(owner="b", quiet_seconds=0, lease_seconds=60)
    assert other is not None and other.key != study.key  # the failed one waits for its retry time
    assert claims.count_attempt(key=study.key) == 2
    claims.forget(key=other.key, owner="b")
    assert claims.count() == 1
