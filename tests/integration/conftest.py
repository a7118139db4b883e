"""The integration tier: real Kafka, PostgreSQL, Connect and SMTP (see tests/stack_pipeline.py)."""

from tests.stack_pipeline import pipeline  # noqa: F401 (the fixture)
