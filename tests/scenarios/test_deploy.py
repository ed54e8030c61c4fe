"""A spec becomes a deployment: what each KME's configuration says about its links' live feeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def test_the_deployment_plans_settings_and_modes_for_the_machine(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Each simulated link's configuration carries the decoy settings optimised for its block
    length, and the feeder builds its link from them without optimising again (each optimisation
    costs a feeder about 0.2 s of CPU); on 2 cores the 11-node Kanto network's KMEs leave no core
    for photon-level simulation (every link sampled, and the deployment says so), while Tokyo's 4
    KMEs leave 0.6 of one (its cheapest links photon by photon)."""
    from qnet.keys.store import KeyStore
    from qnet.quantum import link as link_module
    from qnet.scenarios import deploy
    from qnet.servers.config import load_config
    from qnet.servers.feeder import make_feeds

    monkeypatch.setattr(deploy, "CORES", 2)
    kanto = init_deployment(tmp_path / "kanto", load_spec(EXAMPLES / "kanto-qkd-network.yaml"), base_port=20100)
    modes = {lk["link_id"]: lk["source"]["mode"] for path in kanto.configs.values()
             for lk in json.loads(path.read_text())["links"]}
    assert set(modes.values()) == {"sampled"} and len(modes) == 18
    tokyo = init_deployment(tmp_path / "tokyo", load_spec(EXAMPLES / "tokyo-qkd-network.yaml"), base_port=20200)
    links = [lk for path in tokyo.configs.values() for lk in json.loads(path.read_text())["links"]]
    assert {lk["source"]["mode"] for lk in links} == {"photon", "sampled"}
    settings = links[0]["source"]["settings"]
    assert set(settings) == {"q_x", "p1", "p2", "mu1", "mu2"} and 0 < settings["q_x"] < 1

    def no_optimising(*_: object) -> object:
        raise AssertionError("the feeder optimised the settings again")

    monkeypatch.setattr(link_module, "settings_for_block", no_optimising)
    config = load_config(tokyo.configs["Koganei"])
    store = KeyStore(config.store_url, "Koganei")
    planned = {lk.link_id: lk.source.settings for lk in config.links}
    feeds = make_feeds("Koganei", config.links, store, config.unit_bits)  # would raise if it optimised
    assert feeds
    for feed in feeds:
        assert feed.sim is not None and planned[feed.link.link_id] is not None
        assert feed.sim.settings.q_x == planned[feed.link.link_id].q_x  # type: ignore[union-attr]
    store.close()


def test_feeds_are_shared_evenly_among_processes() -> None:
    """The costliest KMEs' feeds go first, each onto the least loaded process; KMEs with nothing to
    feed get none."""
    from qnet.scenarios.deploy import SAMPLED_FEED_COST, feed_cost, feeder_groups

    groups = feeder_groups({"A": 0.6, "B": 0.5, "C": 0.4, "D": 0.3, "E": 0.0}, 2)
    assert groups == [["A", "D"], ["B", "C"]]
    assert feeder_groups({"A": 1.0}, 4) == [["A"]]
    config = {"kme_id": "A", "links": [
        {"ends": ["A", "B"], "peer_store_url": "sqlite:///B.db", "source": {"kind": "prng"}},
        {"ends": ["B", "A"], "peer_store_url": "sqlite:///B.db", "source": {"kind": "prng"}},  # B runs it
        {"ends": ["C", "A"], "peer_store_url": None, "source": {"kind": "simulated", "mode": "sampled"}}]}
    assert feed_cost(config) == 2 * SAMPLED_FEED_COST
