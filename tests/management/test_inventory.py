"""Inventory in ETSI GS QKD 015 shapes: nodes, interfaces, physical and virtual links, applications."""

from __future__ import annotations

from qnet.control.controller import Controller, LinkReport
from qnet.control.routing import Topology
from qnet.management.inventory import network_inventory, qkd_node, stable_id

LINE = Topology(("A", "B", "C"), (("A", "B", "A-B"), ("B", "C", "B-C")))


def test_a_relayed_session_is_a_virtual_link_at_both_ends_and_the_links_carry_it() -> None:
    ctl = Controller(LINE, saes={"SA": "A", "SC": "C"}, capacity_bps={"A-B": 1e4, "B-C": 1e4})
    for node, lid in (("A", "A-B"), ("B", "B-C")):
        ctl.report(node, [LinkReport(lid, 5000, 8000.0, 0.02)], 0.0)
    session = ctl.open_session("SA", "SC", 0.0, key_rate_bps=2000)
    ctl.cut("B-C", 1.0)  # no other way: the session keeps its route, the link shows OFF
    a = qkd_node(ctl, "A", now_s=1.0, consumed_bits={session.key_stream_id: 4096})["qkd_node"]
    assert a["qkdn_id"] == stable_id("node", "A") and len(a["qkd_interfaces"]["qkd_interface"]) == 1
    kinds = {link["qkdl_type"].split(":")[1]: link for link in a["qkd_links"]["qkd_link"]}
    assert set(kinds) == {"PHYS", "VIRT"}
    assert kinds["PHYS"]["qkdl_performance"] == {"skr": 8000.0, "expected_consumption": 2000, "eskr": 6000.0}
    assert kinds["VIRT"]["qnet_route"] == ["A", "B", "C"]
    assert kinds["VIRT"]["qkdl_remote"]["qkdn_id"] == stable_id("node", "C")
    app = a["qkd_applications"]["qkd_app"][0]
    assert app["server_app_id"] == "SA" and app["client_app_id"] == ["SC"]
    assert app["app_statistics"]["statistics"][0]["consumed_bits"] == 4096
    b = network_inventory(ctl, now_s=1.0)["qkd_nodes"][1]
    status = {link["qkdl_name"]: link["qkdl_status"] for link in b["qkd_links"]["qkd_link"]}
    assert status == {"A-B": "etsi-qkd-node-types:ACTIVE", "B-C": "etsi-qkd-node-types:OFF"}
    assert b["qkd_applications"]["qkd_app"] == []  # B only relays
