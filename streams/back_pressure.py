"""Back-pressure: new invoices wait in Kafka while the worker's own verdicts wait to be recorded.

One consumer reads every topic of the group, and librdkafka hands records over in the order it
fetched them. In a burst, the verdicts the PO agent made queued behind the invoices fetched before
them, and the sink read them only as fast as their share of each batch: at 2,000 invoices/s
offered, processscheduler had a decided invoice 12 s later (p50, the pipeline bench's "decided ->
row"), and AP saw a burst only once it was over. While this worker has more than `most_behind`
records of the downstream topic (verdicts) still to read, its partitions of the intake topic
(invoices) are paused, so that every batch is the sink's; they go on once it is down to half.
Completions, commands and Sampro changes are never paused: they are what frees the work.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from streams.broker import StreamBroker, TopicPartition

log = logging.getLogger(__name__)


@dataclass
class BackPressure:
    intake: str  # the topic of new work, whose partitions wait
    downstream: str  # the topic that must not fall behind
    most_behind: int  # records of it not read yet, over the worker's partitions
    paused: set[TopicPartition] = field(default_factory=set)

    def apply(self, broker: StreamBroker, assigned: Collection[TopicPartition],
              held: Collection[TopicPartition]) -> None:
        """Pauses or resumes the intake; the partitions held for a failure are the runtime's."""
        behind = broker.behind([tp for tp in assigned if tp[0] == self.downstream])
        intake = {tp for tp in assigned if tp[0] == self.intake and tp not in held}
        if behind > (self.most_behind // 2 if self.paused else self.most_behind):
            if not self.paused:
                log.info("%s waits: %d records of %s not recorded yet", self.intake, behind, self.downstream)
            for partition in sorted(intake - self.paused):
                broker.hold(partition, None)
            # One held for a failure meanwhile is the runtime's to release; released, it is paused here again.
            self.paused = intake
        elif self.paused:
            for partition in sorted(self.paused & intake):
                broker.release(partition)
            self.paused = set()
