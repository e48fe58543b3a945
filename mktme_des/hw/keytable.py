"""A package's MKTME key table.

Each KeyID has one of three behaviours (MKTME spec, PCONFIG commands):

* ``tme``: the platform TME key of this package, or no encryption when TME bypass is on.
  KeyID 0 always behaves so; every other KeyID starts so, and returns to it on CLEAR_KEY.
* ``key``: AES-XTS with a data key and a tweak key (SET_KEY_DIRECT / SET_KEY_RANDOM).
* ``no-encrypt``: data crosses the memory bus in plaintext (NO_ENCRYPT).

:meth:`KeyTable.key` answers what the memory controller needs per line: the 32- or 64-byte
XTS key (data key then tweak key) or ``None`` for plaintext. Changing a key touches no cache:
lines already cached keep their plaintext, and a dirty line written back later is encrypted
with whatever the table holds when it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

TME = "tme"
KEY = "key"
NO_ENCRYPT = "no-encrypt"


@dataclass(frozen=True)
class KeyEntry:
    """One KeyID's state: behaviour, key bytes, and when and how it was last set."""

    mode: str
    key: bytes | None
    command: str
    time: int
    version: int


class KeyTable:
    """The key table of one package (one memory controller's key set)."""

    def __init__(self, package: int, max_keyid: int, tme_key: bytes, bypass: bool) -> None:
        self.package = package
        self.max_keyid = max_keyid
        self.tme_key = tme_key
        self.bypass = bypass
        self.programs = 0
        self.reset_time = 0
        self.reset_cause = "boot"
        self._entries: dict[int, KeyEntry] = {}
        # Effective key per KeyID, the hot path of every memory access: one list for the
        # table's life, so the memory controller may hold it.
        self._keys: list[bytes | None] = [self._tme()] * (max_keyid + 1)

    def _tme(self) -> bytes | None:
        return None if self.bypass else self.tme_key

    def key(self, keyid: int) -> bytes | None:
        """The XTS key used for ``keyid`` now; ``None`` means plaintext on the bus."""
        return self._keys[keyid]

    def entry(self, keyid: int) -> KeyEntry:
        return self._entries.get(keyid) or KeyEntry(TME, self._tme(), self.reset_cause,
                                                    self.reset_time, 0)

    def mode(self, keyid: int) -> str:
        return self.entry(keyid).mode

    def set(self, keyid: int, mode: str, key: bytes | None, command: str, time: int) -> None:
        """Install a new behaviour for ``keyid`` (the effect of a successful PCONFIG)."""
        if keyid == 0:
            raise ValueError("KeyID 0 always has TME behaviour")
        version = self.entry(keyid).version + 1
        effective = self._tme() if mode == TME else (None if mode == NO_ENCRYPT else key)
        self._entries[keyid] = KeyEntry(mode, effective, command, time, version)
        self._keys[keyid] = effective
        self.programs += 1

    def reset(self, time: int = 0, cause: str = "boot") -> None:
        """Forget every programmed key: a package that comes online, or a reboot, starts so."""
        self.reset_time = time
        self.reset_cause = cause
        self._entries.clear()
        self._keys[:] = [self._tme()] * (self.max_keyid + 1)

    def programmed(self) -> dict[int, KeyEntry]:
        return dict(self._entries)

    def to_dict(self) -> dict:
        return {
            "programs": self.programs,
            "keyids": {
                str(k): {"mode": e.mode, "command": e.command, "time_ns": e.time / 1000,
                         "version": e.version}
                for k, e in sorted(self._entries.items())
            },
        }
