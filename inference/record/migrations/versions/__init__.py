"""Revisions of the patient record schema."""
