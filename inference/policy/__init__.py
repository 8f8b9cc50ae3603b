"""Per-site priority policy: imaging findings and NEWS2 bands / triage risk → worklist priority.

The embedded ``default_policy.yaml`` applies unless ``DXASSIST_SITE_POLICY`` names a site file with the
same structure. A result never lowers a priority already set: the service combines with
:func:`max_priority`.
"""

from inference.policy._errors import PolicyError
from inference.policy._policy import NEWS2_BANDS, PRIORITIES, ImagingRule, Policy, Priority, max_priority

__all__ = ["NEWS2_BANDS", "PRIORITIES", "ImagingRule", "Policy", "PolicyError", "Priority", "max_priority"]
