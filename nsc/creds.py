"""The .creds file: a decorated user JWT followed by the decorated user seed.

Byte-for-byte the layout of FormatUserConfig in github.com/nats-io/jwt/v2 (creds_utils.go),
which nats-server clients (nats-py `user_credentials=`, nats CLI, nsc) all parse.
"""

from __future__ import annotations

import re

from nsc import jwt
from nsc.errors import NscError
from nsc.secret import Secret

_JWT_BLOCK = "-----BEGIN NATS {kind} JWT-----\n{token}\n------END NATS {kind} JWT------\n\n"
_SEED_BLOCK = (
    "************************* IMPORTANT *************************\n"
    "NKEY Seed printed below can be used to sign and prove identity.\n"
    "NKEYs are sensitive and should be treated as secrets.\n"
    "\n"
    "-----BEGIN {kind} NKEY SEED-----\n"
    "{seed}\n"
    "------END {kind} NKEY SEED------\n"
    "\n"
    "*************************************************************\n"
)
# Same pattern as userConfigRE in creds_utils.go.
_BLOCK_RE = re.compile(
    r"\s*(?:(?:[-]{3,}.*[-]{3,}\r?\n)([\w\-.=]+)(?:\r?\n[-]{3,}.*[-]{3,}(\r?\n|\Z)))"
)


class CredsError(NscError, ValueError):
    """A .creds text that does not hold a user JWT and a user seed. (Never quotes the seed.)"""


def format_creds(user_jwt: str, seed: Secret, *, check: bool = True) -> Secret:
    """The .creds file contents, itself a Secret since it embeds the seed.

    `check=False` skips decoding the JWT, for callers that have just built it as a user JWT.
    """
    if check and jwt.decode(user_jwt).claim_type != "user":
        raise CredsError("only a user JWT can go in a .creds file")
    raw = seed.reveal().strip()
    if not raw.startswith(b"SU"):
        raise CredsError("the seed in a .creds file must be a user seed")
    text = _JWT_BLOCK.format(kind="USER", token=user_jwt) + _SEED_BLOCK.format(
        kind="USER", seed=raw.decode()
    )
    return Secret(text.encode())


def parse_creds(contents: Secret | bytes | str) -> tuple[str, Secret]:
    """(user JWT, user seed) from a .creds text."""
    raw = contents.reveal() if isinstance(contents, Secret) else contents
    text = raw.decode() if isinstance(raw, bytes) else raw
    blocks = [m.group(1) for m in _BLOCK_RE.finditer(text)]
    if len(blocks) < 2:
        raise CredsError("a .creds file holds a decorated JWT and a decorated seed")
    if not blocks[1].startswith("SU"):
        raise CredsError("the .creds seed is not a user seed")
    return blocks[0], Secret(blocks[1].encode())
