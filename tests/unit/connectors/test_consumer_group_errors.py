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
