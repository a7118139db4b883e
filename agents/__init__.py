"""Thin Faust agents, one module per flow: decode, call the domain, emit."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline


def register_all(pipeline: Pipeline) -> None:
    from agents import ingest, purchase_orders, rpa_mail, scheduler_sink

    for flow in (ingest, purchase_orders, scheduler_sink, rpa_mail):
        flow.register(pipeline)
