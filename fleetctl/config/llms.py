"""Built-in LLM names and the poller backend that runs each, from the backend registry.

None sets `bin`: a built-in llm runs the backend's pinned CLI, which apply installs."""

from __future__ import annotations

from fleetctl.config.schema import LlmSpec
from poller.backends import BACKENDS

BUILTIN_LLMS: dict[str, LlmSpec] = {
    llm.name: LlmSpec(backend=backend.name, requires_env_file=llm.requires_env_file)
    for backend in BACKENDS.values()
    for llm in backend.llms
}


def known_llms(extra: dict[str, LlmSpec]) -> dict[str, LlmSpec]:
    return {**BUILTIN_LLMS, **extra}
