"""The e2e tier: the whole pipeline on the real stack (see tests/stack_pipeline.py)."""

from tests.stack_pipeline import pipeline  # noqa: F401 (the fixture)
