"""The gateway: the public edge (REST + WebSocket) and the real-time delivery engine.

server.py assembles one stateless instance: websocket.py and rest.py (transport) ->
connection.py (one client: bounded queue, writer, per-conversation cursors) -> hub.py (shards of
connections by user) <- delivery.py (Kafka consumer) ; sync.py backfills from the chat service.
"""
