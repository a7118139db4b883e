"""Audit from the topics: replay verdicts under today's rules, explain one invoice, reprocess.

Reads Kafka through `connectors.topic_reader` and judges with `rules`; never touches Sampro,
processscheduler or the live pipeline's offsets (reprocess moves them, on purpose and only
while no worker runs).
"""
