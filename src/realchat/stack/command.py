"""`realchat stack`: bring the local stack up (held in the foreground, or detached), down, reset;
its status and environment; start or signal one component."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from dataclasses import asdict

from realchat.config import Settings
from realchat.stack.shape import SHAPE_FIELDS
from realchat.stack.state import saved_shape, with_saved_shape
from realchat.stack.supervisor import Stack, StackError

Reporter = Callable[[str], None]


def stack_for(settings: Settings, args: argparse.Namespace, report: Reporter = print) -> Stack:
    """The stack the command acts on: its shape comes from the flags, else from what its last
    `up` recorded (so `status`, `kill`, `start`, `down` see every component), else settings."""
    flags = {
        name: value for name in SHAPE_FIELDS if (value := getattr(args, name, None)) is not None
    }
    recorded = saved_shape(settings.stack.state_dir)
    if args.action == "up" and recorded:
        _refuse_another_shape(settings, recorded, flags)
    return Stack(with_saved_shape(settings, flags), report=report)


def _refuse_another_shape(
    settings: Settings, recorded: dict[str, int], flags: dict[str, int]
) -> None:
    """`up` with flags that contradict a stack still running would mix two shapes."""
    conflicts = {k: v for k, v in flags.items() if recorded.get(k, v) != v}
    if conflicts and Stack(settings).any_running():
        was = ", ".join(f"--{k.replace('_', '-')} {recorded[k]}" for k in conflicts)
        raise StackError(
            f"the stack in {settings.stack.state_dir} runs with {was}; "
            "stop it with `realchat stack down` before changing its shape"
        )


async def _up(stack: Stack, detach: bool, report: Reporter) -> int:
    """Bring the stack up; in the foreground, hold it until Ctrl-C (even one during start-up)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(stack.up())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        report("interrupted while starting; stopping what was started ...")
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StackError):
            await starting
        await stack.down()
        return 130
    stopping.cancel()
    if (error := starting.exception()) is not None:
        report(f"error: {error}")
        report("stopping what was started ...")
        await stack.down()
        return 1
    report("")
    report("RealChat stack is up:")
    for status in await stack.status():
        report(f"  {status.name:<17} {status.address:<22} pid {status.pid}")
    report(f"  logs and data in {stack.state_dir}")
    if "postgres" in stack.include and stack.postgres.in_fallback:
        report(
            f"  PostgreSQL data in {stack.postgres.data_dir} (the postgres user cannot enter "
            f"{stack.state_dir}); `realchat stack reset` deletes it"
        )
    if "gateway" in stack.include:
        http = stack.app_settings.http
        report(f"  chat in a browser: http://{http.host}:{http.port}/")
    report("  environment for RealChat processes: `realchat stack env`")
    if detach:
        report("detached; stop it with `realchat stack down`")
        return 0
    report("press Ctrl-C to stop everything")
    await stack.watch(stop)
    report("stopping ...")
    await stack.down()
    report("stopped; nothing left running")
    return 0


async def _status(stack: Stack, as_json: bool, report: Reporter) -> int:
    statuses = await stack.status()
    if as_json:
        print(json.dumps([asdict(s) for s in statuses], indent=2))
    else:
        for s in statuses:
            state = "healthy" if s.healthy else ("UNHEALTHY" if s.running else "stopped")
            report(f"{s.name:<10} {state:<10} {s.address:<22} pid {s.pid or '-':<8} {s.detail}")
    return 0 if statuses and all(s.healthy for s in statuses) else 1


def stack_command(settings: Settings, args: argparse.Namespace, report: Reporter) -> int:
    """`realchat stack <action>`."""
    stack = stack_for(settings, args, report)
    action = args.action
    if action == "up":
        return asyncio.run(_up(stack, args.detach, report))
    if action == "down":
        asyncio.run(stack.down())
        return 0
    if action == "reset":
        try:
            asyncio.run(stack.reset())
        except RuntimeError as exc:
            raise StackError(str(exc)) from exc
        return 0
    if action == "status":
        return asyncio.run(_status(stack, args.json, report))
    if action == "env":
        for key, value in stack.environment().items():
            print(f"export {key}='{value}'")
        return 0
    if action == "start":
        asyncio.run(stack.start_component(args.name))
        return 0
    if action == "kill":
        asyncio.run(stack.kill_component(args.name, signal.Signals[f"SIG{args.signal.upper()}"]))
        return 0
    raise AssertionError(action)
