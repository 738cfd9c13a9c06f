"""`realchat bench fanout`: one channel's fan-out and idle connections, RealChat beside Centrifugo.

One client code path (`client.py`) drives both servers through a thin Sans-I/O session per
protocol (`session_realchat.py`, `session_centrifugo.py`); `run.py` assembles a run.
"""
