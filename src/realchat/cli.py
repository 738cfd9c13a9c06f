"""The `realchat` command: subcommands are wired here, their work lives in the packages."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from realchat.config import PLACEHOLDER_SECRET, Settings, load_settings, placeholder_secrets
from realchat.stack.shape import SHAPE_FIELDS
from realchat.stack.state import saved_shape, with_saved_shape
from realchat.stack.supervisor import Stack, StackError

ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]
SERVICE_COMMANDS = (
    "chat-service",
    "outbox-publisher",
    "auth-service",
    "gateway",
    "presence",
    "notifier",
)


def _say(line: str) -> None:
    print(line, flush=True)


def _stack(settings: Settings, args: argparse.Namespace) -> Stack:
    """The stack the command acts on: its shape comes from the flags, else from what its last
    `up` recorded (so `status`, `kill`, `start`, `down` see every component), else settings."""
    flags = {
        name: value for name in SHAPE_FIELDS if (value := getattr(args, name, None)) is not None
    }
    recorded = saved_shape(settings.stack.state_dir)
    if args.action == "up" and recorded:
        _refuse_another_shape(settings, recorded, flags)
    return Stack(with_saved_shape(settings, flags), report=_say)


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


async def _up(stack: Stack, detach: bool) -> int:
    """Bring the stack up; in the foreground, hold it until Ctrl-C (even one during start-up)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(stack.up())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        _say("interrupted while starting; stopping what was started ...")
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StackError):
            await starting
        await stack.down()
        return 130
    stopping.cancel()
    if (error := starting.exception()) is not None:
        _say(f"error: {error}")
        _say("stopping what was started ...")
        await stack.down()
        return 1
    _say("")
    _say("RealChat stack is up:")
    for status in await stack.status():
        _say(f"  {status.name:<17} {status.address:<22} pid {status.pid}")
    _say(f"  logs and data in {stack.state_dir}")
    if "postgres" in stack.include and stack.postgres.in_fallback:
        _say(
            f"  PostgreSQL data in {stack.postgres.data_dir} (the postgres user cannot enter "
            f"{stack.state_dir}); `realchat stack reset` deletes it"
        )
    if "gateway" in stack.include:
        http = stack.app_settings.http
        _say(f"  chat in a browser: http://{http.host}:{http.port}/")
    _say("  environment for RealChat processes: `realchat stack env`")
    if detach:
        _say("detached; stop it with `realchat stack down`")
        return 0
    _say("press Ctrl-C to stop everything")
    await stack.watch(stop)
    _say("stopping ...")
    await stack.down()
    _say("stopped; nothing left running")
    return 0


async def _status(stack: Stack, as_json: bool) -> int:
    statuses = await stack.status()
    if as_json:
        print(json.dumps([asdict(s) for s in statuses], indent=2))
    else:
        for s in statuses:
            state = "healthy" if s.healthy else ("UNHEALTHY" if s.running else "stopped")
            _say(f"{s.name:<10} {state:<10} {s.address:<22} pid {s.pid or '-':<8} {s.detail}")
    return 0 if statuses and all(s.healthy for s in statuses) else 1


