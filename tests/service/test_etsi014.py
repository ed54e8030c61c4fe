"""ETSI GS QKD 014 semantics over a real key store: which status each dec_keys ("Get key with key
IDs") failure gets. The standard: "The KME shall reject the request with a 401 HTTP status code if
the SAE ID of the requestor was not an SAE ID supplied to the 'Get key' method each time it was
called resulting in the return of any of the Key IDs being requested"."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qnet.errors import QNetError
from qnet.keys.store import DeliveredKey, KeyStore
from qnet.servers.errors import ETSI014_STATUS, status_of
from qnet.service.etsi014 import ETSI014Service
from tests.keys.test_store import assign_at_peer, synced, take

SAES = {"SAE_A": "A", "SAE_B": "B", "SAE_X": "B"}


@dataclass
class _Manager:
    """The part of a key manager dec_keys uses, over one end's store (SAE_X is a third SAE at B)."""

    store: KeyStore
    kme_id: str
    unit_bits: int = 256
    saes: dict[str, str] = field(default_factory=lambda: dict(SAES))

    def local_sae(self, sae_id: str) -> bool:
        return self.saes.get(sae_id) == self.kme_id

    def node_of(self, sae_id: str) -> str | None:
        return self.saes.get(sae_id)

    def allowed(self, sae_a: str, sae_b: str) -> bool:
        return True

    def dec_keys(self, slave: str, master: str, key_ids: Sequence[str]) -> list[DeliveredKey]:
        return self.store.take_for_slave(key_ids, slave, master)


@pytest.fixture
def ends(tmp_path: Path) -> Iterator[tuple[ETSI014Service, ETSI014Service, list[DeliveredKey]]]:
    """KME A and KME B of one link; SAE_A (at A) was given two keys for slave SAE_B (at B)."""
    a, b = KeyStore(f"sqlite:///{tmp_path / 'a.db'}", "A"), KeyStore(f"sqlite:///{tmp_path / 'b.db'}", "B")
    synced(a, b, 50)
    keys = take(a, 2)
    assign_at_peer(b, a)
    yield ETSI014Service(_Manager(a, "A")), ETSI014Service(_Manager(b, "B")), keys  # type: ignore[arg-type]
    a.close()
    b.close()


def _status(call: object, *args: object) -> int:
    with pytest.raises(QNetError) as err:
        call(*args)  # type: ignore[operator]
    return status_of(err.value, ETSI014_STATUS)


def test_a_key_asked_for_by_another_sae_at_the_slaves_kme_is_401(
        ends: tuple[ETSI014Service, ETSI014Service, list[DeliveredKey]]) -> None:
    """SAE_X, at the slave's KME but not named by the master: 401, naming the key_ID; nothing is
    spent, so the slave still gets its key afterwards."""
    _, kme_b, keys = ends
    ids = [keys[0].key_ID]
    with pytest.raises(QNetError) as err:
        kme_b.dec_keys("SAE_X", "SAE_A", ids)
    assert status_of(err.value, ETSI014_STATUS) == 401
    assert err.value.details == [{"key_ID": ids[0], "reason": "not a key for this SAE"}]
    assert kme_b.dec_keys("SAE_B", "SAE_A", ids)["keys"][0]["key_ID"] == ids[0]


def test_the_master_asking_its_own_kme_for_its_keys_is_401(
        ends: tuple[ETSI014Service, ETSI014Service, list[DeliveredKey]]) -> None:
    """What qkdsec doctor's round trip does: the master SAE calls dec_keys at its own KME for the
    key_IDs it was just given, naming its slave as the master. The master was not supplied to Get
    key as a slave of these keys: 401."""
    kme_a, _, keys = ends
    assert _status(kme_a.dec_keys, "SAE_A", "SAE_B", [keys[0].key_ID]) == 401


def test_unknown_or_spent_key_ids_stay_400(ends: tuple[ETSI014Service, ETSI014Service, list[DeliveredKey]]) -> None:
    """A key_ID no KME issued, or one already delivered to this slave: 400 (a bad request, not an
    unauthorised caller); a mix with a key for another SAE is 401."""
    _, kme_b, keys = ends
    unknown = str(uuid.uuid4())
    assert _status(kme_b.dec_keys, "SAE_B", "SAE_A", [unknown]) == 400
    kme_b.dec_keys("SAE_B", "SAE_A", [keys[0].key_ID])
    assert _status(kme_b.dec_keys, "SAE_B", "SAE_A", [keys[0].key_ID]) == 400
    assert _status(kme_b.dec_keys, "SAE_X", "SAE_A", [unknown, keys[1].key_ID]) == 401
