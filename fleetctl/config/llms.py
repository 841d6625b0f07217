"""Built-in LLM names and the poller backend that runs each, from the backend registry."""

from __future__ import annotations

from fleetctl.config.schema import LlmSpec
from poller.backends import BACKENDS

BUILTIN_LLMS: dict[str, LlmSpec] = {
    llm.name: LlmSpec(
        backend=backend.name, bin=backend.host_bin, requires_env_file=llm.requires_env_file
    )
    for backend in BACKENDS.values()
    for llm in backend.llms
}


def known_llms(extra: dict[str, LlmSpec]) -> dict[str, LlmSpec]:
    return {**BUILTIN_LLMS, **extra}
