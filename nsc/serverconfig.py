"""The broker's auth config, as `nsc generate config --mem-resolver --sys-account SYS` writes it.

Same lines as MemResolverConfigBuilder.GenerateConfig in nats-io/nsc: operator JWT inline,
system_account, `resolver: MEMORY`, and `resolver_preload` with the accounts sorted by public
key, each preceded by a comment with its name. The caller appends listen/jetstream blocks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from nsc import jwt
from nsc.errors import NscError


class ConfigError(NscError, ValueError):
    """Inputs that would give the server a config it rejects or silently misreads."""


def _quoted(name: str) -> str:
    return json.dumps(name)  # Go's %q for the printable names we allow


def mem_resolver_config(operator_jwt: str, account_jwts: Iterable[str], system_account: str) -> str:
    op = jwt.decode(operator_jwt)
    if op.claim_type != "operator":
        raise ConfigError("the first argument must be an operator JWT")
    accounts: dict[str, tuple[str, str]] = {}
    for token in account_jwts:
        d = jwt.decode(token)
        if d.claim_type != "account":
            raise ConfigError(f"{d.claims.get('name')!r} is not an account JWT")
        accounts[str(d.claims["sub"])] = (str(d.claims.get("name", "")), token)
    if system_account not in accounts:
        raise ConfigError(f"system account {system_account} is not among the accounts")
    lines = [
        f"// Operator {_quoted(str(op.claims.get('name', '')))}",
        f"operator: {operator_jwt}",
        "",
        f"system_account: {system_account}",
        "",
        "resolver: MEMORY",
        "",
        "resolver_preload: {",
    ]
    for pub in sorted(accounts):
        name, token = accounts[pub]
        lines += [f"  // Account {_quoted(name)}", f"  {pub}: {token}", ""]
    lines.append("}")
    return "\n".join(lines) + "\n"
