"""The agents and sinks, one module per flow, each a few lines on the runtime: decode, call the
domain or the adapter, emit."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline


def register_all(pipeline: Pipeline) -> None:
    from agents import ingest, purchase_orders, rpa_mail, sampro_changes, scheduler_sink

    # In a tick, processscheduler records the verdicts read before the PO agent decides: the duplicate
    # checks read processscheduler (streams/recently_decided.py).
    for flow in (ingest, sampro_changes, scheduler_sink, purchase_orders, rpa_mail):
        flow.register(pipeline)
