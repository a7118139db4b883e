"""`explain`: one invoice's whole story, from the topics alone.

Every message about the invoice, from every topic of the pipeline, in the order it was
recorded: each version received, each verdict with its rules version and the PO it was judged
against, parking, the RPA request, the bot's completion, AP's releases and approvals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from audit.replay import verdict_identity
from connectors.api_ports import OffsetRanges, TopicNotFound, TopicReader, TopicRecord
from rules.errors import DataError, Unavailable
from rules.lifecycle import (
    DispatchApproved,
    InvoiceReplaced,
    InvoiceSubmitted,
    InvoiceWithdrawn,
    ReleaseRequested,
    RpaRequest,
    StatusChanged,
)
from rules.limits import Limits, load_json
from rules.models import MAX_VERSION, RpaCompletion, Verdict
from rules.po_ledger import FREED_BY
from schemas.codec import Codec
from streams.runtime import FORWARDED_FROM

PROGRESS_EVERY = 1_000  # records between two words to `on_progress`


@dataclass(frozen=True)
class Step:
    at: datetime
    topic: str
    partition: int
    offset: int
    invoice_version: int
    what: str  # received, verdict, status, rpa request, completion, release requested, ...
    summary: str
    detail: dict = field(default_factory=dict)


@dataclass
class Story:
    """The steps, and what the story may be missing: records that hold the invoice id's text but
    could not be read (they may be about it, or about an invoice whose id contains it), topics
    that do not exist (a topic name set wrong leaves out all its steps), and the records retention
    deleted from the partitions of a story that has lost its beginning."""

    steps: list[Step] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "topic[partition]@offset: why"
    missing_topics: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # "records before offset N of topic[partition] are gone: ..."

    @property
    def complete(self) -> bool:
        return not self.unreadable and not self.missing_topics and not self.deleted


def story(reader: TopicReader, codec: Codec, topics: list[str], invoice_id: str, since_ms: int | None = None,
          until_ms: int | None = None, on_total: Callable[[int], None] = lambda total: None,
          on_progress: Callable[[int], None] = lambda records: None) -> Story:
    """The steps recorded from `since_ms` up to `until_ms` (record times; None: the whole topic).
    `on_total` hears how many records the topics hold there, `on_progress` how many more were read:
    a topic kept ten years takes a while, and the auditor sees how long. A dead letter (a record
    with the dead-letter headers of `streams.failures`) tells the step it refused; a record the
    runtime forwarded to its PO's partition is told once, where it was applied."""
    needle = invoice_id.encode()
    told, read = Story(), _Read()
    ranges: dict[str, OffsetRanges] = {}
    for topic in topics:
        try:
            ranges[topic] = reader.ranges(topic, since_ms, until_ms)
        except TopicNotFound:
            told.missing_topics.append(topic)
    held = {topic: sum(end - start for start, end in spans.values()) for topic, spans in ranges.items()}
    on_total(sum(held.values()))
    first_kept: dict[tuple[str, int], int] = {}  # (topic, partition): the time of the first record read there
    for topic, spans in ranges.items():
        reported = 0
        for n, record in enumerate(reader.read(topic, spans), start=1):
            first_kept.setdefault((topic, record.partition), record.timestamp_ms)
            if n % PROGRESS_EVERY == 0:
                on_progress(min(n, held[topic]) - reported)
                reported = min(n, held[topic])
            # An Avro string is its UTF-8 bytes: a record without them is not decoded.
            headers = dict(record.headers) if record.headers else {}
            if needle in (record.value or b"") or headers.get("source.invoice_id") == needle:
                read.record(record, headers, codec, invoice_id, told)
        on_progress(held[topic] - reported)  # transaction markers hold offsets too: the topic is read
    told.steps = read.told_in_order()
    told.deleted = _deleted(reader, ranges, first_kept, told.steps)
    return told


def _deleted(reader: TopicReader, ranges: dict[str, OffsetRanges], first_kept: dict[tuple[str, int], int],
             steps: list[Step]) -> list[str]:
    """Where retention may have deleted steps of the story: of the partitions its steps were read
    from, in every topic (a PO's work is on the same partition of each), those that start past
    offset 0 where the read began (a --since that begins a partition's read past its start asked
    for none of what it lost), and whose first record kept is later than the story began (its first
    receipt; without one, before its first step), or that keep none. Topics are deleted partition by
    partition, a segment at a time: a verdict could be gone where its receipt was kept, and an
    invoice whose early records were deleted started at `status: released`, told as the whole story.
    What retention deleted before the story began is none of it: after ten years of retention every
    partition starts past 0. A version whose every record is gone cannot be told from one never sent."""
    if not steps:
        return []
    received = [step.at for step in steps if step.what == "received"]
    began = min(received) if received else min(step.at for step in steps)
    began_ms = int(began.timestamp() * 1000) - (0 if received else 1)
    partitions = {step.partition for step in steps}
    return [f"records before offset {log_start} of {topic}[{partition}] are gone: retention"
            for topic, spans in ranges.items() for partition, log_start in sorted(reader.log_starts(topic).items())
            if partition in partitions and log_start > 0 and spans.get(partition, (0, 0))[0] <= log_start
            and first_kept.get((topic, partition), began_ms + 1) > began_ms]


