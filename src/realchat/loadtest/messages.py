"""What the load test's coordinator and its worker processes say to each other, one JSON line a
message: the worker's configuration (its first line in), commands in (tagged `cmd`), and ticks
and answers out (tagged `type`). Typed on both sides, so a misspelt field fails at decoding.
"""

from __future__ import annotations

import msgspec

# -- coordinator -> worker -------------------------------------------------------------------


class SlowReading(msgspec.Struct, frozen=True):
    """How the slow clients read: a delay per frame, or stalls of `stall_s` every so often."""

    read_delay_s: float = 0.5
    stall_s: float = 10.0
    stall_every_s: float = 30.0


class WorkerUser(msgspec.Struct):
    username: str
    password: str
    token: str
    conversations: list[str]
    user_id: str = ""


class TokenMinting(msgspec.Struct, frozen=True):
    """How a worker renews its users' tokens on the operator path: by minting them with the
    stack's signing key, as the population's setup does (a login costs an argon2id hash on the
    auth service, which thousands of renewals would turn into the run's main load)."""

    private_key_file: str
    key_id: str
    issuer: str
    audience: str
    ttl_s: int


class Connection(msgspec.Struct, array_like=True, frozen=True):
    """One WebSocket client: whose (a key of `WorkerConfig.users`), which device, what kind
    (`normal`, `slow` or `stall`)."""

    user: str
    device: str
    kind: str


class WorkerConfig(msgspec.Struct, frozen=True):
    worker: int
    base_url: str
    ws_url: str
    #: The source address of the worker's sockets (None: the system's choice).
    source_ip: str | None
    slow: SlowReading
    max_pending_per_connection: int
    users: dict[str, WorkerUser]
    connections: list[Connection]
    connect_concurrency: int = 100
    #: None: tokens are renewed by logging in (a population registered over REST).
    minting: TokenMinting | None = None


class PhaseCommand(msgspec.Struct, tag_field="cmd", tag="phase", frozen=True):
    """Send `rate` messages a second (this worker's share) for `seconds`, churning."""

    rate: float
    seconds: float
    churn_per_min: float = 0.0


class VerifyCommand(msgspec.Struct, tag_field="cmd", tag="verify", frozen=True):
    """Have every client sync, then check it holds 1..N of each conversation (N: `expected`)."""

    expected: dict[str, int]


class ExitCommand(msgspec.Struct, tag_field="cmd", tag="exit", frozen=True):
    pass


Command = PhaseCommand | VerifyCommand | ExitCommand

# -- worker -> coordinator -------------------------------------------------------------------


class Tick(msgspec.Struct, tag_field="type", tag="tick", frozen=True):
    """Once a second: cumulative counters and the interval's HDR histograms (base64, or "")."""

    worker: int
    t: float
    connected: int
    pending: int
    counts: dict[str, int]
    errors: dict[str, int]
    disconnects: dict[str, int]
    seq_conflicts: int
    app_duplicates: int
    loop_lag_ms: float
    hist: dict[str, str]
    #: The longest pause of the worker's cycle collector in the interval (`collector_pauses`).
    gc_pause_ms: float = 0.0


class Ready(msgspec.Struct, tag_field="type", tag="ready", frozen=True):
    worker: int
    connected: int
    seconds: float


class PhaseDone(msgspec.Struct, tag_field="type", tag="phase_done", frozen=True):
    worker: int
    #: Whether every send of the phase was answered before the drain timeout.
    drained: bool
    #: The highest seq acknowledged to this worker, per conversation.
    acked: dict[str, int]


class LossExample(msgspec.Struct, frozen=True):
    device: str
    missing: int


class Verified(msgspec.Struct, tag_field="type", tag="verified", frozen=True):
    worker: int
    clients: int
    unverified: int
    messages_checked: int
    lost: int
    clients_with_loss: int
    examples: list[LossExample]
    seq_conflicts: int
    app_duplicates: int


class Done(msgspec.Struct, tag_field="type", tag="done", frozen=True):
    worker: int


Reply = Tick | Ready | PhaseDone | Verified | Done

command_decoder = msgspec.json.Decoder(Command)
reply_decoder = msgspec.json.Decoder(Reply)
