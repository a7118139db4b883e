"""Handing ready invoices to the RPA bot's mailbox, at most once per hand-off of an invoice version."""

from connectors.rpa_mail.memory import InMemoryRpaMailer, InMemorySentLog
from connectors.rpa_mail.message import build_message, message_id
from connectors.rpa_mail.smtp import SmtpRpaMailer, SqlSentLog

__all__ = ["InMemoryRpaMailer", "InMemorySentLog", "SmtpRpaMailer", "SqlSentLog", "build_message", "message_id"]
