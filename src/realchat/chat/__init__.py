"""The chat service: the write engine (one transaction writes the message, its seq and an outbox
row; the publisher that carries those rows to Kafka is `realchat.outbox`).

api.py (gRPC transport) -> service.py (rules) -> store.py (SQL).
"""
