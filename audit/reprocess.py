"""`reprocess`: after a change of rules, run the live pipeline again over invoices since a time.

Only the invoices topic is rewound, for the pipeline's consumer group. The PO ledger keeps
what completions and AP commands did, so they need no second pass; each replayed invoice
version held under other rules is judged again (a failed hand-off that AP released and that was
held again at its next turn too: cleared, it goes to the bot as its next hand-off), everything
else is re-emitted unchanged, and the sinks' keys (invoice version, event id, sent log) make that
a no-op downstream: no hand-off is emailed twice. Offsets only ever move back, and never while a
worker of the group runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.api_ports import ConsumerGroups, GroupIsActive, TopicReader


@dataclass(frozen=True)
class PartitionPlan:
    partition: int
    committed: int | None
    rewind_to: int
    end: int

    @property
    def moves(self) -> bool:
        """Back only. A partition the group never committed is read from its start (the workers'
        `auto.offset.reset` is earliest): set to the time, it skipped invoices never judged."""
        return self.committed is not None and self.rewind_to < self.committed

    @property
    def to_reprocess(self) -> int:
        """Offsets the pipeline will read a second time: not invoices, since the topic's records are
        the vendors' uploads and deletes and the PO agent's moves and deletes told to another PO, and
        each transaction's commit marker holds an offset too."""
        return self.committed - self.rewind_to if self.moves and self.committed is not None else 0


@dataclass(frozen=True)
class ReprocessPlan:
    group: str
    topic: str
    since_ms: int
    partitions: list[PartitionPlan]
    running_members: list[str]

    @property
    def total(self) -> int:
        return sum(p.to_reprocess for p in self.partitions if p.moves)


def plan(reader: TopicReader, groups: ConsumerGroups, group: str, topic: str, since_ms: int) -> ReprocessPlan:
    ranges = reader.ranges(topic, since_ms, None)
    committed = groups.committed(group, topic, sorted(ranges))
    partitions = [PartitionPlan(p, committed.get(p), start, end) for p, (start, end) in sorted(ranges.items())]
    return ReprocessPlan(group, topic, since_ms, partitions, groups.members(group))


def execute(groups: ConsumerGroups, reprocess: ReprocessPlan) -> dict[int, int]:
    """Rewinds the partitions the plan moves, each only if that is still back from where the group
    stands: read again now, since it may have moved while the plan waited for its confirmation (a
    second operator's rewind, kafka-consumer-groups), and the plan's offsets, written as planned,
    moved it forward past invoices never judged. Returns the offsets written."""
    if reprocess.running_members:
        raise GroupIsActive(f"consumer group {reprocess.group!r} has running worker(s): "
                            f"{', '.join(reprocess.running_members)}; stop them first")
    if not reprocess.total:
        return {}
    # Every partition of the plan: one the group had committed nothing on may have been read since.
    now = groups.committed(reprocess.group, reprocess.topic, [p.partition for p in reprocess.partitions])
    offsets = {p.partition: p.rewind_to for p in reprocess.partitions
               if (at := now.get(p.partition)) is not None and p.rewind_to < at}
    if offsets:
        groups.move(reprocess.group, reprocess.topic, offsets)
    return offsets
