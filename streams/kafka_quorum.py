"""The KRaft metadata quorum's leader (the active controller), asked as
``kafka-metadata-quorum --bootstrap-controller HOST:PORT describe --status`` asks it.

aiokafka has no DescribeQuorum (API key 55, KIP-595); this is its version 0, sent to a
controller listener. A broker's Metadata and DescribeCluster answers do not name the active
controller under KRaft (they name a random live broker, KIP-919), so the quorum itself is
asked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

METADATA_TOPIC = "__cluster_metadata"


class DescribeQuorumResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 55
    API_VERSION = 0
    SCHEMA = Schema(
        ("error_code", Int16),
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("high_watermark", Int64),
                        (
                            "current_voters",
                            CompactArray(
                                ("replica_id", Int32),
                                ("log_end_offset", Int64),
                                ("tags", TaggedFields),
                            ),
                        ),
                        (
                            "observers",
                            CompactArray(
                                ("replica_id", Int32),
                                ("log_end_offset", Int64),
                                ("tags", TaggedFields),
                            ),
                        ),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 0
    RESPONSE_TYPE = DescribeQuorumResponse_v0
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


DescribeQuorumRequestStruct: TypeAlias = DescribeQuorumRequest_v0


class DescribeQuorumRequest(Request[DescribeQuorumRequestStruct]):  # type: ignore[misc]
    API_KEY = 55

    def build(
        self, request_struct_class: type[DescribeQuorumRequestStruct]
    ) -> DescribeQuorumRequestStruct:
        return request_struct_class([(METADATA_TOPIC, [(0, {})], {})], {})


@dataclass(frozen=True)
class Quorum:
    """What a controller says of the metadata quorum."""

    leader_id: int
    """The active controller's node id (-1 while an election runs)."""
    leader_epoch: int
    high_watermark: int
    voters: dict[int, int]
    """Each voter's node id and the end offset of its metadata log."""

    def caught_up(self) -> bool:
        """Every voter has the whole committed metadata log."""
        return self.leader_id >= 0 and all(
            end >= self.high_watermark for end in self.voters.values()
        )


async def describe_quorum(host: str, controller_port: int, timeout_s: float = 3.0) -> Quorum:
    """Ask the controller listening on ``host:controller_port``; raises OSError, TimeoutError
    or KafkaError when it does not answer, KafkaError when it answers with an error."""
    conn = await asyncio.wait_for(
        create_conn(host, controller_port, request_timeout_ms=int(timeout_s * 1000)), timeout_s
    )
    try:
        response: Any = await asyncio.wait_for(conn.send(DescribeQuorumRequest()), timeout_s)
    finally:
        conn.close()
    if response.error_code:
        raise KafkaError(f"DescribeQuorum: error code {response.error_code}")
    partition = response.topics[0][1][0]
    _index, error, leader, epoch, hwm, voters, _observers, _tags = partition
    if error:
        raise KafkaError(f"DescribeQuorum {METADATA_TOPIC}-0: error code {error}")
    return Quorum(leader, epoch, hwm, {v[0]: v[1] for v in voters})
