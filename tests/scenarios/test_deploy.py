"""A spec becomes a deployment: what each KME's configuration says about its links' live feeds."""

from __future__ import annotations

import json
from pathlib import Path

from qnet.scenarios.deploy import init_deployment
from qnet.scenarios.validate import load_spec
from tests.conftest import EXAMPLES


def test_the_live_feed_takes_the_spec_device_and_runs_once_per_link(tmp_path: Path) -> None:
    """Each link's configuration carries its spec's device parameters (the Tokyo links' measured
    misalignments; the live feeds used the default device's 3.3 % before), its block length from
    that device, and the peer's store, where the first end's single simulation delivers its copy."""
    spec = load_spec(EXAMPLES / "tokyo-qkd-network.yaml")
    deployment = init_deployment(tmp_path / "net", spec, base_port=20000)
    koganei = json.loads(deployment.configs["Koganei"].read_text())
    ntt = next(lk for lk in koganei["links"] if lk["link_id"] == "ntt")
    assert ntt["source"]["device"] == {"misalignment": 0.023}
    assert ntt["source"]["pulses_per_block"] == 10**11
    assert ntt["peer_store_url"] == "sqlite:///store/Otemachi.db"
