"""What the API answers, without HTTP: look-ups by raw identifier and profiles by OneID, every
answer of one request read from one store version.

A raw value is normalised and keyed-hashed by the standardize stage's own code
(:func:`oneid.standardize.hashing.hash_identifier`, with standardize's blocklist),
so the service finds exactly the hashes the batch wrote. The raw value lives only for that.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from oneid.conf.models import ServeConf
from oneid.serve.access_log import AccessLog
from oneid.serve.auth import Caller
from oneid.serve.documents import PROFILE_FIELDS
from oneid.serve.store import ProfileStore, Snapshot, identifier_key
from oneid.standardize.hashing import UNKNOWN_TYPE, HashKey, hash_identifier

MAX_MERGE_HOPS = 16
"""A retired OneID is followed through at most this many merges to the live one."""


class ApiError(Exception):
    """An answer that is an error: HTTP status, a stable code, a message for humans."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict | None = None,
        details: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
        self.details = details or {}
        """More fields of the error object (e.g. ``split_into`` of a retired OneID)."""


@dataclass(frozen=True)
class Hashed:
    key: bytes | None
    reason: str | None
    """Why the value is no identifier (``invalid_phone`` ...), when ``key`` is None."""


def require(caller: Caller, scope: str) -> None:
    if scope not in caller.scopes:
        raise ApiError(403, "forbidden", f"this API key lacks the scope {scope}")


