# One Makefile for people and CI. `make run` and `make test` install what is missing first.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin

.PHONY: deps deps-test run test lint typecheck unit integration e2e down status reset format bench-write \
	bench-latency bench-dispatch bench-fanout loadtest loadtest-ramp loadtest-idle soak chaos chaos-random chaos-single-broker compose-test \
	kubernetes-base

## What running needs; `deps-test` adds the test runners, linters and checkers.
deps:
	@scripts/bootstrap.sh

deps-test:
	@scripts/bootstrap.sh --test

## Start the whole stack in the foreground; Ctrl-C stops everything.
run: deps
	$(BIN)/realchat stack up

down:
	$(BIN)/realchat stack down

status:
	$(BIN)/realchat stack status

## Lint, type-check, then every test against the test stack's own PostgreSQL, Redis and Kafka.
test: deps-test lint typecheck
	$(BIN)/pytest -q -ra --durations=25

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck:
	$(BIN)/mypy

format:
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

unit:
	$(BIN)/pytest -q tests/unit

integration:
	$(BIN)/pytest -q tests/integration

e2e:
	$(BIN)/pytest -q tests/e2e

## Write-path benchmark on the dev stack (started detached if needed, left running): SendMessage
## throughput and latency vs pgbench on the same SQL; saved to reports/bench-write.json.
bench-write: deps
	$(BIN)/realchat stack up --detach
	$(BIN)/realchat bench write
	@echo "the dev stack is still running; stop it with: make down"

## A 1:1 message on the idle dev stack (started detached if needed, left running): send to
## delivery through the gateways, stage by stage; saved to reports/bench-latency.json.
bench-latency: deps
	$(BIN)/realchat stack up --detach
	$(BIN)/realchat bench latency
	@echo "the dev stack is still running; stop it with: make down"

## A gateway's cost per consumed event (decision 11: every instance reads every event).
bench-dispatch: deps
	$(BIN)/realchat bench dispatch

## One channel's fan-out (1,000 subscribers at 10 and 50 msg/s) and idle connections, RealChat
## beside Centrifugo (built once, pinned, into .cache/centrifugo; needs Go that once); the dev
## stack is started detached if needed and left running. Report: reports/bench-fanout.{json,txt}.
BENCH_FANOUT_ARGS ?=
bench-fanout: deps
	$(BIN)/realchat stack up --detach
	$(BIN)/realchat bench fanout $(BENCH_FANOUT_ARGS)
	@echo "the dev stack is still running; stop it with: make down"

## Load tests against the running dev stack (`make run` or `realchat stack up --detach`); reports
## go to bench/results/loadtest-<scenario>.{json,html,txt}. Not part of CI (the smoke test is).
LOADTEST_ARGS ?=
loadtest: deps
	$(BIN)/realchat loadtest --scenario plan --direct $(LOADTEST_ARGS)

loadtest-ramp: deps
	$(BIN)/realchat loadtest --scenario ramp --direct $(LOADTEST_ARGS)

loadtest-idle: deps
	$(BIN)/realchat loadtest --scenario idle --direct $(LOADTEST_ARGS)

## One hour at a steady rate: stability (gateway RSS, Kafka lag, p99) judged first vs last 10 min.
soak: deps
	$(BIN)/realchat loadtest --scenario soak --direct $(LOADTEST_ARGS)

## Stop every stack under var/ (dev, test, chaos, ...) and delete all their data: generated
## secrets included, and PostgreSQL's data also where it lives outside var/ (README, "Where
## things live").
reset:
	-@for dir in var/*/; do \
		[ -d "$$dir" ] && REALCHAT_STACK__STATE_DIR="$$dir" $(BIN)/realchat stack reset; \
	done
	rm -rf var

## Failure injection under traffic (3 Kafka nodes, 2 gateways, 2 publishers), every fault in
## turn, judged by the invariant checker; report in reports/chaos.{json,txt}. Not part of CI
## (CI runs the short version: tests/e2e/test_chaos.py).
chaos: deps
	$(BIN)/realchat chaos --output reports/chaos
	REALCHAT_REGISTRY_CYCLES=100000 $(BIN)/pytest -q -s tests/e2e/test_registry_leak.py

## The bus's only broker SIGKILLed for 60 s under traffic (a one-node Kafka), judged by the same
## checker; report in reports/chaos-single-broker.{json,txt}.
chaos-single-broker: deps
	$(BIN)/realchat chaos --kafka-nodes 1 --output reports/chaos-single-broker

## The compose deployment built and run for real (a Docker engine started if none runs; images
## from Debian packages and Maven Central where Docker Hub cannot be reached), checked from
## outside with a gateway killed mid-traffic, torn down. Report: reports/compose-test.{json,txt}.
## COMPOSE_TEST_FRESH=1 makes every image again (earlier images removed, no layer cache).
compose-test: deps-test
	scripts/compose-test.sh

## The kustomize base (deployments/kubernetes/base/realchat.yaml) regenerated from the Helm chart,
## its one source: run after changing deployments/helm/realchat (a unit test fails until then).
kubernetes-base: deps-test
	$(BIN)/python -m realchat.stack.helmchart

## Every fault kind CHAOS_ROUNDS times (20 by default) in an order drawn from CHAOS_SEED, with
## the short hold times; hours of traffic. Report in reports/chaos-random.{json,txt}.
CHAOS_ROUNDS ?= 20
CHAOS_SEED ?= 1
chaos-random: deps
	$(BIN)/realchat chaos --rounds $(CHAOS_ROUNDS) --seed $(CHAOS_SEED) --output reports/chaos-random
