"""NKeys: Ed25519 key pairs with NATS' role prefixes (operator O, account A, user U).

The `nkeys` package signs but cannot create keys or verify from a public key alone, so
creation and public-key verification live here; the seed is always held as a `Secret`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import os
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing
import nkeys

from nsc.errors import NscError
from nsc.secret import Secret


class KeyError_(NscError, ValueError):
    """A key or seed that is malformed or of the wrong role. (The seed is never in the text.)"""


class Role(enum.Enum):
    """Role prefix bytes as in github.com/nats-io/nkeys."""

    OPERATOR = nkeys.PREFIX_BYTE_OPERATOR
    ACCOUNT = nkeys.PREFIX_BYTE_ACCOUNT
    USER = nkeys.PREFIX_BYTE_USER

    @property
    def letter(self) -> str:
        return {Role.OPERATOR: "O", Role.ACCOUNT: "A", Role.USER: "U"}[self]

    @classmethod
    def of_public_key(cls, public_key: str) -> Role:
        for role in cls:
            if public_key.startswith(role.letter):
                return role
        raise KeyError_(f"{public_key[:1]!r} is not an operator, account or user key prefix")


def _crc16(data: bytes) -> bytes:
    return int(nkeys.crc16(bytearray(data))).to_bytes(2, "little")


def decode_public_key(public_key: str, role: Role | None = None) -> bytes:
    """The raw 32-byte Ed25519 key, after checking prefix, length and CRC."""
    try:
        raw = base64.b32decode(public_key.encode() + b"=" * (-len(public_key) % 8))
    except (binascii.Error, ValueError):
        raise KeyError_(f"{public_key!r} is not base32") from None
    if len(raw) != 35 or _crc16(raw[:33]) != raw[33:]:
        raise KeyError_(f"{public_key!r} is not a valid public NKey")
    if role is not None and raw[0] != role.value:
        raise KeyError_(f"{public_key!r} is not a {role.name.lower()} key")
    if role is None and raw[0] not in {r.value for r in Role}:
        raise KeyError_(f"{public_key!r} has an unsupported role prefix")
    return raw[1:33]


def verify(public_key: str, data: bytes, signature: bytes) -> bool:
    """True if `signature` over `data` was made by the owner of `public_key`."""
    try:
        nacl.signing.VerifyKey(decode_public_key(public_key)).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, KeyError_):
        return False
    return True


@dataclass(frozen=True)
class NKey:
    """A key pair: public key in the clear, seed masked."""

    public_key: str
    seed: Secret = field(repr=False)
    _signer: nacl.signing.SigningKey = field(repr=False, compare=False)

    @property
    def role(self) -> Role:
        return Role.of_public_key(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return bytes(self._signer.sign(data).signature)

    def __repr__(self) -> str:
        return f"NKey({self.public_key})"

    __str__ = __repr__


def _from_raw(raw_seed: bytes, role: Role, seed: bytes) -> NKey:
    signer = nacl.signing.SigningKey(raw_seed)
    pub = bytes([role.value]) + bytes(signer.verify_key)
    public_key = base64.b32encode(pub + _crc16(pub)).decode()
    return NKey(public_key, Secret(seed), signer)


def generate(role: Role) -> NKey:
    """A fresh key pair from the OS CSPRNG."""
    raw = os.urandom(32)
    return _from_raw(raw, role, bytes(nkeys.encode_seed(raw, role.value)))


def from_seed(seed: Secret | bytes | str, role: Role | None = None) -> NKey:
    """Rebuild a key pair from its seed (`S` + role letter + ...)."""
    value = seed.reveal() if isinstance(seed, Secret) else seed
    value = (value.encode() if isinstance(value, str) else value).strip()
    try:
        decoded = base64.b32decode(value + b"=" * (-len(value) % 8))
    except (binascii.Error, ValueError):
        raise KeyError_("not a valid NKey seed") from None
    if len(decoded) != 36 or _crc16(decoded[:34]) != decoded[34:]:
        raise KeyError_("not a valid NKey seed")
    if decoded[0] & 0xF8 != nkeys.PREFIX_BYTE_SEED:
        raise KeyError_("not a valid NKey seed")
    prefix = (decoded[0] & 0x07) << 5 | (decoded[1] & 0xF8) >> 3
    raw = decoded[2:34]
    found = next((r for r in Role if r.value == prefix), None)
    if found is None:
        raise KeyError_("seed is not an operator, account or user seed")
    if role is not None and found is not role:
        raise KeyError_(f"seed is a {found.name.lower()} seed, expected {role.name.lower()}")
    return _from_raw(bytes(raw), found, value)
