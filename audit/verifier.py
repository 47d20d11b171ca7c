"""The verification engine shared by ``manage.py audit_verify`` and ``bin/verify-audit-export``.

Standard library only: the block between the ENGINE markers is copied verbatim into
bin/verify-audit-export (a test keeps the two identical), so a third party can check an
export with nothing but Python. See docs/audit-verification.md for the formats.
"""

from __future__ import annotations

# --- ENGINE BEGIN ---
import base64
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

EVENT_DOMAIN = b"agentkey-audit-event-v1\n"
CHECKPOINT_DOMAIN = b"agentkey-audit-checkpoint-v1\n"
GENESIS_HASH = "0" * 64
TAG_CHARS = 8
EVENT_FIELDS = (
    "action",
    "actor_id",
    "actor_label",
    "actor_type",
    "agent_id",
    "created_at",
    "ip",
    "metadata",
    "org_id",
    "request_id",
    "target_id",
    "target_label",
    "target_type",
    "tool_id",
)
CHECKPOINT_FIELDS = (
    "created_at",
    "event_count",
    "events_digest",
    "first_event_id",
    "last_event_id",
    "missing_ids",
    "prev_hash",
    "sequence",
    "tags",
)
MAX_LISTED = 1000

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


@dataclass
class Problem:
    kind: str
    detail: str
    event_id: int | None = None
    checkpoint: int | None = None
    org_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Report:
    events: int = 0
    sealed_events: int = 0
    unsealed_events: int = 0
    checkpoints: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.counts

    def add(self, problem: Problem) -> None:
        self.counts[problem.kind] += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(problem)


def checkpoint_hash(cp: dict[str, Any]) -> str:
    canonical = _encode({k: cp[k] for k in CHECKPOINT_FIELDS}).encode("ascii")
    return hashlib.sha256(canonical + b"\n" + cp["signature"].encode("ascii")).hexdigest()


def _mac_b64(key: bytes, domain: bytes, canonical: bytes) -> str:
    return base64.b64encode(hmac.digest(key, domain + canonical, "sha256")).decode("ascii")


