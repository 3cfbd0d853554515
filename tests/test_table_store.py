"""The worker's tables on RocksDB (``table_store=rocksdb``, opt-in): a worker stopped and started
again on the same data dir continues each session where it was, and the local store carries
the changelog offset it holds up to, so a restart replays only the changelogs' tail."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from rocksdict import AccessType, Rdict

from schemas.events.turn_response import ResponseStatus
from streams.settings import Settings
from streams.turn_client import TurnClient
from tests.pipeline_support import WorkerProcess, customer_says, pipeline_settings, prepare

pytestmark = pytest.mark.integration

OFFSET_KEY = b"__faust\0offset__"
"""Where Faust's RocksDB store keeps the changelog offset a partition's database holds."""


def stored_offsets(data_dir: Path, table: str) -> dict[str, int]:
    """The persisted changelog offset of each partition database of ``table``."""
    offsets = {}
    for path in sorted((data_dir / "faust").glob(f"**/*{table}-*.db")):
        db = Rdict(str(path), access_type=AccessType.read_only())
        try:
            raw = db.get(OFFSET_KEY)
        finally:
            db.close()
        if raw is not None:
            offsets[path.name] = int(raw)
    return offsets


@pytest.mark.timeout(600)
async def test_a_restarted_worker_continues_sessions_from_its_rocksdb_store(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path / "data", table_store="rocksdb")
    await prepare(settings)
    who = f"store-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        async with TurnClient(settings, records=True) as client:
            worker.start()
            for message in ("hi", "where is my order A-10024?"):
                turn_id = await client.send(customer_says(who, message))
                assert (await client.response(turn_id, timeout=240)).status is ResponseStatus.OK
            worker.stop()

            offsets = stored_offsets(settings.data_dir, "session-state")
            assert offsets and max(offsets.values()) >= 1, offsets  # the store holds its place

            worker.start()
            turn_id = await client.send(customer_says(who, "and A-10023?"))
            assert (await client.response(turn_id, timeout=240)).status is ResponseStatus.OK
            record = await client.record(turn_id)
    finally:
        worker.stop()
    assert record.context.session is not None
    assert record.context.session.turn_count == 2  # the two turns before the restart
