"""The auth service: accounts (argon2id password hashes in PostgreSQL) and short-lived EdDSA JWT
access tokens that every other process verifies locally with the public key.

api.py (HTTP transport) -> service.py (rules, login rate limiting via limits.py) -> store.py
(SQL); passwords.py hashes, tokens.py issues and verifies, keys.py makes the dev key pair.
"""
