"""The chat service: the write engine (one transaction writes the message, its seq and an outbox
row) and the outbox publisher that carries those rows to Kafka.

api.py (gRPC transport) -> service.py (rules) -> store.py (SQL); outbox.py publishes what
store.py wrote, through outbox_store.py.
"""
