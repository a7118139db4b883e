"""The e2e tier: the whole pipeline on the real stack (see tests/stack_pipeline.py)."""

from tests.e2e.browser import api_in_memory, dashboard, dashboard_in_memory, page  # noqa: F401 (the fixtures)
from tests.stack_pipeline import pipeline  # noqa: F401 (the fixture)
