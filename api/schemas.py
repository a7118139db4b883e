"""What the API takes and answers, beside the read model's views; these make the OpenAPI document."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from connectors.scheduler.read_model import REASON_CODES, InvoiceDetail
from rules.lifecycle import MAX_HOLDS_NAMED, InvoiceStatus
from rules.models import CompletionOutcome, Verdict, VerdictAudit, VersionNumber

ReasonCode = StrEnum("ReasonCode", {code: code for code in REASON_CODES})
# PostgreSQL text cannot hold NUL: refused here rather than by the database (or the worker's sink).
NO_NUL = r"^[^\x00]*$"
# Not blank and no NUL, said in the OpenAPI document too. The blanks are spelled out: `\s` means
# other characters in the server's regex dialect than in a client's (ECMAScript, for JSON Schema).
BLANKS = " \t\n\r\f\v"
NOT_BLANK = r"^[^\x00]*[^ \t\n\r\f\v\x00][^\x00]*$"
Text = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NOT_BLANK)]


def _json_whole_number(value: object) -> object:
    """A JSON whole number, 1.0 included as JSON Schema has it; not true or "1", which pydantic takes."""
    if isinstance(value, bool | str):
        raise ValueError("expected a whole number")
    return value


# As the topics' records hold it (rules.models): a larger one would be refused there, after the
# API had answered.
Version = Annotated[VersionNumber, BeforeValidator(_json_whole_number)]


# Characters that show nothing, or only a space, where a Sampro invoice id is read: the controls,
# a non-breaking or other space, a soft hyphen, Arabic and Syriac format marks, the Hangul and
# Khmer fillers, the Mongolian and other variation selectors, the zero-width characters, bidi marks
# and isolates, a word joiner, the braille blank, the interlinear annotation marks, a byte-order
# mark, private use; and past U+FFFF the musical format marks, the tags and their variation
# selectors, and private use, written as the characters themselves (JSON Schema's regex dialect
# reads no \U escape, Python's no \u{...}). Written out range by range: a pattern made of every
# character of Unicode's categories (surrogates among them) was read otherwise by the OpenAPI
# tools, and schemathesis sent ids the API refused as ids the document allowed.
_HIDDEN = (r"\x00-\x1f\x7f-\xa0\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u115f\u1160\u1680\u17b4\u17b5"
           r"\u180b-\u180f\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u2800\u3000\u3164\ue000-\uf8ff"
           r"\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"
           "\U0001d173-\U0001d17a\U000e0000-\U000e007f\U000e0100-\U000e01ef\U000f0000-\U0010ffff")
_HIDDEN_CHARACTER = re.compile(f"[{_HIDDEN}]")
# As the OpenAPI document states it, for a client to check: blanks around it, none of _HIDDEN in it.
# The validator reads the same ranges, so that the two agree on every character.
_SAMPRO_INVOICE_ID = rf"^[ \t\n\r\f\v]*[^ {_HIDDEN}](?:[^{_HIDDEN}]*[^ {_HIDDEN}])?[ \t\n\r\f\v]*$"


def _sampro_invoice_id(value: str) -> str:
    """Without the blanks around it, as a reason is kept: taken as sent, "S-1 " was recorded, and the
    bot's report again as "S-1" was a second entry, one of two for AP to reverse where Sampro held
    one. A control or invisible character left in it (a zero-width space, a soft hyphen, a bidi
    mark, a line break) is refused by name: "\u200bS-1" was another Sampro invoice than S-1 to
    every comparison, and the same one to whoever read it."""
    value = value.strip(BLANKS)
    if not value:
        raise ValueError("blank")
    if (hidden := _HIDDEN_CHARACTER.search(value)) is not None:
        raise ValueError(f"contains U+{ord(hidden.group()):04X}, a control or invisible character, which no Sampro "
                         "invoice id has")
    return value


# The pattern is the document's; the validator names the character it refuses.
SamproInvoiceId = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_sampro_invoice_id),
                            Field(json_schema_extra={"pattern": _SAMPRO_INVOICE_ID})]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


HoldId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Z_]+:[0-9]*:[^\x00]*$")]


class ReleaseRequest(_Body):
    invoice_version: Version = Field(description="The version AP looked at; only the newest may be released.")
    reason: Text = Field(description="The clerk's comment: why these holds may be released; kept in the history.")
    holds: list[HoldId] = Field(default=[], max_length=MAX_HOLDS_NAMED, description=(
        "The holds released (`holds[].id` of the invoice); an rpa_failed invoice's failure is RPA_FAILED::. "
        "None named: every hold a clerk may release as the API shows it then (the failure, for an rpa_failed "
        "invoice). The invoice goes on to the RPA bot once no hold is left."))
    # OTHER, when none is given, must be configured too (the API refuses it naming the field, and
    # the OpenAPI document then lists the field as required).
    reason_code: str = Field(default="OTHER", min_length=1, max_length=64,
                             description="One of the configured release reason codes (RELEASE_REASON_CODES).")
    seen: dict[HoldId, Text] = Field(default={}, max_length=MAX_HOLDS_NAMED, description=(
        "The holds as the clerk saw them: `holds[].id` to its `holds[].message`, and RPA_FAILED:: to the "
        "invoice's `failure`. One that reads otherwise now (judged again after a change in Sampro: the PO's "
        "price cut since; a failure released by another clerk and failed again with another error) is a 409, not "
        "released unseen; one that changed before processscheduler showed it is not released when the worker "
        "takes the command, and its history says so. A hold or failure left out is taken as the API shows it."),
        json_schema_extra={"additionalProperties": False})  # keys are hold ids: patternProperties alone allows others


class DispatchRequest(_Body):
    invoice_version: Version


ATTEMPT = ("The email's X-Invoice-Attempt header: which hand-off of this version the bot acted on. Without it, "
           "the last one processscheduler shows is taken, and a report sent again after AP's release is taken "
           "for the new hand-off's.")


class RpaSuccess(_Body):
    invoice_version: Version = Field(description="The invoice_version of the RPA payload the bot entered.")
    sampro_invoice_id: SamproInvoiceId = Field(description=(
        "The id Sampro gave the invoice the bot entered; blanks around it are dropped, and one with a control or "
        "invisible character in it (a zero-width space, a soft hyphen, a line break) is refused."))
    attempt: Version | None = Field(None, description=ATTEMPT)


class RpaFailure(_Body):
    invoice_version: Version = Field(description="The invoice_version of the RPA payload the bot tried.")
    error: Text = Field(description="What went wrong in Sampro, for AP to read.")
    attempt: Version | None = Field(None, description=ATTEMPT)


class CommandAccepted(BaseModel):
    command_id: str
    invoice_id: str
    invoice_version: int
    po_number: str
    detail: str


class CallbackAccepted(BaseModel):
    event_id: str
    invoice_id: str
    invoice_version: int
    outcome: CompletionOutcome
    already_recorded: bool
    detail: str


class VerdictAnswer(Verdict):
    """The verdict as DESIGN §3 has it; the audit trail kept for replays stays on the topic."""

    audit: SkipJsonSchema[VerdictAudit | None] = Field(default=None, exclude=True)


class Problem(BaseModel):
    detail: str


class Conflict(Problem):
    current_status: InvoiceStatus


class FieldError(BaseModel):
    field: str
    value: Any = None
    message: str


class ValidationProblem(Problem):
    errors: list[FieldError] = Field(description="The first 20 errors, each field's name and value cut at 200 "
                                                 "characters.")
    errors_not_listed: int = Field(0, description="How many more errors the request had.")


class Me(BaseModel):
    name: str
    role: str


class ComparedField(BaseModel):
    field: str
    invoice: str | None
    purchase_order: str | None
    findings: list[str] = Field(description="Codes of the findings on this field; empty when it matches.")


class ComparedLine(BaseModel):
    line_no: int
    po_line_no: int | None  # the first of `po_line_nos`
    po_line_nos: list[int] = Field(default_factory=list)  # each its quantity went to: several where one had no room
    fields: list[ComparedField]


class Comparison(BaseModel):
    """The invoice beside its PO: every invoice line with the PO line it was matched to; the
    fields with findings carry their codes."""

    header: list[ComparedField]
    lines: list[ComparedLine]


class HoldView(BaseModel):
    """One finding of a held invoice as a hold: who released it, if anyone, and whether a clerk may."""

    id: str
    code: str
    line_no: int | None
    field: str | None
    message: str
    releasable: bool
    cleared_by: str | None = Field(default=None, description=(
        "Who clears a hold a clerk may not release (`releasable` false, as the API's rule table says, whatever "
        "rules judged the invoice): the vendor, or the buyer in Sampro; null for one a clerk may release."))
    released_by: str | None = None
    released_at: datetime | None = None
    release_reason: str | None = None


class InvoiceView(InvoiceDetail):
    comparison: Comparison
    holds: list[HoldView]
    failure: str | None = Field(default=None, description=(
        "An rpa_failed invoice's failure: the RPA bot's error of the hand-off it failed. A release of it names "
        "RPA_FAILED:: in `holds`, and this in `seen`; null otherwise."))
    release_reason_codes: list[str]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str] = Field(description="`ok` or `down` per dependency; why is in the API's log")
    down_since: dict[str, datetime] = Field(default_factory=dict, description="When each dependency that is down "
                                                                              "stopped answering")
