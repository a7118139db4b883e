"""The local stack for tests, the demo and benchmarks: Kafka, Kafka Connect with Debezium, PostgreSQL.

Started from Maven Central jars and Debian packages, because these machines have no Docker engine.
"""

from devstack.stack import LocalStack, StackEndpoints, StackError

__all__ = ["LocalStack", "StackEndpoints", "StackError"]