def _where(topic: str, partition: int, offset: int) -> str:
    return f"{topic}[{partition}]@{offset}"


@dataclass
class _Read:
    """The steps as read, and what the pipeline's headers say of them: the records the runtime
    forwarded to their PO's partition (where each went), and the dead letters (why, by place)."""

    steps: list[tuple[Step, tuple | None]] = field(default_factory=list)  # with what a copy of it would repeat
    forwarded: dict[str, str] = field(default_factory=dict)  # where it was applied -> where it was
    refused: dict[str, tuple[Step, str]] = field(default_factory=dict)  # refused record's place -> dead letter, why

    def record(self, record: TopicRecord, headers: dict[str, bytes], codec: Codec, invoice_id: str,
               told: Story) -> None:
        where = _where(record.topic, record.partition, record.offset)
        try:
            message = codec.decode(record.value or b"")
        except Unavailable:  # the schema registry: an outage, not a gap in the story
            raise
        except Exception as error:
            named = headers.get("source.invoice_id") or _row_invoice_id(record.value if "error" in headers else None)
            if named is not None and named != invoice_id.encode():
                return  # a marketplace row of another invoice, whose id holds this one's
            if "error" not in headers or named is None:
                # It may be about the invoice: the auditor is told, and the story goes on.
                why = f"{_why(headers)} (the record from {_origin(headers)})" if "error" in headers else ""
                told.unreadable.append(f"{where}: {type(error).__name__}: {str(error)[:200]}{why and '; '}{why}")
                return
            message = None  # a marketplace row the pipeline could not read: told, with why
        if message is not None and getattr(message, "invoice_id", None) != invoice_id:
            return
        step, key = None, None
        if message is not None:
            try:
                what, summary, detail = describe(message)
            except Exception as error:
                told.unreadable.append(f"{where}: {type(error).__name__}: {str(error)[:200]}")
                return
            version = getattr(message, "invoice_version", None) or getattr(message, "version", 0)
            step = Step(record.recorded_at, record.topic, record.partition, record.offset, version, what, summary,
                        detail)
            key = _identity(message)
        if "error" in headers:  # a dead letter: its step is the one it refused (a row's is its own)
            self.refused[_origin(headers) if "source.topic" in headers else where] = (
                _dead(step, record, headers), _why(headers))
        elif step is not None:
            if (origin := headers.get(FORWARDED_FROM)) is not None:
                self.forwarded[where] = origin.decode(errors="replace")
            self.steps.append((step, key))

    def told_in_order(self) -> list[Step]:
        """Forwarded records told where they were applied; refused ones say so (a dead letter whose
        record is not in the story is told as a step of its own); then in order of time, a record
        seen again told as a copy of the first (a reprocess, a replay after a crash)."""
        steps: list[tuple[Step, tuple | None]] = []
        moved = set(self.forwarded.values())
        for step, key in self.steps:
            where = _where(step.topic, step.partition, step.offset)
            if where in moved:
                continue
            if (dead := self.refused.pop(where, None)) is not None:
                letter = dead[0]
                step = replace(step, summary=f"REFUSED, {dead[1]}: {step.summary}",
                               detail={**step.detail, "dead_letter": _where(letter.topic, letter.partition,
                                                                            letter.offset)})
                key = None  # not applied: a later copy of it is no copy of a step
            if (origin := self.forwarded.get(where)) is not None:
                step = replace(step, detail={**step.detail, "forwarded_from": origin})
            steps.append((step, key))
        steps += [(letter, None) for letter, _ in self.refused.values()]
        steps.sort(key=lambda pair: (pair[0].at, _ORDER.get(pair[0].what, 9)))
        once, told = set[tuple](), []
        for step, key in steps:
            if key is not None and key in once:
                step = replace(step, summary=f"again (a copy, applied once): {step.summary}")
            elif key is not None:
                once.add(key)
            told.append(step)
        return told