class Verifier:
    """Checks checkpoints first (``check_checkpoints``), then one pass over events in id order.

    ``keys`` maps key ids to HMAC keys; without keys only the hash structure (chain, digests,
    tags) is checked, not authenticity. ``anchors`` are copies of checkpoints kept outside
    the database ({"sequence", "hash"}): a checkpoint missing from the database but anchored
    reveals a truncated tail.
    """

    def __init__(
        self,
        *,
        keys: dict[str, bytes] | None,
        checkpoints: Sequence[dict[str, Any]],
        anchors: Sequence[dict[str, Any]] = (),
        from_start: bool = True,
    ) -> None:
        self.keys = keys
        self.cps = sorted(checkpoints, key=lambda c: c["sequence"])
        self.anchors = anchors
        self.from_start = from_start
        self.report = Report(checkpoints=len(self.cps))
        # A 64-bit hash of each MAC seen (see check_signed): about 60 MB per million events.
        self.seen: set[int] = set()

    # --- checkpoints ---

    def check_checkpoints(self) -> None:  # noqa: PLR0912  (one branch per documented rule)
        add = self.report.add
        prev: dict[str, Any] | None = None
        for cp in self.cps:
            seq = cp["sequence"]
            if self.keys is not None:
                kid, _sep, mac = cp["signature"].partition(":")
                key = self.keys.get(kid)
                canonical = _encode({k: cp[k] for k in CHECKPOINT_FIELDS}).encode("ascii")
                if key is None:
                    add(
                        Problem(
                            "unknown_key", f"checkpoint signed with unknown key id {kid!r}", checkpoint=seq
                        )
                    )
                elif not hmac.compare_digest(_mac_b64(key, CHECKPOINT_DOMAIN, canonical), mac):
                    add(Problem("checkpoint_invalid", "checkpoint signature does not match", checkpoint=seq))
            span = cp["last_event_id"] - cp["first_event_id"] + 1
            if (
                span != cp["event_count"] + len(cp["missing_ids"])
                or len(cp["tags"]) != cp["event_count"] * TAG_CHARS
            ):
                add(Problem("checkpoint_invalid", "checkpoint counts do not add up", checkpoint=seq))
            if prev is None:
                if self.from_start and (seq != 1 or cp["prev_hash"] != GENESIS_HASH):
                    add(
                        Problem(
                            "checkpoint_missing",
                            f"the chain starts at checkpoint {seq}, not 1",
                            checkpoint=seq,
                        )
                    )
            else:
                if seq != prev["sequence"] + 1:
                    gap = f"{prev['sequence'] + 1}-{seq - 1}"
                    add(Problem("checkpoint_missing", f"checkpoints {gap} are missing", checkpoint=seq))
                elif cp["prev_hash"] != checkpoint_hash(prev):
                    add(
                        Problem(
                            "checkpoint_chain_broken",
                            "prev_hash does not match checkpoint before",
                            checkpoint=seq,
                        )
                    )
                if cp["first_event_id"] != prev["last_event_id"] + 1:
                    add(
                        Problem(
                            "checkpoint_chain_broken",
                            "event range not contiguous with previous",
                            checkpoint=seq,
                        )
                    )
            prev = cp
        by_seq = {cp["sequence"]: cp for cp in self.cps}
        low = self.cps[0]["sequence"] if self.cps and not self.from_start else 1
        for anchor in self.anchors:
            seq = anchor["sequence"]
            if seq < low:
                continue
            anchored = by_seq.get(seq)
            if anchored is None:
                add(
                    Problem(
                        "checkpoint_missing",
                        f"anchored checkpoint {seq} (events up to id {anchor.get('last_event_id')}) is gone",
                        checkpoint=seq,
                    )
                )
            elif checkpoint_hash(anchored) != anchor["hash"]:
                add(
                    Problem(
                        "checkpoint_chain_broken", "checkpoint differs from its anchored copy", checkpoint=seq
                    )
                )

    # --- events ---

    def check_events(self, rows: Iterable[Sequence[Any]]) -> Report:
        """``rows``: (id, *EVENT_FIELDS values in canonical form, signature), ascending id."""
        keys, fields, encode, digest_fn, b64 = self.keys, EVENT_FIELDS, _encode, hmac.digest, base64.b64encode

        def checked() -> Iterator[tuple[int, str, str | None, bool]]:
            for row in rows:
                signature = row[15]
                kid, _sep, mac = signature.partition(":")
                key = keys.get(kid) if keys is not None else None
                mac_ok = False
                if key is not None:
                    canonical = encode(dict(zip(fields, row[1:15], strict=True))).encode("ascii")
                    mac_ok = b64(digest_fn(key, EVENT_DOMAIN + canonical, "sha256")).decode("ascii") == mac
                yield row[0], signature, row[9], mac_ok

        return self.check_signed(checked())

    def check_signed(self, rows: Iterable[tuple[int, str, str | None, bool]]) -> Report:
        """One pass over (id, signature, org_id, mac_ok) in ascending id.

        ``mac_ok`` says whether the event's canonical content matches its signature under
        its key id (computed by the caller, ignored when that key id is not loaded).
        """
        report, add, keys = self.report, self.report.add, self.keys
        cps = iter(self.cps)
        cp = next(cps, None)
        state = _Sealed(cp, self.cps)
        first, last = (cp["first_event_id"], cp["last_event_id"]) if cp is not None else (0, 0)
        pending = state.rows.append
        events = sealed = 0
        # The id is not signed (it is bound by checkpoints), so a copy of a valid event under
        # a new id would pass its signature: no two events may carry the same MAC.
        seen = self.seen
        remember = seen.add
        for event_id, signature, org_id, mac_ok in rows:
            events += 1
            kid, _sep, mac = signature.partition(":")
            if mac:
                marker = hash(mac)
                if marker in seen:
                    add(
                        Problem(
                            "duplicated", "copy of an earlier event's signed content", event_id, org_id=org_id
                        )
                    )
                remember(marker)
            if keys is None:
                sig_ok = True
            elif kid in keys:
                sig_ok = mac_ok
            else:
                sig_ok = False
                add(
                    Problem(
                        "unsigned" if not signature else "unknown_key",
                        "event has no signature" if not signature else f"unknown key id {kid!r}",
                        event_id=event_id,
                        org_id=org_id,
                    )
                )
            while cp is not None and event_id > last:
                state.close(report)
                cp = next(cps, None)
                state = _Sealed(cp, self.cps)
                pending = state.rows.append
                if cp is not None:
                    first, last = cp["first_event_id"], cp["last_event_id"]
            if cp is None or event_id < first:
                report.unsealed_events += 1
                if not sig_ok and keys is not None and kid in keys:
                    add(
                        Problem(
                            "invalid_signature",
                            "unsealed event fails its signature: edited or forged",
                            event_id,
                            org_id=org_id,
                        )
                    )
                continue
            sealed += 1
            pending((event_id, signature, mac[:TAG_CHARS], sig_ok and bool(signature), org_id))
        while cp is not None:
            state.close(report)
            cp = next(cps, None)
            state = _Sealed(cp, self.cps)
        report.events += events
        report.sealed_events += sealed
        return report


