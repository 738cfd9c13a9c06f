"""The `realchat` command: subcommands are wired here, their work lives in the packages."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from realchat.config import PLACEHOLDER_SECRET, Settings, load_settings, placeholder_secrets

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ServiceMain = Callable[[Settings, asyncio.Event], Awaitable[None]]
#: Each service's command and its long-running coroutine (module, function).
_SERVICE_MAINS = {
    "chat-service": ("realchat.chat.server", "serve"),
    "outbox-publisher": ("realchat.outbox.publisher", "serve_publisher"),
    "auth-service": ("realchat.auth.server", "serve"),
    "gateway": ("realchat.gateway.server", "serve"),
    "presence": ("realchat.presence.server", "serve"),
    "notifier": ("realchat.notifier.service", "serve"),
}
SERVICE_COMMANDS = tuple(_SERVICE_MAINS)
T = TypeVar("T", bound="DataclassInstance")


def _say(line: str) -> None:
    print(line, flush=True)


#: `realchat loadtest` flags that override the scenario's settings: flag, the scenario option it
#: sets (`scenario_config`'s keyword), type, help.
_LOADTEST_OVERRIDES: tuple[tuple[str, str, Callable[[str], Any], str | None], ...] = (
    ("--connections", "connections", int, None),
    ("--devices-per-user", "devices_per_user", int, None),
    ("--conversations-per-user", "conversations_per_user", int, None),
    ("--group-share", "group_share", float, "share of group conversations"),
    ("--group-size", "group_size", int, None),
    ("--rate", "rate", float, "target messages per second (open loop)"),
    ("--duration", "duration_s", float, "seconds of sending"),
    ("--slow-share", "slow_share", float, "share of slow/stalling readers"),
    ("--churn", "churn_per_min", float, "reconnects/connection/min"),
    ("--workers", "workers", int, "load generator processes"),
    ("--register-concurrency", "register_concurrency", int, None),
    ("--ramp-start", "ramp_start", float, None),
    ("--ramp-step", "ramp_step", float, None),
    ("--ramp-step-s", "ramp_step_s", float, None),
    ("--ramp-max", "ramp_max", float, None),
    ("--output-dir", "output_dir", Path, None),
    ("--name", "name", str, "report file stem (default: the scenario)"),
)


def _add_shape_flags(action: argparse.ArgumentParser) -> None:
    """The stack's shape, on every action: `up` records it, the others act on that stack."""
    action.add_argument("--kafka-nodes", type=int, choices=(1, 3), help="Kafka KRaft nodes")
    action.add_argument(
        "--gateways", type=int, help="gateway instances (default: one per core; >1 adds HAProxy)"
    )
    action.add_argument("--publishers", type=int, help="outbox publisher replicas (default 1)")


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(","))


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realchat", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="run the local stack (PostgreSQL, Redis, Kafka)")
    actions = stack.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start everything and wait until it is ready")
    up.add_argument("--detach", action="store_true", help="return once ready, leave it running")
    _add_shape_flags(up)
    _add_shape_flags(actions.add_parser("down", help="stop everything the stack started"))
    _add_shape_flags(
        actions.add_parser(
            "reset", help="stop everything and delete all its data (PostgreSQL's included)"
        )
    )
    status = actions.add_parser("status", help="each component: pid, address, health")
    status.add_argument("--json", action="store_true")
    _add_shape_flags(status)
    actions.add_parser("env", help="print the REALCHAT_* variables that reach this stack")
    start = actions.add_parser("start", help="(re)start one component, e.g. after `kill`")
    start.add_argument("name")
    _add_shape_flags(start)
    kill = actions.add_parser("kill", help="failure injection: signal one component")
    kill.add_argument("name")
    kill.add_argument("--signal", default="KILL", choices=("KILL", "TERM", "STOP", "CONT"))
    _add_shape_flags(kill)
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
        "--no-restart",
        action="store_false",
        dest="fresh_gateways",
        help="measure on the running gateways",
    )
    idle_stack.add_argument("--output", type=Path, default=Path("reports/bench-idle-stack.json"))
    fanout = benchmarks.add_parser(
        "fanout", help="one channel's fan-out and idle connections, RealChat beside Centrifugo"
    )
    fanout.add_argument("--seconds", type=float, default=30.0, help="publishing seconds per rate")
    fanout.add_argument(
        "--rates",
        type=_numbers,
        default="10,50",
        help="messages/s to publish, comma-separated (default 10,50)",
    )
    fanout.add_argument("--subscribers", type=int, default=1000)
    fanout.add_argument(
        "--users", type=int, default=10, help="accounts the connections are spread over"
    )
    fanout.add_argument(
        "--entries",
        type=_names,
        default="direct,haproxy",
        help="RealChat: clients to gateways and/or HAProxy",
    )
    fanout.add_argument("--idle-connections", type=int, default=10_000)
    fanout.add_argument("--idle-steps", type=int, default=4)
    fanout.add_argument(
        "--idle-settle",
        type=float,
        dest="idle_settle_s",
        default=30.0,
        help="seconds after each step",
    )
    fanout.add_argument("--idle-entry", choices=("direct", "haproxy"), default="direct")
    fanout.add_argument("--workers", type=int, default=2, help="client worker processes")
    fanout.add_argument(
        "--no-restart",
        action="store_false",
        dest="fresh_gateways",
        help="measure idle memory on the running gateways",
    )
    fanout.add_argument(
        "--servers",
        type=_names,
        default="centrifugo,realchat",
        help="which servers, comma-separated",
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
    for flag, dest, kind, text in _LOADTEST_OVERRIDES:
        load.add_argument(flag, type=kind, dest=dest, help=text)
    load.add_argument(
        "--register-over-rest",
        action="store_true",
        default=None,
        help="sign every user up and in through the API, even beside the stack (default: "
        "provision in bulk with the stack's database and signing key, reuse across runs)",
    )
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
    module, function = _SERVICE_MAINS[name]
    serve: ServiceMain = getattr(importlib.import_module(module), function)
    return serve


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


Handler = Callable[[Settings, argparse.Namespace], int]


def _stack(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.stack.command import stack_command
    from realchat.stack.supervisor import StackError

    try:
        return stack_command(settings, args, _say)
    except (StackError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.client.terminal import chat

    url = args.url or f"http://127.0.0.1:{settings.http.port}"
    return asyncio.run(chat(url, args.username, args.password, args.conversation))


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.provisioning import migrate_command

    return asyncio.run(migrate_command(settings, _say))


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.provisioning import create_topics_command

    return create_topics_command(settings, _say)


def _dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.outbox.dead_letters import dead_letters_command

    return asyncio.run(dead_letters_command(settings, args, _say))


def _users(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.auth.admin import users_create_command

    return asyncio.run(users_create_command(settings, args.prefix, args.count, _say))


def _tokens(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.auth.admin import tokens_mint_command

    return asyncio.run(tokens_mint_command(settings, sys.stdin, _say))


def _options(kind: type[T], args: argparse.Namespace) -> T:
    """A benchmark's options dataclass from the flags named like its fields (the parser's
    `dest`s); fields without a flag keep their defaults."""
    given = {f.name: getattr(args, f.name) for f in fields(kind) if hasattr(args, f.name)}
    return kind(**given)


def _bench_write(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.loadtest.bench_write.command import bench_write_command

    return bench_write_command(
        settings,
        seconds=args.seconds,
        concurrency=args.concurrency,
        output=args.output,
        report=_say,
    )


def _bench_latency(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.loadtest.latency.run import LatencyOptions, bench_latency_command

    options = LatencyOptions(args.messages, args.rate, args.warmup, args.entry)
    return bench_latency_command(settings, options, args.output, _say)


def _bench_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.loadtest.bench_dispatch import bench_dispatch_command

    return bench_dispatch_command(args.events, args.connections, args.output, args.fanout)


def _bench_idle(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.loadtest.bench_idle import bench_idle_command

    return bench_idle_command(args.connections, args.step, args.settle_s, args.port, args.output)


def _bench_idle_stack(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.loadtest.idle_stack import IdleStackOptions, idle_stack_command

    return idle_stack_command(settings, _options(IdleStackOptions, args), _say)


def _bench_fanout(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.loadtest.fanout.run import FanoutOptions, bench_fanout_command

    return bench_fanout_command(settings, _options(FanoutOptions, args), _say)


_BENCHMARKS: dict[str, Handler] = {
    "write": _bench_write,
    "latency": _bench_latency,
    "dispatch": _bench_dispatch,
    "idle": _bench_idle,
    "idle-stack": _bench_idle_stack,
    "fanout": _bench_fanout,
}


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    return _BENCHMARKS[args.benchmark](settings, args)


def _chaos(settings: Settings, args: argparse.Namespace) -> int:
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


def _loadtest(settings: Settings, args: argparse.Namespace) -> int:
    from realchat.loadtest.loadgen import loadtest_command
    from realchat.loadtest.scenarios import scenario_config

    names = [dest for _, dest, _, _ in _LOADTEST_OVERRIDES] + ["register_over_rest"]
    config = scenario_config(args.scenario, **{name: getattr(args, name) for name in names})
    config.base_url = args.url or f"http://{settings.http.host}:{settings.http.port}"
    return loadtest_command(settings, config, _say, direct=args.direct)


#: Every command but the services, by name.
_HANDLERS: dict[str, Handler] = {
    "stack": _stack,
    "chat": _chat,
    "migrate": _migrate,
    "topics": _topics,
    "dead-letters": _dead_letters,
    "users": _users,
    "tokens": _tokens,
    "bench": _bench,
    "chaos": _chaos,
    "loadtest": _loadtest,
}


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
    if args.command in SERVICE_COMMANDS:
        return _run_service(settings, args.command)
    return _HANDLERS[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
