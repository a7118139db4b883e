"""Kafka's refusals of a move of the consumer group, said as what they are."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from connectors.api_ports import GroupIsActive
from connectors.consumer_groups import KafkaConsumerGroups
from rules.errors import Misconfigured, Unavailable


@pytest.mark.parametrize(("code", "said"), [
    (KafkaError.NON_EMPTY_GROUP, GroupIsActive),  # a worker joined between the look and the move
    (KafkaError.GROUP_AUTHORIZATION_FAILED, Misconfigured),  # an ACL: no outage to wait out
    (KafkaError._TRANSPORT, Unavailable),
])
def test_a_refusal_is_said_as_what_it_is(code, said):
    """Every one read "kafka does not answer; check KAFKA_BOOTSTRAP_SERVERS"."""
    groups = KafkaConsumerGroups("127.0.0.1:9", timeout=1)  # built, never asked
    with pytest.raises(said, match="moving consumer group ap"):
        with groups._asking("moving consumer group ap"):
            raise KafkaException(KafkaError(code))


@pytest.mark.parametrize(("code", "said"), [
    (KafkaError.UNKNOWN_MEMBER_ID, GroupIsActive), (KafkaError.GROUP_AUTHORIZATION_FAILED, Misconfigured)])
def test_a_refusal_kafka_gives_per_partition_is_said_as_what_it_is(code, said):
    """The commit's answer names an error per partition: a member that joined while the group was
    moved was a RuntimeError, and `reprocess` ended in a traceback."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    def answered(value):
        future: Future = Future()
        future.set_result(value)
        return {"ap": future}

    class Admin:
        def describe_consumer_groups(self, groups, request_timeout):
            return answered(SimpleNamespace(members=[]))

        def alter_consumer_group_offsets(self, requests, request_timeout):
            refused = SimpleNamespace(topic="invoices", partition=0, offset=5, error=KafkaError(code))
            return answered(SimpleNamespace(topic_partitions=[refused]))

    groups = KafkaConsumerGroups("127.0.0.1:9", timeout=1)
    groups.admin = Admin()  # type: ignore[assignment]
    with pytest.raises(said, match="moving consumer group ap on invoices"):
        groups.move("ap", "invoices", {0: 5})
