"""The send batch's plan on real PostgreSQL. The chat service's connections keep one generic plan
per statement for their whole life, made at its first run. Made on a fresh database (or right
after a TRUNCATE), when every table looks empty, it must still read each table by index: a scan
of the whole table would grow with every message written after it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from realchat.chat.store import SESSION_SETTINGS, batch_statement
from realchat.events.topics import MESSAGE_CREATED

pytestmark = pytest.mark.asyncio(loop_scope="session")

PARAMETER_TYPES = "uuid[], uuid[], text[], text[], int[], jsonb[], text"
TABLES = {"messages", "conversations", "conversation_members"}


def scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a JSON plan that reads one of the tables the statement touches."""
    if plan.get("Relation Name") in TABLES and "Scan" in plan["Node Type"]:
        yield plan
    for child in plan.get("Plans", []):
        yield from scans(child)


@pytest.mark.parametrize("one_conversation", [True, False])
async def test_a_plan_made_on_empty_tables_reads_every_table_by_index(
    db_dsn: str, one_conversation: bool
) -> None:
    sender, conversation = uuid.uuid4(), uuid.uuid4()
    conn = await asyncpg.connect(db_dsn, server_settings=SESSION_SETTINGS)
    try:
        await conn.execute(
            "INSERT INTO conversations (id, created_by) VALUES ($1, $2);",
            conversation,
            sender,
        )
        await conn.execute(
            "INSERT INTO conversation_members (conversation_id, user_id) VALUES ($1, $2)",
            conversation,
            sender,
        )
        statement = batch_statement(one_conversation=one_conversation)
        await conn.execute(f"PREPARE send_batch ({PARAMETER_TYPES}) AS {statement}")

        async def arguments() -> str:
            literals = await conn.fetchrow(
                "SELECT format('%L', $1::uuid[]), format('%L', $2::uuid[]), "
                "format('%L', $3::text[]), format('%L', $4::text[]), format('%L', $5::int[]), "
                "format('%L', $6::jsonb[]), format('%L', $7::text)",
                [conversation],
                [sender],
                ["hello"],
                [uuid.uuid4().hex],
                [0],
                ["{}"],
                MESSAGE_CREATED,
            )
            assert literals is not None
            return ", ".join(literals.values())

        # The first run makes the plan (on tables that hold nothing yet) and writes a message.
        written = await conn.fetch(f"EXECUTE send_batch ({await arguments()})")
        assert [(row["seq"], row["created"]) for row in written] == [(1, True)]
        explained = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) EXECUTE send_batch ({await arguments()})"
        )
    finally:
        await conn.close()
    nodes = list(scans(json.loads(explained)[0]["Plan"]))
    assert {node["Relation Name"] for node in nodes} == TABLES
    whole_reads = [
        f"{node['Node Type']} on {node['Relation Name']}"
        for node in nodes
        if "Index Cond" not in node
    ]
    assert whole_reads == [], "the kept plan reads a whole table for every batch"
