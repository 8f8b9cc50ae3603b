"""Token buckets shared by the workers of one server: a table in a file every process maps."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from inference.api._ratelimit import SharedTokenBuckets, TokenBuckets


def _drain(path: str, key: str, attempts: int, results: multiprocessing.Queue[int]) -> None:
    buckets = SharedTokenBuckets(Path(path), rate=1 / 600, burst=10)
    results.put(sum(1 for _ in range(attempts) if buckets.take(key) == 0))
    buckets.close()


def test_processes_draw_from_one_bucket(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = ctx.Queue()
    table = str(tmp_path / "t.bin")
    procs = [ctx.Process(target=_drain, args=(table, "tok:a", 8, results)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    # 24 attempts from three processes, one bucket of 10.
    assert sum(results.get(timeout=10) for _ in procs) == 10


def test_a_shared_bucket_behaves_as_a_local_one(tmp_path: Path) -> None:
    shared = SharedTokenBuckets(tmp_path / "t.bin", rate=2.0, burst=3)
    local = TokenBuckets(rate=2.0, burst=3)
    times = [100.0, 100.0, 100.0, 100.0, 100.2, 100.5, 101.0, 101.0, 104.0, 104.0, 104.0, 104.0]
    for key in ("tok:a", "ip:10.0.0.1"):
        assert [shared.take(key, t) for t in times] == [local.take(key, t) for t in times]
    # Another mapping of the same file sees the same buckets (as another worker would).
    again = SharedTokenBuckets(tmp_path / "t.bin", rate=2.0, burst=3)
    assert again.take("tok:a", 104.0) > 0
    assert again.take("tok:b", 104.0) == 0


def test_a_full_table_forgets_the_oldest_bucket(tmp_path: Path) -> None:
    # Two slots: a third client takes over the bucket counted longest ago, with a full bucket of its own.
    table = SharedTokenBuckets(tmp_path / "t.bin", rate=1 / 600, burst=1, slots=2)
    assert table.take("a", 1.0) == 0
    assert table.take("b", 2.0) == 0
    assert table.take("a", 3.0) > 0 and table.take("b", 3.0) > 0
    assert table.take("c", 4.0) == 0  # a new client: a full bucket
    assert table.take("c", 4.0) > 0