class _Sealed:
    """The ids one checkpoint covers: checked in bulk, walked one by one only when that fails."""

    def __init__(self, cp: dict[str, Any] | None, all_cps: Sequence[dict[str, Any]] = ()) -> None:
        self.cp = cp
        self.all_cps = all_cps
        self.rows: list[tuple[int, str, str, bool, str | None]] = []
        if cp is None:
            return
        self.seq = cp["sequence"]
        self.missing = set(cp["missing_ids"])
        self.expect = cp["first_event_id"]
        self.index = 0
        self.tags = cp["tags"]
        self.digest = hashlib.sha256()
        self.problems = 0

    def _clean(self) -> bool:
        """Every row validly signed, the sealed tags in order, the sealed digest: nothing to report.

        The digest covers each "id:signature" line in id order, so a match means exactly the
        sealed rows are present (none deleted, inserted or moved) and none was re-signed.
        """
        rows, cp = self.rows, self.cp
        if cp is None:
            return True
        if len(rows) != cp["event_count"] or not all(row[3] for row in rows):
            return False
        if "".join([row[2] for row in rows]) != self.tags:
            return False
        lines = "".join([f"{row[0]}:{row[1]}\n" for row in rows])
        return bool(hashlib.sha256(lines.encode()).hexdigest() == cp["events_digest"])

    def _skip_to(self, event_id: int, report: Report) -> None:
        while self.expect < event_id:
            if self.expect not in self.missing:
                report.add(Problem("deleted", "sealed event is gone", self.expect, self.seq))
                self.problems += 1
                self.index += 1
            self.expect += 1

    def see(
        self, event_id: int, signature: str, *, tag: str, sig_ok: bool, org_id: str | None, report: Report
    ) -> None:
        if event_id in self.missing:
            report.add(Problem("inserted", "event added inside a sealed range", event_id, self.seq, org_id))
            self.problems += 1
            return
        self._skip_to(event_id, report)
        sealed_tag = self.tags[self.index * TAG_CHARS : (self.index + 1) * TAG_CHARS]
        self.index += 1
        self.expect = event_id + 1
        self.digest.update(f"{event_id}:{signature}\n".encode())
        if not sig_ok:
            if signature:  # an unsigned or unknown-key event was already reported
                report.add(
                    Problem("modified", "content does not match its signature", event_id, self.seq, org_id)
                )
            self.problems += 1
        elif tag.ljust(TAG_CHARS, "-") != sealed_tag:
            origin = sealed_at(self.all_cps, tag.ljust(TAG_CHARS, "-"))
            where = f"the event sealed at id {origin}" if origin is not None else "an event sealed elsewhere"
            report.add(Problem("reordered", f"holds {where}", event_id, self.seq, org_id))
            self.problems += 1

    def close(self, report: Report) -> None:
        if self.cp is None or self._clean():
            return
        for event_id, signature, tag, sig_ok, org_id in self.rows:
            self.see(event_id, signature, tag=tag, sig_ok=sig_ok, org_id=org_id, report=report)
        self._skip_to(self.cp["last_event_id"] + 1, report)
        if not self.problems and self.digest.hexdigest() != self.cp["events_digest"]:
            report.add(
                Problem("checkpoint_digest_mismatch", "covered events do not match", checkpoint=self.seq)
            )


def sealed_at(cps: Sequence[dict[str, Any]], tag: str) -> int | None:
    """The id a checkpoint sealed with this tag (only looked up when something moved)."""
    for cp in cps:
        tags, start = cp["tags"], 0
        while (at := tags.find(tag, start)) >= 0:
            if at % TAG_CHARS == 0:
                missing = set(cp["missing_ids"])
                ids = (i for i in range(cp["first_event_id"], cp["last_event_id"] + 1) if i not in missing)
                return next(i for n, i in enumerate(ids) if n == at // TAG_CHARS)
            start = at + 1
    return None


def parse_keys(value: str) -> dict[str, bytes]:
    """``id:base64key`` entries separated by commas or whitespace (AGENTKEY_AUDIT_KEY)."""
    keys = {}
    for entry in value.replace(",", " ").split():
        kid, _sep, material = entry.partition(":")
        keys[kid] = base64.b64decode(material + "=" * (-len(material) % 4), altchars=b"-_")
    return keys


# --- ENGINE END ---
