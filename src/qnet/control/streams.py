"""What the controller keeps of an ETSI GS QKD 004 key stream beyond its admission: which of its two
applications have connected (OPEN_CONNECT at each end), and the key_IDs of its keys by index.

A key stream's keys are handed out by the source application's KME (it takes them from its link, or
relays them, as for ETSI 014's enc_keys); the destination's KME takes the same keys by key_ID (as
for dec_keys). The key_IDs are not secret (a key_ID names a key, it reveals nothing of it), and the
two KMEs need not be peers (a relayed stream's ends are not), so the source's KME posts each batch's
key_IDs here and the destination's reads them: the controller is the one party both already trust
and talk to. Key material never passes through the controller.

Pure logic, no clock needed: the server (``qnet.servers.controller``) wakes the readers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qnet.errors import ConflictError, InvalidRequestError

__all__ = ["MAX_PENDING_IDS", "StreamKeys"]

MAX_PENDING_IDS = 65_536
"""The most key_IDs a stream keeps that its destination has not read yet: the source's KME posts no
more until it reads (a destination that never reads cannot fill the controller's memory)."""


@dataclass
class StreamKeys:
    """The key_IDs of one key stream by index, from ``read_upto`` (what the destination's KME has
    read below it is dropped) to ``next_index`` (the next the source's KME will post).

    Examples:
        >>> ks = StreamKeys()
        >>> ks.post(0, ["a", "b", "c"])
        >>> ks.read(1, 10)
        ['b', 'c']
        >>> ks.read_upto, ks.next_index
        (1, 3)
        >>> ks.post(1, ["b", "c"])   # the same again (an answer lost): taken once
        >>> ks.next_index
        3
    """

    ids: dict[int, str] = field(default_factory=dict)
    next_index: int = 0
    read_upto: int = 0

    def post(self, first_index: int, key_ids: list[str]) -> None:
        """The source's KME handed out keys ``first_index``... of the stream under these key_IDs.

        Raises:
            InvalidRequestError: for indices that do not follow the last posted (a gap, or other
                key_IDs at indices posted already; an exact repeat is taken once).
            ConflictError: if the destination is :data:`MAX_PENDING_IDS` behind.
        """
        if first_index < self.next_index and self._repeat(first_index, key_ids):
            return  # a post whose answer was lost, sent again
        if first_index != self.next_index:
            raise InvalidRequestError(f"key stream indices must follow on: {first_index} posted where "
                                      f"{self.next_index} is next")
        if self.next_index + len(key_ids) - self.read_upto > MAX_PENDING_IDS:
            raise ConflictError(f"the destination has not read {self.next_index - self.read_upto} key_IDs "
                                f"of this stream yet; post again after it reads")
        for i, key_id in enumerate(key_ids):
            self.ids[first_index + i] = key_id
        self.next_index += len(key_ids)

    def _repeat(self, first_index: int, key_ids: list[str]) -> bool:
        """Whether these key_IDs are already posted at these indices (those read and dropped since
        are taken as equal)."""
        if first_index + len(key_ids) > self.next_index:
            return False
        return all(self.ids.get(first_index + i, key_id) == key_id for i, key_id in enumerate(key_ids))

    def read(self, start: int, limit: int) -> list[str]:
        """The key_IDs from index ``start`` (at most ``limit``); those below ``start`` are dropped.

        Raises:
            InvalidRequestError: for a ``start`` below what was read before (they are gone).
        """
        if start < self.read_upto:
            raise InvalidRequestError(f"key_IDs below index {self.read_upto} were read already")
        for index in range(self.read_upto, min(start, self.next_index)):
            self.ids.pop(index, None)
        self.read_upto = max(self.read_upto, min(start, self.next_index))
        return [self.ids[i] for i in range(start, min(start + limit, self.next_index))]
