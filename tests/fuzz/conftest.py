"""Hypothesis profiles for the property tests: ``ci`` (default: bounded, seconds for the whole directory) and
``thorough`` (``HYPOTHESIS_PROFILE=thorough``, thousands of examples for a long local run). No example database
is written."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=5000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
