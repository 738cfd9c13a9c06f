"""The operator's view of dead letters: list, show, replay (`realchat dead-letters ...`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict

from realchat.config import Settings
from realchat.outbox import store
from realchat.outbox.rows import DeadLetter
from realchat.storage.pool import create_pool


def _summary(d: DeadLetter) -> dict[str, object]:
    row = asdict(d)
    row.pop("payload")
    row["payload_bytes"] = len(d.payload)
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


async def dead_letters_command(
    settings: Settings, args: argparse.Namespace, say: Callable[[str], None]
) -> int:
    pool = await create_pool(settings.database, "realchat-dead-letters")
    try:
        if args.action == "list":
            letters = await store.list_dead_letters(pool, include_replayed=args.all)
            if args.json:
                say(json.dumps([_summary(d) for d in letters], indent=2))
            for d in [] if args.json else letters:
                replayed = f" replayed {d.replayed_at.isoformat()}" if d.replayed_at else ""
                say(
                    f"{d.id:>6}  {d.event_type}  key={d.partition_key}  "
                    f"{len(d.payload)} bytes  {d.error}{replayed}"
                )
            return 0
        if args.action == "show":
            letter = await store.get_dead_letter(pool, args.id)
            if letter is None:
                say(f"no dead letter {args.id}")
                return 1
            shown = _summary(letter)
            shown["payload"] = letter.payload.decode("utf-8", errors="replace")
            say(json.dumps(shown, indent=2))
            return 0
        if args.action == "replay":
            ids = args.ids
            if args.all:
                ids = [d.id for d in await store.list_dead_letters(pool, False)]
            if not ids:
                say("nothing to replay (give ids or --all)")
                return 1
            failed = 0
            for dead_letter_id in ids:
                outbox_id = await store.replay_dead_letter(pool, dead_letter_id)
                if outbox_id is None:
                    say(f"{dead_letter_id}: no such dead letter, or already replayed")
                    failed += 1
                else:
                    say(f"{dead_letter_id}: back in the outbox as event {outbox_id}")
            return 1 if failed else 0
        raise AssertionError(args.action)
    finally:
        await pool.close()
