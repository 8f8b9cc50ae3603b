"""Settings that make several replicas safe together."""

from __future__ import annotations

import pytest

from inference.config import DeliverySettings

DESTINATION = {
    "name": "pacs",
    "kind": "stowrs",
    "url": "https://pacs.example/dicomweb",
    "timeout_seconds": 30,
}


def test_a_delivery_lease_shorter_than_a_destinations_timeout_is_refused() -> None:
    """Two replicas could otherwise send one object at the same time (docs/deployment.md)."""
    with pytest.raises(ValueError, match="DXASSIST_DELIVERY_LEASE_SECONDS"):
        DeliverySettings(destinations=[DESTINATION], delivery_lease_seconds=20)
    longer = DeliverySettings(destinations=[DESTINATION], delivery_lease_seconds=45)
    assert longer.delivery_lease_seconds == 45
    assert DeliverySettings(destinations=[DESTINATION]).delivery_lease_seconds == 120