def _origin(headers: dict[str, bytes]) -> str:
    """Where a dead letter's record was: a topic's place, or the marketplace row it was read from."""
    if "source.topic" in headers:
        topic, partition, offset = (headers.get(f"source.{name}", b"?").decode(errors="replace")
                                    for name in ("topic", "partition", "offset"))
        return f"{topic}[{partition}]@{offset}"
    row = headers.get("source.invoice_id", b"").decode(errors="replace")
    return f"{headers.get('source.table', b'?').decode(errors='replace')} row {row}"  # polled: no topic


def _why(headers: dict[str, bytes]) -> str:
    text = {name: headers.get(name, b"").decode(errors="replace") for name in ("flow", "stage", "error")}
    return f"dead-lettered by {text['flow']} at {text['stage']}: {text['error']}"


def _dead(step: Step | None, record: TopicRecord, headers: dict[str, bytes]) -> Step:
    """The dead letter as a step of its own: the refused record's step, or its bytes' place."""
    summary = f"{_why(headers)} (the record from {_origin(headers)})"
    if step is not None:
        summary = f"{summary}: {step.summary}"
    return Step(record.recorded_at, record.topic, record.partition, record.offset,
                step.invoice_version if step is not None else _row_version(record.value), "dead letter", summary,
                step.detail if step is not None else {})


def _row(value: bytes | None) -> dict:
    """The marketplace row a dead letter holds: its columns as text (`UnreadableRow.raw`, polling),
    or a Debezium change event's row (`after`, or a delete's `before`); {} for none. Read as the
    ingest reads a record (`rules.limits.load_json`: no NaN or Infinity, at most the nesting it
    takes, no lone surrogate), of any size (it is read whole from the topic already, and one
    refused as too large is still its invoice's step): with json.loads, a version of 1e400 was an
    OverflowError, lines nested 100,000 deep a RecursionError, and explain stopped."""
    text = value or b""
    try:
        found = load_json(text, replace(Limits(), max_json_bytes=len(text)), "dead letter")
    except DataError:
        return {}
    if isinstance(found, dict) and isinstance(found.get("payload"), dict):  # a converter that keeps schemas
        found = found["payload"]
    if isinstance(found, dict) and ("after" in found or "before" in found):
        found = found.get("after") or found.get("before")
    return found if isinstance(found, dict) else {}


def _row_invoice_id(value: bytes | None) -> bytes | None:
    invoice_id = _row(value).get("invoice_id")
    return str(invoice_id).encode() if invoice_id is not None else None


def _row_version(value: bytes | None) -> int:
    """The version a marketplace row names (a JSON number, or a polled column's text), 0 if none.
    A whole number the topics carry, or none: int() of 1E+999999999 would make a billion digits."""
    version = _row(value).get("version")
    if isinstance(version, str) and re.fullmatch(r"[0-9]{1,10}", version.strip()):
        version = int(version)
    return version if type(version) is int and 1 <= version <= MAX_VERSION else 0


# Messages of one millisecond: causes before effects; one topic's messages keep their offset order.
_ORDER = {"received": 0, "withdrawn": 0, "replaced": 0, "release requested": 1, "dispatch approved": 1, "completion": 1,
          "verdict": 2, "status": 2, "rpa request": 3}


