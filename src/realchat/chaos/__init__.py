"""Failure injection (`realchat chaos`): a stack under steady traffic, a schedule of faults, and an
invariant checker that judges what the clients recorded against what PostgreSQL and Kafka hold.

`history` and `checker` know nothing of the code under test (no imports from the services):
they read JSON lines, SQL rows and raw Kafka records, so a bug in the services cannot hide
itself from the judge.
"""
