"""The public wire contract (api-v1): WebSocket frames, REST bodies, error and close codes.

What outside clients rely on lives here, apart from the code that serves it.
"""
