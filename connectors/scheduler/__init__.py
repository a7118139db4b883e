"""processscheduler: the master log of every invoice version's status, as AP and the RPA bot read it."""

from connectors.scheduler.memory import InMemoryProcessScheduler
from connectors.scheduler.migrate import upgrade
from connectors.scheduler.sink import SqlProcessScheduler

__all__ = ["InMemoryProcessScheduler", "SqlProcessScheduler", "upgrade"]
