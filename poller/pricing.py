"""A result's cost: priced from the worker's price table entry, reported by the CLI, or unknown.

Pricing happens here, in the poller, not when fleetctl reads results: the budget a poller
enforces before its next task needs each result's cost as soon as it is stored, and a result
then says what it cost by the prices in force when it ran (a later price change does not
rewrite the ledger). fleetctl renders the worker's prices (fleet.yaml `prices:`) into
`PRICE_USD_PER_MTOK`; see docs/configuration.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from poller.outputs import Parsed

# The usage keys a price applies to, and the PRICE_USD_PER_MTOK field that prices each.
PRICED_KEYS = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_tokens": "cache_read",
    "cache_write_tokens": "cache_write",
}
MAX_PRICE = 10_000.0


class PriceError(ValueError):
    """A malformed PRICE_USD_PER_MTOK."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens; cache reads and writes default to the input price."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def cost(self, usage: dict[str, int]) -> float:
        per = {
            "input": self.input,
            "output": self.output,
            "cache_read": self.input if self.cache_read is None else self.cache_read,
            "cache_write": self.input if self.cache_write is None else self.cache_write,
        }
        total = sum(usage.get(key, 0) * per[field] for key, field in PRICED_KEYS.items())
        return round(total / 1_000_000, 6)

    def render(self) -> str:
        """The PRICE_USD_PER_MTOK value fleetctl writes into the unit."""
        parts = {"input": self.input, "output": self.output}
        if self.cache_read is not None:
            parts["cache_read"] = self.cache_read
        if self.cache_write is not None:
            parts["cache_write"] = self.cache_write
        return ",".join(f"{k}={v:g}" for k, v in parts.items())


def parse(raw: str) -> Price | None:
    """`input=3,output=15[,cache_read=0.3][,cache_write=3.75]`; empty: no price."""
    raw = raw.strip()
    if not raw:
        return None
    values: dict[str, float] = {}
    for part in raw.split(","):
        key, sep, number = part.strip().partition("=")
        if not sep or key not in PRICED_KEYS.values():
            raise PriceError(
                f"{part.strip()!r} is not one of input=, output=, cache_read=, cache_write="
            )
        try:
            value = float(number)
        except ValueError:
            raise PriceError(f"{key}={number!r} is not a number") from None
        if not 0 <= value <= MAX_PRICE:
            raise PriceError(f"{key}={number!r} must be between 0 and {MAX_PRICE:g}")
        values[key] = value
    if "input" not in values or "output" not in values:
        raise PriceError("needs both input= and output=")
    return Price(**values)


def cost(parsed: Parsed, price: Price | None, trust_reported: bool) -> tuple[float | None, str]:
    """The result's `cost_usd` and `cost_source`.

    A price wins over the CLI's own figure: the table is the operator's bill (Claude Code
    prices Z.ai's models at Anthropic's rates). Without a price the CLI's figure is kept where
    it is trusted; tokens with neither are `unknown`."""
    if price is not None and parsed.usage:
        return price.cost(parsed.usage), "priced"
    if parsed.cost_usd is not None and trust_reported:
        return parsed.cost_usd, "reported"
    return None, "unknown"
