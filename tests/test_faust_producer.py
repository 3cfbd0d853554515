"""The pipeline's Faust app builds an idempotent aiokafka producer (streams/pipeline/
faust_producer.py): without it a produce retried across a broker node's loss could append a
batch twice, and on the response topic that is a customer answered twice."""

from __future__ import annotations

from pathlib import Path

import faust

from streams.pipeline.faust_producer import use_idempotent_producer
from streams.pipeline.topology import build_app
from streams.roles import Role
from streams.settings import load_settings


async def test_the_pipeline_app_builds_an_idempotent_producer_with_acks_all(
    tmp_path: Path,
) -> None:
    app = build_app(load_settings(data_dir=tmp_path), Role.ALL)
    client = app.producer._new_producer()  # the aiokafka producer Faust sends through
    assert client._txn_manager is not None  # aiokafka's mark of enable_idempotence
    assert client._txn_manager.transactional_id is None  # idempotent, not transactional
    assert client._sender._acks == -1  # "all"


async def test_faust_alone_would_build_a_producer_that_is_not_idempotent() -> None:
    """The reason for the subclass: at least once, Faust's own producer may duplicate."""
    app = faust.App("faust-producer-test", broker="kafka://127.0.0.1:9", producer_acks=-1)
    assert app.producer._new_producer()._txn_manager is None
    use_idempotent_producer(app)
    app.producer = app._new_producer()  # a fresh app would build this one
    assert app.producer._new_producer()._txn_manager is not None
