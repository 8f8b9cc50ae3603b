"""Property-based fuzzing of the ingest function: mutated valid files only ever raise DicomRejected."""

from __future__ import annotations

from _dicom_factory import nested_sequences, simple
from _security_env import chest_dicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.api._errors import DICOM_STATUS
from inference.dicom import DicomRejected, Limits, read_instance

LIMITS = Limits(max_instance_bytes=4 << 20, max_pixels=1 << 20, max_instances=4)
SEEDS = [
    simple(),
    simple(rows=32, columns=32) + nested_sequences(3),
    chest_dicom(study="1.2.3.4", sop="1.2.3.4.1", size=32),
]

Mutation = tuple[str, int, int]
mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "delete", "insert", "truncate", "duplicate"]),
        st.integers(min_value=0, max_value=1 << 16),
        st.integers(min_value=0, max_value=255),
    ),
    min_size=1,
    max_size=8,
)


def _mutate(data: bytes, steps: list[Mutation]) -> bytes:
    buffer = bytearray(data)
    for kind, where, value in steps:
        # Favour the header: most of the structure lives in the first few hundred bytes.
        size = max(1, len(buffer))
        position = where % size if where % 4 == 0 else where % min(size, 600)
        if kind == "flip" and buffer:
            buffer[position] ^= 1 << (value % 8)
        elif kind == "set" and buffer:
            buffer[position] = value
        elif kind == "delete":
            del buffer[position : position + 1 + value % 16]
        elif kind == "insert":
            buffer[position:position] = bytes([value]) * (1 + value % 32)
        elif kind == "truncate":
            del buffer[position:]
        elif kind == "duplicate":
            buffer[position:position] = buffer[position : position + 1 + value]
    return bytes(buffer)


@given(seed=st.sampled_from(range(len(SEEDS))), steps=mutations)
@settings(
    max_examples=500,
    # No per-example deadline (a timed assert: a 2.5 s stall of a loaded CI machine failed it as
    # "unreliable timings"); a hang is still caught by the suite's per-test timeout (pyproject.toml).
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
def test_mutated_files_are_read_or_refused_never_crash(seed: int, steps: list[Mutation]) -> None:
    data = _mutate(SEEDS[seed], steps)
    try:
        instance = read_instance(data, limits=LIMITS, target_size=64)
    except DicomRejected as e:
        assert DICOM_STATUS[e.kind] in (400, 413, 415, 422) and e.message.endswith(".")
        return
    assert instance.pixels.size <= LIMITS.max_pixels
