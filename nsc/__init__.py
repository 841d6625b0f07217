"""NATS identities: operator, accounts, users, JWTs and .creds files, nsc-compatible."""