class Answers:
    """Look-ups and profiles from the store's serving version."""

    def __init__(
        self,
        store: ProfileStore,
        key: HashKey,
        conf: ServeConf,
        access: AccessLog,
        junk_values: Mapping[str, frozenset[str]] | None = None,
    ):
        self.store, self.key, self.conf, self.access = store, key, conf, access
        self.junk_values = junk_values or {}
        """standardize's blocklist: a value it never keeps answers as invalid, as it is."""
        self._key_versions: dict[str, int] = {}

    # --- the version ---------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The serving version, refused when none is loaded or its hashes use another key."""
        snap = self.store.snapshot()
        if snap is None:
            raise ApiError(503, "no_version", "the store holds no loaded version yet")
        return self._checked(snap)

    async def _oneids(self, keys: list[bytes]) -> tuple[Snapshot, list[int | None]]:
        """The serving version and the OneIDs of ``keys`` in it (one round trip on Redis,
        shared with the look-ups waiting at the same time)."""
        found = await self.store.lookup_async(keys)
        if found is None:
            raise ApiError(503, "no_version", "the store holds no loaded version yet")
        return self._checked(found[0]), found[1]

    def _checked(self, snap: Snapshot) -> Snapshot:
        if self._key_version(snap.version) != self.key.version:
            raise ApiError(
                503,
                "key_version_mismatch",
                f"store version {snap.version} was hashed with HMAC key version "
                f"{self._key_version(snap.version)}, this service has {self.key.version}",
            )
        return snap

    def _key_version(self, version: str) -> int | None:
        if version not in self._key_versions:
            info = self.store.info(version)
            if info is None:
                return None
            self._key_versions[version] = info.key_version
        return self._key_versions[version]

    def readiness(self) -> dict:
        info = self.store.current()
        if info is None:
            return {
                "status": "not_ready",
                "store": self.store.kind,
                "version": None,
                "reason": "no_version",
            }
        answer = {
            "status": "ok",
            "store": self.store.kind,
            "version": info.version,
            "identity_run": info.identity_run,
            "as_of": info.as_of,
            "loaded_at": info.loaded_at,
        }
        if info.key_version != self.key.version:
            answer |= {"status": "not_ready", "reason": "key_version_mismatch"}
        return answer

    # --- look-ups ------------------------------------------------------------------------
    def hashed(self, id_type: str, raw: str) -> Hashed:
        value_hash, _, reason = hash_identifier(self.key, self.junk_values, id_type, raw)
        if reason == UNKNOWN_TYPE:
            raise ApiError(422, "unknown_id_type", f"unknown identifier type {id_type!r}")
        if value_hash is None:
            return Hashed(None, reason)
        return Hashed(identifier_key(id_type, value_hash), None)

    def _hashed_or_reason(self, id_type: str, raw: str) -> Hashed:
        try:
            return self.hashed(id_type, raw)
        except ApiError as error:
            return Hashed(None, error.code)

    async def lookup(
        self, caller: Caller, id_type: str, raw: str, with_profile: bool, tags: list[str] | None
    ) -> dict:
        require(caller, "lookup")
        if with_profile:
            require(caller, "profile:read")
        hashed = self.hashed(id_type, raw)
        if hashed.key is None:
            raise ApiError(422, "invalid_identifier", f"not a valid {id_type}: {hashed.reason}")
        snap, [oneid] = await self._oneids([hashed.key])
        self.access.write(caller.name, "lookup", snap.version, id_type=id_type, oneid=oneid)
        if oneid is None:
            raise ApiError(404, "not_found", f"no OneID for this {id_type}")
        answer: dict = {"oneid": oneid, "store_version": snap.version}
        if with_profile:
            answer["profile"] = self._profile(snap, oneid, tags, self.conf.page_size)
        return answer

    async def batch(self, caller: Caller, items: list[tuple[str, str]]) -> dict:
        require(caller, "lookup")
        if len(items) > self.conf.batch_limit:
            raise ApiError(
                422, "batch_too_large", f"at most {self.conf.batch_limit} identifiers per batch"
            )
        hashed = [self._hashed_or_reason(id_type, raw) for id_type, raw in items]
        snap, oneids = await self._oneids([h.key for h in hashed if h.key is not None])
        found = iter(oneids)
        results = []
        for index, ((id_type, _), h) in enumerate(zip(items, hashed, strict=True)):
            if h.key is None:
                results.append({"index": index, "status": "invalid", "reason": h.reason})
                continue
            oneid = next(found)
            status = "found" if oneid is not None else "not_found"
            results.append({"index": index, "status": status, "oneid": oneid})
            self.access.write(
                caller.name, "batch_lookup", snap.version, id_type=id_type, oneid=oneid
            )
        return {"store_version": snap.version, "results": results}

    # --- profiles ------------------------------------------------------------------------
    def profile(self, caller: Caller, oneid: int, tags: list[str] | None, page_size: int) -> dict:
        require(caller, "profile:read")
        snap = self.snapshot()
        with self._logged_if_retired(caller, "profile", snap, oneid):
            answer = self._profile(snap, oneid, tags, page_size)
        self.access.write(
            caller.name, "profile", snap.version, oneid=answer["oneid"], requested_oneid=oneid
        )
        return answer

    @contextmanager
    def _logged_if_retired(
        self, caller: Caller, action: str, snap: Snapshot, oneid: int
    ) -> Iterator[None]:
        """A retired OneID's answer names OneIDs (``split_into``): it is in the access log."""
        try:
            yield
        except ApiError as error:
            if error.code == "oneid_retired":
                self.access.write(
                    caller.name, action, snap.version, oneid=None, requested_oneid=oneid
                )
            raise

    def page(self, caller: Caller, oneid: int, listing: str, offset: int, limit: int) -> dict:
        """One page of a profile's ``identifiers`` or ``audiences``."""
        require(caller, "profile:read")
        snap = self.snapshot()
        with self._logged_if_retired(caller, f"profile_{listing}", snap, oneid):
            live, document = self._document(snap, oneid)
        self.access.write(
            caller.name, f"profile_{listing}", snap.version, oneid=live, requested_oneid=oneid
        )
        items = document.get(listing) or []
        answer = _page(items, offset, limit)
        if listing == "audiences":
            answer["as_of"] = document.get("audiences_as_of")
        return answer

    def _document(self, snap: Snapshot, oneid: int) -> tuple[int, dict]:
        """(live OneID, its document), following merges from a retired OneID; 410 for a OneID
        (or the end of its merges) retired without a merge."""
        current, document = self._live(snap, oneid)
        if document is not None:
            return current, json.loads(document)
        [split] = snap.split_into([current])
        if split is None:
            raise ApiError(404, "not_found", f"no profile for OneID {oneid}")
        live = sorted({found for found, doc in map(partial(self._live, snap), split) if doc})
        via = f" (merged into {current})" if current != oneid else ""
        raise ApiError(
            410,
            "oneid_retired",
            f"OneID {oneid}{via} is retired: none of its identifiers is left (records deleted "
            "or erased); split_into lists the live OneIDs that split off it",
            details={
                "oneid": current,
                "requested_oneid": oneid if current != oneid else None,
                "split_into": live,
            },
        )

    @staticmethod
    def _live(snap: Snapshot, oneid: int) -> tuple[int, str | None]:
        """(the OneID ``oneid`` ends at through merges, its document or None)."""
        current = oneid
        for _ in range(MAX_MERGE_HOPS):
            [document] = snap.profiles([current])
            if document is not None:
                return current, document
            [merged] = snap.merged_into([current])
            if merged is None:
                break
            current = merged
        return current, None

    def _profile(self, snap: Snapshot, oneid: int, tags: list[str] | None, size: int) -> dict:
        live, document = self._document(snap, oneid)
        wanted = set(tags) if tags else None
        selected = [
            {"name": name, "value": tag.get("value"), "source": "batch", "as_of": tag.get("as_of")}
            for name, tag in (document.get("tags") or {}).items()
            if wanted is None or name in wanted
        ]
        selected += [
            {"name": t.name, "value": t.value, "source": "realtime", "updated_at": t.updated_at}
            for t in self.store.realtime_tags(live)
            if wanted is None or t.name in wanted
        ]
        audiences = _page(document.get("audiences") or [], 0, size)
        return {
            "oneid": live,
            "requested_oneid": oneid if live != oneid else None,
            "merged_into": live if live != oneid else None,
            "store_version": snap.version,
            **{k: document.get(k) for k in PROFILE_FIELDS},
            "identifiers": _page(document.get("identifiers") or [], 0, size),
            "tags": selected,
            "audiences": {**audiences, "as_of": document.get("audiences_as_of")},
        }


def _page(items: list, offset: int, limit: int) -> dict:
    end = offset + limit
    return {
        "items": items[offset:end],
        "total": len(items),
        "next_offset": end if end < len(items) else None,
    }
