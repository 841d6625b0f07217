"""Which CLI each worker runs: the backend's pinned one (or its llm's `version:`), installed
by apply under /opt/fleet/llm, unless a `bin:` says the host provides it."""

from __future__ import annotations

from pathlib import Path

from fleetctl.config.loader import load_fleet
from poller.backends import BACKENDS
from tests.support.example import EXAMPLE_FLEET, EXAMPLE_SERVERS, example_fleet


def test_built_in_llms_run_the_pinned_cli_from_its_versioned_directory() -> None:
    fleet = example_fleet()
    codex = fleet.worker("codex-py-dev-01")
    assert codex is not None and codex.cli == BACKENDS["codex"].cli
    assert codex.bin == "/opt/fleet/llm/@openai+codex@0.171.0/bin/codex"
    wc = fleet.worker("cmd-wordcount-01")
    assert wc is not None and wc.cli is None and wc.bin is None


def test_an_llm_pins_another_version_and_bin_means_host_provided(tmp_path: Path) -> None:
    text = EXAMPLE_FLEET.read_text().replace(
        "\nworkers:",
        "\nllms:\n  codex:\n    backend: codex\n    version: 0.172.0\n"
        "  gemini:\n    backend: gemini\n    bin: /usr/bin/gemini\nworkers:",
        1,
    )
    (tmp_path / "fleet.yaml").write_text(text)
    fleet = load_fleet(tmp_path / "fleet.yaml", EXAMPLE_SERVERS)
    codex = fleet.worker("codex-py-dev-01")
    assert codex is not None and codex.cli is not None
    assert (codex.cli.package, codex.cli.version) == ("@openai/codex", "0.172.0")
    assert codex.bin == "/opt/fleet/llm/@openai+codex@0.172.0/bin/codex"
    gemini = fleet.worker("gemini-ts-rev-01")
    assert gemini is not None and gemini.cli is None and gemini.bin == "/usr/bin/gemini"
