"""The local stack: PostgreSQL, Redis and Apache Kafka owned by the project, plus its services.

`shape.StackShape` says what a stack is made of (pure), `state.StackState` records what runs
(stack.json), and `supervisor.Stack` starts components in order, waits on real readiness and
stops them in reverse; each component module knows how to prepare, start and probe one kind of
process.
"""