def _stack_command(settings: Settings, args: argparse.Namespace) -> int:
    stack = _stack(settings, args)
    action = args.action
    if action == "up":
        return asyncio.run(_up(stack, args.detach))
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
        return asyncio.run(_status(stack, args.json))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realchat", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="run the local stack (PostgreSQL, Redis, Kafka)")
    actions = stack.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start everything and wait until it is ready")
    up.add_argument("--detach", action="store_true", help="return once ready, leave it running")
    up.add_argument("--kafka-nodes", type=int, choices=(1, 3), help="Kafka KRaft nodes")
    up.add_argument(
        "--gateways", type=int, help="gateway instances (default: one per core; >1 adds HAProxy)"
    )
    up.add_argument("--publishers", type=int, help="outbox publisher replicas (default 1)")
    down = actions.add_parser("down", help="stop everything the stack started")
    down.add_argument("--kafka-nodes", type=int, choices=(1, 3))
    down.add_argument("--gateways", type=int)
    down.add_argument("--publishers", type=int)
    reset = actions.add_parser(
        "reset", help="stop everything and delete all its data (PostgreSQL's included)"
    )
    reset.add_argument("--kafka-nodes", type=int, choices=(1, 3))
    reset.add_argument("--gateways", type=int)
    reset.add_argument("--publishers", type=int)
    status = actions.add_parser("status", help="each component: pid, address, health")
    status.add_argument("--json", action="store_true")
    status.add_argument("--kafka-nodes", type=int, choices=(1, 3))
    status.add_argument("--gateways", type=int)
    status.add_argument("--publishers", type=int)
    actions.add_parser("env", help="print the REALCHAT_* variables that reach this stack")
    start = actions.add_parser("start", help="(re)start one component, e.g. after `kill`")
    start.add_argument("name")
    start.add_argument("--kafka-nodes", type=int, choices=(1, 3))
    start.add_argument("--gateways", type=int)
    start.add_argument("--publishers", type=int)
    kill = actions.add_parser("kill", help="failure injection: signal one component")
    kill.add_argument("name")
    kill.add_argument("--signal", default="KILL", choices=("KILL", "TERM", "STOP", "CONT"))
    kill.add_argument("--kafka-nodes", type=int, choices=(1, 3))
    kill.add_argument("--gateways", type=int)
    kill.add_argument("--publishers", type=int)
    commands.add_parser("chat-service", help="run the chat service (gRPC)")
    commands.add_parser("outbox-publisher", help="run an outbox publisher replica")
    commands.add_parser("auth-service", help="run the auth service (accounts, tokens)")
    commands.add_parser("gateway", help="run a gateway instance (REST + WebSocket)")
    commands.add_parser("presence", help="run a presence service replica (online/offline events)")
    commands.add_parser("notifier", help="run a push notifier replica (webhook for offline users)")
    chat = commands.add_parser("chat", help="chat in a terminal (prompts for what is not given)")
    chat.add_argument("--url", help="the API's base URL (default: this stack's)")
    chat.add_argument("--username")
    chat.add_argument(
        "--password",
        help="visible to other users in the process list: prefer $REALCHAT_PASSWORD or the prompt",
    )
    chat.add_argument("--conversation", help="a conversation id (default: pick from a list)")

    commands.add_parser("migrate", help="apply pending database migrations (idempotent)")
    topics = commands.add_parser("topics", help="RealChat's Kafka topics")
    topics_actions = topics.add_subparsers(dest="action", required=True)
    topics_actions.add_parser("create", help="create missing topics, check existing ones")

    dead = commands.add_parser("dead-letters", help="list, inspect and replay dead letters")
    dead_actions = dead.add_subparsers(dest="action", required=True)
    listing = dead_actions.add_parser("list", help="dead letters not yet replayed")
    listing.add_argument("--all", action="store_true", help="include replayed ones")
    listing.add_argument("--json", action="store_true")
    show = dead_actions.add_parser("show", help="one dead letter with its payload")
    show.add_argument("id", type=int)
    replay = dead_actions.add_parser("replay", help="put dead letters back in the outbox")
    replay.add_argument("ids", type=int, nargs="*")
    replay.add_argument("--all", action="store_true", help="every dead letter not yet replayed")

    users = commands.add_parser("users", help="operator tools for accounts")
    users_actions = users.add_subparsers(dest="action", required=True)
    create = users_actions.add_parser(
        "create",
        help="accounts <prefix>_0 .. <prefix>_<count-1> in bulk, one password hash for all "
        "(password from $REALCHAT_PROVISION_PASSWORD); prints JSON lines",
    )
    create.add_argument("--prefix", required=True)
    create.add_argument("--count", type=int, required=True)
    tokens = commands.add_parser("tokens", help="operator tools for access tokens")
    tokens_actions = tokens.add_subparsers(dest="action", required=True)
    tokens_actions.add_parser(
        "mint",
        help="access tokens signed with REALCHAT_AUTH__PRIVATE_KEY_FILE for the user ids on "
        "stdin (bare or `users create` output); prints JSON lines",
    )

    bench = commands.add_parser("bench", help="benchmarks against the running dev stack")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True)
    write = benchmarks.add_parser("write", help="SendMessage throughput/latency vs pgbench")
    write.add_argument("--seconds", type=float, default=15.0, help="measured seconds per path")
    write.add_argument("--concurrency", type=int, default=64, help="concurrent callers")
    write.add_argument("--output", type=Path, default=Path("reports/bench-write.json"))
    latency = benchmarks.add_parser(
        "latency", help="a 1:1 message on the idle stack: send to delivery, stage by stage"
    )
    latency.add_argument("--messages", type=int, default=200, help="measured messages")
    latency.add_argument("--rate", type=float, default=5.0, help="messages per second")
    latency.add_argument("--warmup", type=int, default=10, help="messages sent first, not counted")
    latency.add_argument("--entry", choices=("haproxy", "direct"), default="haproxy")
    latency.add_argument("--output", type=Path, default=Path("reports/bench-latency.json"))
    dispatch = benchmarks.add_parser(
        "dispatch", help="gateway cost per consumed event (broadcast consumption)"
    )
    dispatch.add_argument("--events", type=int, default=100_000)
    dispatch.add_argument("--connections", type=int, default=10_000)
    dispatch.add_argument(
        "--fanout", type=int, default=1000, help="subscribers of the fan-out scenario"
    )
    dispatch.add_argument("--output", type=Path, default=Path("reports/bench-dispatch.json"))
    idle = benchmarks.add_parser("idle", help="gateway memory per idle WebSocket connection")
    idle.add_argument("--connections", type=int, default=10_000)
    idle.add_argument("--step", type=int, default=2_500)
    idle.add_argument("--settle-s", type=float, default=5.0)
    idle.add_argument("--port", type=int, default=18999, help="the measured gateway's port")
    idle.add_argument("--output", type=Path, default=Path("reports/bench-idle.json"))

    idle_stack = benchmarks.add_parser(
        "idle-stack", help="idle connections held by the running stack's gateways (100k)"
    )
    idle_stack.add_argument("--connections", type=int, default=100_000)
    idle_stack.add_argument("--steps", type=int, default=5)
    idle_stack.add_argument("--settle-s", type=float, default=25.0)
    idle_stack.add_argument("--idle-cpu-s", type=float, default=30.0)
    idle_stack.add_argument("--workers", type=int, default=8, help="client worker processes")
    idle_stack.add_argument("--users", type=int, default=20)
    idle_stack.add_argument(
        "--no-restart", action="store_true", help="measure on the running gateways"
    )
    idle_stack.add_argument("--output", type=Path, default=Path("reports/bench-idle-stack.json"))
    fanout = benchmarks.add_parser(
        "fanout", help="one channel's fan-out and idle connections, RealChat beside Centrifugo"
    )
    fanout.add_argument("--seconds", type=float, default=30.0, help="publishing seconds per rate")
    fanout.add_argument(
        "--rates", default="10,50", help="messages/s to publish, comma-separated (default 10,50)"
    )
    fanout.add_argument("--subscribers", type=int, default=1000)
    fanout.add_argument(
        "--users", type=int, default=10, help="accounts the connections are spread over"
    )
    fanout.add_argument(
        "--entries", default="direct,haproxy", help="RealChat: clients to gateways and/or HAProxy"
    )
    fanout.add_argument("--idle-connections", type=int, default=10_000)
    fanout.add_argument("--idle-steps", type=int, default=4)
    fanout.add_argument("--idle-settle", type=float, default=30.0, help="seconds after each step")
    fanout.add_argument("--idle-entry", choices=("direct", "haproxy"), default="direct")
    fanout.add_argument("--workers", type=int, default=2, help="client worker processes")
    fanout.add_argument(
        "--no-restart", action="store_true", help="measure idle memory on the running gateways"
    )
    fanout.add_argument(
        "--servers", default="centrifugo,realchat", help="which servers, comma-separated"
    )
    fanout.add_argument("--skip-idle", action="store_true")
    fanout.add_argument("--skip-fanout", action="store_true")
    fanout.add_argument("--output", type=Path, default=Path("reports/bench-fanout.json"))
    load = commands.add_parser("loadtest", help="WebSocket load test against a running stack")
    load.add_argument(
        "--scenario", default="plan", choices=("plan", "ramp", "idle", "soak", "smoke")
    )
    load.add_argument("--url", help="the public entrypoint (default: this stack's)")
    load.add_argument(
        "--direct", action="store_true", help="WebSockets straight to the gateways, not HAProxy"
    )
    load.add_argument("--connections", type=int)
    load.add_argument("--devices-per-user", type=int)
    load.add_argument("--conversations-per-user", type=int)
    load.add_argument("--group-share", type=float, help="share of group conversations")
    load.add_argument("--group-size", type=int)
    load.add_argument("--rate", type=float, help="target messages per second (open loop)")
    load.add_argument("--duration", type=float, dest="duration_s", help="seconds of sending")
    load.add_argument("--slow-share", type=float, help="share of slow/stalling readers")
    load.add_argument("--churn", type=float, dest="churn_per_min", help="reconnects/connection/min")
    load.add_argument("--workers", type=int, help="load generator processes")
    load.add_argument("--register-concurrency", type=int)
    load.add_argument(
        "--register-over-rest",
        action="store_true",
        default=None,
        help="sign every user up and in through the API, even beside the stack (default: "
        "provision in bulk with the stack's database and signing key, reuse across runs)",
    )
    load.add_argument("--ramp-start", type=float)
    load.add_argument("--ramp-step", type=float)
    load.add_argument("--ramp-step-s", type=float)
    load.add_argument("--ramp-max", type=float)
    load.add_argument("--output-dir", type=Path)
    load.add_argument("--name", help="report file stem (default: the scenario)")
    chaos = commands.add_parser(
        "chaos", help="failure injection under traffic, judged by the invariant checker"
    )
    chaos.add_argument(
        "--faults", help="comma-separated subset (default: all, in order)", default=None
    )
    chaos.add_argument("--short", action="store_true", help="short settle times (CI)")
    chaos.add_argument(
        "--rounds", type=int, default=1, help="apply each fault this many times, in random order"
    )
    chaos.add_argument("--seed", type=int, default=1, help="the random order's seed")
    chaos.add_argument(
        "--kafka-nodes",
        type=int,
        choices=(1, 3),
        default=3,
        help="the chaos stack's Kafka cluster (1: its only node is the fault)",
    )
    chaos.add_argument("--output", type=Path, default=Path("reports/chaos"))
    return parser


