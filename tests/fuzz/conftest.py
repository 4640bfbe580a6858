"""Property-based tests (hypothesis), bounded for CI: the ``ci`` profile (default) runs each property a few
hundred times; ``HYPOTHESIS_PROFILE=dev`` runs many more. No example database is written."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=3000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