def describe(message) -> tuple[str, str, dict]:
    match message:
        case InvoiceSubmitted():
            doc = message.document if isinstance(message.document, dict) else {}
            lines = doc.get("lines")  # as the vendor sent it, valid or not
            count = f"{len(lines)} line(s)" if isinstance(lines, list) else "lines not a list"
            return "received", (f"version {message.version} from vendor {doc.get('vendor_id', '?')}, invoice number "
                                f"{doc.get('invoice_number', '?')}, total {doc.get('total_amount', '?')} "
                                f"{doc.get('currency', '')}, {count}, PO {message.po_number}"), {
                "document": message.document}
        case InvoiceWithdrawn():
            return "withdrawn", (f"version {message.version} deleted by the vendor in the marketplace, told to PO "
                                 f"{message.po_number}"), {}
        case InvoiceReplaced():
            return "replaced", (f"version {message.version} names PO {message.replaced_on} and replaces the "
                                f"versions on PO {message.po_number}"), {}
        case Verdict():
            reasons = "; ".join(f"{r.code}: {r.message}" for r in message.reasons) or "every rule passed"
            po = message.po_snapshot
            judged_against = (f"PO {po.po_number} ({po.status.value}, vendor {po.vendor_id}, {len(po.lines)} line(s))"
                              if po else _without_po(message))
            again = _judged_again(message)
            return "verdict", (f"{again + ': ' if again else ''}{message.status.value} (HTTP {message.http_status}) "
                               f"under rules {message.rules_version}, judged against {judged_against}: {reasons}"), {
                "judged_again": again, "judged_after": message.judged_after,
                "reasons": [r.model_dump(mode="json") for r in message.reasons],
                "po_snapshot": po.model_dump(mode="json") if po else None,
                "in_flight": {k: str(v) for k, v in (message.audit.in_flight if message.audit else {}).items()}}
        case StatusChanged():
            by = f" by {message.actor}" if message.actor else ""
            why = f": {message.reason}" if message.reason else ""
            sampro = f" as Sampro invoice {message.sampro_invoice_id}" if message.sampro_invoice_id else ""
            released = f"; holds released: {', '.join(message.holds)}" if message.holds else ""
            return "status", f"{message.status.value}{by}{sampro}{why}{released}", {
                "event_id": message.event_id, "holds": message.holds}
        case RpaRequest():
            return "rpa request", (f"hand-off {message.attempt} to the RPA bot: {len(message.payload.lines)} line(s), "
                                   f"total {message.payload.total_amount} {message.payload.currency}"), {
                "attempt": message.attempt, "payload": message.payload.model_dump(mode="json")}
        case RpaCompletion():
            # The bot may give no Sampro invoice number: "entered in Sampro as None" read as an entry of nothing.
            entered = (f"as {message.sampro_invoice_id}" if message.sampro_invoice_id
                       else "(the bot gave no Sampro invoice number)")
            result = (f"entered in Sampro {entered}" if message.outcome.value == "success"
                      else f"failed: {message.error}")
            return "completion", f"RPA bot reports version {message.invoice_version} {result}", {
                "event_id": message.event_id}
        case ReleaseRequested():
            # What the clerk asked for; the status step after it says what the release did, if anything.
            holds = ", ".join(message.holds) or "every hold it had"
            code = f" ({message.reason_code})" if message.reason_code else ""
            return ("release requested", f"{message.user} asked to release {holds}{code}: {message.reason}",
                    {"command_id": message.command_id, "holds": message.holds})
        case DispatchApproved():
            return "dispatch approved", f"{message.user} approved sending it to the RPA bot", {
                "command_id": message.command_id}
    return type(message).__name__, str(message), {}


def _identity(message: object) -> tuple | None:
    """What a message is the same step as when it comes again: its event id, its hand-off, its
    command; the vendor's upload, delete or move of a version by what it says, not when (the ingest
    delivers a record again after a crash, a Debezium event without its time read as now). A delete
    the PO agent tells the PO of an older version names that PO: another step than the delete."""
    match message:
        case InvoiceSubmitted():
            return "received", message.invoice_id, message.version, message.po_number, json.dumps(
                message.document, sort_keys=True, default=str)
        case InvoiceWithdrawn():
            return "withdrawn", message.invoice_id, message.version, message.po_number
        case InvoiceReplaced():
            return "replaced", message.invoice_id, message.version, message.po_number, message.replaced_on
        case StatusChanged() | RpaCompletion():
            return type(message).__name__, message.event_id
        case RpaRequest():
            return "hand-off", message.invoice_id, message.invoice_version, message.attempt
        case Verdict():
            return "verdict", *verdict_identity(message)
        case ReleaseRequested() | DispatchApproved():
            return type(message).__name__, message.command_id
    return None


def _judged_again(verdict: Verdict) -> str | None:
    """What the verdict was given again after, in words, as rules.po_ledger names it in `judged_after`:
    without it, a clerk read manual_review, then ready_to_process, and nothing said what came between."""
    after = verdict.judged_after
    if after is None:
        return None
    own = f"{verdict.invoice_id}:v{verdict.invoice_version}:"
    if after.startswith((own, f"verdict:{own}")):  # its last event: released or approved, then held anew
        return "judged again at its turn at the RPA bot"
    if after.startswith(FREED_BY):  # the invoice that held its PO left it without an entry in Sampro
        return f"judged again when {after.removeprefix(FREED_BY)} freed its PO, nothing entered in Sampro"
    if after.startswith("rules:"):  # a reprocess after a change of rules: the verdict it follows
        rules, _, given = after.removeprefix("rules:").rpartition("@")
        return (f"judged again under rules {verdict.rules_version} "
                f"(its verdict before was under rules {rules}, given {given})")
    return f"judged again after Sampro change {after}"


def _without_po(verdict: Verdict) -> str:
    """A verdict has no PO snapshot when Sampro had none, or gave one it could not read, and when
    the pipeline could not judge the invoice at all: only the first two are Sampro's answer."""
    if any(f.code == "PO_NOT_FOUND" and "cannot be read" in f.message for f in verdict.reasons):
        return "no PO (Sampro has it, but could not give it)"
    if any(finding.code == "PO_NOT_FOUND" for finding in verdict.reasons):
        return "no PO (Sampro gave none)"
    return "no PO (not judged against one)"
