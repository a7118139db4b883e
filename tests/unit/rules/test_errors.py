"""The error family crosses process boundaries whole (the audit replay's worker processes)."""

from __future__ import annotations

import pickle

import pytest

from connectors.api_ports import CommandNotDelivered
from rules.errors import Unavailable


@pytest.mark.parametrize("error", [Unavailable("kafka", "127.0.0.1:9092: all brokers down"),
                                   CommandNotDelivered("no acknowledgement in 10 s")], ids=type)
def test_an_outage_is_the_same_outage_after_a_pickle(error):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert (again.dependency, again.detail) == (error.dependency, error.detail)
