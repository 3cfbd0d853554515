"""The chaos soak's judges (bench/chaos.py): what the customers got, against what was sent,
against the in-process replay, and against the analytics rows. Pure functions over the data
the soak collected, so that each judge is shown to fail on a bad input
(``tests/test_chaos_judge.py``); :func:`dump_analytics` reads one worker's embedded store in
a child process (chdb holds one data directory per process).

* :func:`judge_answers`: each sent turn is *received* (its first response is OK), an *error
  response* (its first response is an ERROR) or *lost* (no response); ``duplicates`` are
  response records beyond the first for a turn.
* :func:`judge_responses`: the customer's TurnResponse against the replay's, on the fields a
  customer sees (:func:`customer_view`): the text, status, error, outcome, the session and
  address it was routed to, the turns it also answers. Timings and ``responded_at`` differ
  by nature and are left out.
* :func:`judge_analytics`: the ``turns`` rows of every worker's store, by (tenant, session,
  turn id): every received turn exactly once over all stores (``FINAL``, the analyst views'
  reading), none of another turn. Rows not yet merged in a store (the same key twice before
  ``ReplacingMergeTree`` collapses it) are counted apart, as ``analytics_unmerged_rows``:
  no analyst query sees them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from schemas.events.turn_response import ResponseStatus, TurnResponse

TurnKey = tuple[str, str, str]
"""(tenant id, session id, turn id): a turn id is unique within its session."""

EXAMPLES = 5


def customer_view(response: TurnResponse) -> dict[str, Any]:
    """What a customer (or the gateway routing to them) sees of a response."""
    return {
        "turn_id": response.turn_id,
        "session_id": response.session_id,
        "tenant_id": response.tenant_id,
        "agent_id": response.agent_id,
        "channel": response.channel.value,
        "channel_id": response.channel_id,
        "status": response.status.value,
        "text": response.text,
        "error": (response.error.phase.value, response.error.code) if response.error else None,
        "outcome": response.outcome.model_dump(mode="json") if response.outcome else None,
        "coalesced_turn_ids": list(response.coalesced_turn_ids),
    }


def judge_answers(
    turn_ids: Iterable[str], responses: Mapping[str, TurnResponse], counts: Mapping[str, int]
) -> dict[str, Any]:
    """Sent, received (OK), error responses, lost, duplicates over the turns sent."""
    sent = list(turn_ids)
    errors = [t for t in sent if t in responses and responses[t].status is not ResponseStatus.OK]
    lost = [t for t in sent if t not in responses]
    return {
        "sent": len(sent),
        "received": len(sent) - len(errors) - len(lost),
        "error_responses": len(errors),
        "lost": len(lost),
        "duplicates": sum(max(0, counts.get(t, 0) - 1) for t in sent),
        "lost_turn_ids": lost,
        "error_examples": [
            {"turn_id": t, **customer_view(responses[t])} for t in errors[:EXAMPLES]
        ],
    }


def judge_responses(
    streamed: Mapping[str, TurnResponse], replayed: Mapping[str, TurnResponse]
) -> dict[str, Any]:
    """Each replayed turn's response against the one the customer got."""
    compared = mismatched = 0
    examples: list[dict[str, Any]] = []
    for turn_id, theirs in replayed.items():
        got = streamed.get(turn_id)
        if got is None:
            continue  # lost: counted in `lost`
        compared += 1
        seen, expected = customer_view(got), customer_view(theirs)
        diff = {k: {"got": seen[k], "replay": expected[k]} for k in seen if seen[k] != expected[k]}
        if diff:
            mismatched += 1
            if len(examples) < EXAMPLES:
                examples.append({"turn_id": turn_id, **diff})
    return {
        "response_compared": compared,
        "response_mismatches": mismatched,
        "response_mismatch_examples": examples,
    }


def judge_analytics(
    expected: Iterable[TurnKey],
    final_rows: Iterable[Iterable[TurnKey]],
    raw_rows: Iterable[Iterable[TurnKey]] = (),
) -> dict[str, Any]:
    """``final_rows``: per store, the keys of its ``turns FINAL`` rows; ``raw_rows``: per
    store, the keys of its rows as stored (without FINAL)."""
    wanted = set(expected)
    per_store = [Counter(rows) for rows in final_rows]
    seen: Counter[TurnKey] = Counter()
    for rows in per_store:
        seen.update(rows)
    missing = sorted(wanted - set(seen))
    extra = sorted(set(seen) - wanted)
    duplicated = {k: n for k, n in seen.items() if n > 1}
    unmerged = 0
    for stored in raw_rows:
        unmerged += sum(n - 1 for n in Counter(stored).values() if n > 1)
    return {
        "analytics_expected": len(wanted),
        "analytics_rows": sum(seen.values()),
        "analytics_rows_per_store": [sum(c.values()) for c in per_store],
        "analytics_missing": len(missing),
        "analytics_duplicates": sum(n - 1 for n in duplicated.values()),
        "analytics_in_several_stores": sum(
            1 for k in duplicated if sum(1 for c in per_store if k in c) > 1
        ),
        "analytics_extra": len(extra),
        "analytics_unmerged_rows": unmerged,
        "analytics_examples": {
            "missing": [list(k) for k in missing[:EXAMPLES]],
            "duplicated": [[*k, n] for k, n in list(duplicated.items())[:EXAMPLES]],
            "extra": [list(k) for k in extra[:EXAMPLES]],
        },
    }


def expected_analytics(
    turn_ids: Iterable[str], responses: Mapping[str, TurnResponse]
) -> set[TurnKey]:
    """The key of every received turn (its response OK: the turn completed)."""
    return {
        (r.tenant_id, r.session_id or "", t)
        for t in turn_ids
        if (r := responses.get(t)) is not None and r.status is ResponseStatus.OK
    }


def failures(result: Mapping[str, Any]) -> list[str]:
    """The judges that failed (an empty list: a clean soak). ``analytics_*`` only when the
    soak read analytics."""
    keys = ["lost", "duplicates", "error_responses", "state_mismatches", "response_mismatches"]
    if "analytics_missing" in result:
        keys += ["analytics_missing", "analytics_duplicates", "analytics_extra"]
    bad = [f"{k} {result[k]}" for k in keys if result.get(k)]
    if result.get("analytics_errors"):
        bad.append(f"analytics stores not read: {len(result['analytics_errors'])}")
    if result.get("sent") != result.get("received"):
        bad.append(f"received {result.get('received')} of {result.get('sent')} sent")
    return bad


# -- reading a worker's store --------------------------------------------------------------

QUERY = "SELECT tenant_id, session_id, turn_id FROM `{db}`.turns{final}"


def dump_analytics(path: Path, database: str, timeout: float = 300.0) -> dict[str, Any]:
    """The keys of one embedded store's ``turns`` rows, FINAL and raw, read in a child
    process; ``{"error": ...}`` if it could not be read."""
    if not path.exists():
        return {"final": [], "raw": [], "error": f"{path} does not exist"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.chaos_judge", str(path), database],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    if done.returncode != 0:
        return {"final": [], "raw": [], "error": done.stderr.strip()[-2000:]}
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def _dump(path: str, database: str) -> None:
    import clickhouse_connect

    client = clickhouse_connect.get_client(interface="chdb", path=path)
    try:
        out = {
            kind: [
                list(row) for row in client.query(QUERY.format(db=database, final=f)).result_rows
            ]
            for kind, f in (("final", " FINAL"), ("raw", ""))
        }
    finally:
        client.close()
    print(json.dumps(out))


if __name__ == "__main__":
    _dump(sys.argv[1], sys.argv[2])
