"""The load generator's coordinator and workers agree on typed messages: what one encodes, the
other decodes to the same value, and what is not a message of the protocol is refused."""

from __future__ import annotations

import msgspec
import pytest

from realchat.loadtest.aggregation import Aggregate
from realchat.loadtest.messages import (
    LossExample,
    PhaseCommand,
    Tick,
    Verified,
    VerifyCommand,
    WorkerConfig,
    command_decoder,
    reply_decoder,
)
from realchat.loadtest.population import Population
from realchat.loadtest.scenarios import scenario_config
from realchat.loadtest.workers import worker_configs


def population(users: int) -> Population:
    return Population(
        users=[
            {
                "username": f"u{n}",
                "password": "pw",
                "token": f"t{n}",
                "user_id": f"id{n}",
                "conversations": [f"c{n}"],
            }
            for n in range(users)
        ],
        conversations=[],
        register_s=0.0,
        conversations_s=0.0,
    )


def test_connections_are_shared_round_robin_and_each_config_survives_the_pipe() -> None:
    config = scenario_config("smoke", connections=10, workers=2, slow_share=0.2)
    configs = worker_configs(config, population(4))
    assert [len(c.connections) for c in configs] == [5, 5]
    assert sum(c.kind != "normal" for w in configs for c in w.connections) == 2
    for worker in configs:
        assert set(worker.users) == {c.user for c in worker.connections}
        wire = msgspec.json.encode(worker)
        assert msgspec.json.decode(wire, type=WorkerConfig) == worker
    assert configs[0].users["0"].token == "t0"


def test_commands_decode_by_their_tag_and_anything_else_is_refused() -> None:
    phase = command_decoder.decode(b'{"cmd": "phase", "rate": 2.5, "seconds": 3}')
    assert phase == PhaseCommand(rate=2.5, seconds=3.0, churn_per_min=0.0)
    verify = VerifyCommand({"c1": 4})
    assert command_decoder.decode(msgspec.json.encode(verify)) == verify
    with pytest.raises(msgspec.ValidationError):
        command_decoder.decode(b'{"cmd": "launch"}')
    with pytest.raises(msgspec.ValidationError):
        reply_decoder.decode(b'{"type": "verified", "worker": 0}')


def tick(worker: int, sent: int, connected: int) -> Tick:
    return Tick(
        worker=worker,
        t=0.0,
        connected=connected,
        pending=0,
        counts={"sent": sent},
        errors={},
        disconnects={},
        seq_conflicts=0,
        app_duplicates=0,
        loop_lag_ms=0.0,
        hist={},
    )


def test_totals_sum_each_workers_latest_tick() -> None:
    aggregate = Aggregate()
    for record in (tick(0, 5, 3), tick(1, 7, 4), tick(0, 9, 3)):
        decoded = reply_decoder.decode(msgspec.json.encode(record))
        assert isinstance(decoded, Tick)
        aggregate.on_tick(decoded)
    totals = aggregate.totals()
    assert totals["counts"] == {"sent": 16}
    assert totals["connected"] == 7


def test_a_verified_answer_round_trips_with_its_loss_examples() -> None:
    answer = Verified(0, 10, 0, 50, 2, 1, [LossExample("d1", 2)], 0, 0)
    assert reply_decoder.decode(msgspec.json.encode(answer)) == answer