def _service_main(name: str) -> ServiceMain:
    """The long-running coroutine of a service, imported only when that service runs."""
    if name == "chat-service":
        from realchat.chat.server import serve as chat

        return chat
    if name == "outbox-publisher":
        from realchat.outbox.publisher import serve_publisher

        return serve_publisher
    if name == "auth-service":
        from realchat.auth.server import serve as auth

        return auth
    if name == "gateway":
        from realchat.gateway.server import serve as gateway

        return gateway
    if name == "presence":
        from realchat.presence.server import serve as presence

        return presence
    if name == "notifier":
        from realchat.notifier.service import serve as notifier

        return notifier
    raise AssertionError(name)


def _run_service(settings: Settings, name: str) -> int:
    from realchat.observability.logging import configure_logging
    from realchat.observability.tracing import configure_tracing
    from realchat.runner import run_until_signalled

    configure_logging(settings.logging, name)
    configure_tracing(settings.tracing, name)
    serve = _service_main(name)
    return run_until_signalled(lambda stop: serve(settings, stop))


#: Commands that run against a deployment's real secrets (services and provisioning jobs).
_DEPLOYED_COMMANDS = (*SERVICE_COMMANDS, "migrate", "topics")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    if args.command in _DEPLOYED_COMMANDS and (placeholders := placeholder_secrets(settings)):
        print(
            f"error: refusing to start: {', '.join(placeholders)} still "
            f"contain{'s' if len(placeholders) == 1 else ''} the example's placeholder "
            f"'{PLACEHOLDER_SECRET}'; set real secrets (deployments/.env.example says how)",
            file=sys.stderr,
        )
        return 2
    if args.command == "stack":
        try:
            return _stack_command(settings, args)
        except (StackError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.command in SERVICE_COMMANDS:
        return _run_service(settings, args.command)
    if args.command == "chat":
        from realchat.client.terminal import chat

        url = args.url or f"http://127.0.0.1:{settings.http.port}"
        return asyncio.run(chat(url, args.username, args.password, args.conversation))
    if args.command == "migrate":
        from realchat.provisioning import migrate_command

        return asyncio.run(migrate_command(settings, _say))
    if args.command == "topics":
        from realchat.provisioning import create_topics_command

        return create_topics_command(settings, _say)
    if args.command == "dead-letters":
        from realchat.outbox.dead_letters import dead_letters_command

        return asyncio.run(dead_letters_command(settings, args, _say))
    if args.command == "users":
        from realchat.auth.admin import users_create_command

        return asyncio.run(users_create_command(settings, args.prefix, args.count, _say))
    if args.command == "tokens":
        from realchat.auth.admin import tokens_mint_command

        return asyncio.run(tokens_mint_command(settings, sys.stdin, _say))
    if args.command == "bench" and args.benchmark == "idle":
        from realchat.loadtest.bench_idle import bench_idle_command

        return bench_idle_command(
            args.connections, args.step, args.settle_s, args.port, args.output
        )
    if args.command == "bench" and args.benchmark == "idle-stack":
        from realchat.loadtest.idle_stack import IdleStackOptions, idle_stack_command

        idle_stack_options = IdleStackOptions(
            connections=args.connections,
            steps=args.steps,
            settle_s=args.settle_s,
            idle_cpu_s=args.idle_cpu_s,
            workers=args.workers,
            users=args.users,
            fresh_gateways=not args.no_restart,
            output=args.output,
        )
        return idle_stack_command(settings, idle_stack_options, _say)
    if args.command == "bench" and args.benchmark == "latency":
        from realchat.loadtest.latency.run import LatencyOptions, bench_latency_command

        latency_options = LatencyOptions(args.messages, args.rate, args.warmup, args.entry)
        return bench_latency_command(settings, latency_options, args.output, _say)
    if args.command == "bench" and args.benchmark == "dispatch":
        from realchat.loadtest.bench_dispatch import bench_dispatch_command

        return bench_dispatch_command(args.events, args.connections, args.output, args.fanout)
    if args.command == "bench" and args.benchmark == "fanout":
        from realchat.loadtest.fanout.run import FanoutOptions, bench_fanout_command

        fanout_options = FanoutOptions(
            seconds=args.seconds,
            rates=tuple(float(r) for r in args.rates.split(",")),
            subscribers=args.subscribers,
            users=args.users,
            entries=tuple(args.entries.split(",")),
            idle_connections=args.idle_connections,
            idle_steps=args.idle_steps,
            idle_settle_s=args.idle_settle,
            idle_entry=args.idle_entry,
            workers=args.workers,
            fresh_gateways=not args.no_restart,
            servers=tuple(args.servers.split(",")),
            skip_idle=args.skip_idle,
            skip_fanout=args.skip_fanout,
            output=args.output,
        )
        return bench_fanout_command(settings, fanout_options, _say)
    if args.command == "chaos":
        from realchat.chaos.run import chaos_command

        names = args.faults.split(",") if args.faults else None
        return chaos_command(
            settings,
            names,
            args.short,
            args.output,
            _say,
            rounds=args.rounds,
            seed=args.seed,
            kafka_nodes=args.kafka_nodes,
        )
    if args.command == "loadtest":
        from realchat.loadtest.loadgen import loadtest_command
        from realchat.loadtest.scenarios import scenario_config

        options = (
            "connections",
            "devices_per_user",
            "conversations_per_user",
            "group_share",
            "group_size",
            "rate",
            "duration_s",
            "slow_share",
            "churn_per_min",
            "workers",
            "register_concurrency",
            "register_over_rest",
            "ramp_start",
            "ramp_step",
            "ramp_step_s",
            "ramp_max",
            "output_dir",
            "name",
        )
        config = scenario_config(args.scenario, **{k: getattr(args, k) for k in options})
        config.base_url = args.url or f"http://{settings.http.host}:{settings.http.port}"
        return loadtest_command(settings, config, _say, direct=args.direct)
    if args.command == "bench":
        from realchat.loadtest.bench_write import bench_write_command

        return bench_write_command(
            settings,
            seconds=args.seconds,
            concurrency=args.concurrency,
            output=args.output,
            report=_say,
        )
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
