"""The example pack's Python tools: importable from the pack, and correct over its data."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from packs.tools import acme_shop
from sinks.pack_files import load_pack
from tests.test_pack_validate import EXAMPLE

CONFIG = {"data_file": "data/shop.json", "today": "2025-06-01"}


def call(function: Any, **arguments: Any) -> dict[str, Any]:
    result: dict[str, Any] = function(arguments, config=CONFIG, pack_dir=EXAMPLE)
    return result


def test_every_python_tool_of_the_pack_imports_and_declares_its_outputs() -> None:
    pack = load_pack(EXAMPLE)
    python_tools = [t for t in pack.tools if t.implementation.python]
    assert len(python_tools) >= 4
    for tool in python_tools:
        assert tool.implementation.python is not None
        module, name = tool.implementation.python.split(":")
        function = getattr(importlib.import_module(module), name)
        arguments = {key: "x" for key in tool.required_inputs}
        result = function(arguments, config=tool.config, pack_dir=EXAMPLE)
        assert set(result) <= set(tool.outputs), tool.id


def test_orders_of_another_customer_are_invisible() -> None:
    mine = call(acme_shop.lookup_order, order_id="A-10023", customer_id="C-1001")
    assert mine["found"] is True
    assert mine["order_total"] == 649.0
    assert mine["days_since_delivery"] == 26
    assert call(acme_shop.lookup_order, order_id="A-10023", customer_id="C-1002") == {
        "found": False
    }
    assert call(acme_shop.track_shipment, order_id="A-10023", customer_id="C-1003") == {
        "found": False
    }


def test_refund_limit_follows_the_tier() -> None:
    gold = call(
        acme_shop.check_refund_eligibility,
        order_id="A-10023",
        customer_id="C-1001",
        refund_reason="damaged",
    )
    assert gold["refund_eligible"] is True
    assert gold["max_refund_amount"] == 500  # gold limit, below the 649 total


@pytest.mark.parametrize(
    ("order_id", "customer_id", "reason", "eligible"),
    [
        ("A-10040", "C-1002", "changed_mind", False),  # 88 days: beyond 30
        ("A-10040", "C-1002", "damaged", True),  # 88 days: within 90 for damage
        ("A-10024", "C-1001", "late", False),  # not delivered yet
        ("A-10052", "C-1003", "other", False),  # cancelled
    ],
)
def test_refund_windows(order_id: str, customer_id: str, reason: str, eligible: bool) -> None:
    verdict = call(
        acme_shop.check_refund_eligibility,
        order_id=order_id,
        customer_id=customer_id,
        refund_reason=reason,
    )
    assert verdict["refund_eligible"] is eligible


def test_refunds_are_idempotent_and_capped() -> None:
    args = {"order_id": "A-10040", "customer_id": "C-1002", "refund_reason": "damaged"}
    first = call(acme_shop.create_refund, **args, refund_amount=1000)
    assert first == {"refund_id": "RF-10040", "refund_amount": 200.0}  # silver limit
    assert call(acme_shop.create_refund, **args, refund_amount=1000) == first
    refused = call(acme_shop.create_refund, **{**args, "refund_reason": "changed_mind"})
    assert refused["refund_id"] is None


def test_address_changes_only_before_shipping() -> None:
    new = {"new_address": "5 Oak Street, Boston, MA 02111"}
    processing = call(
        acme_shop.update_shipping_address, order_id="A-10031", customer_id="C-1002", **new
    )
    shipped = call(
        acme_shop.update_shipping_address, order_id="A-10024", customer_id="C-1001", **new
    )
    assert (processing, shipped) == ({"address_updated": True}, {"address_updated": False})


def test_returns_within_the_window_get_a_label() -> None:
    opened = call(
        acme_shop.create_return,
        order_id="A-10023",
        customer_id="C-1001",
        return_reason="changed_mind",
    )
    assert opened["rma_number"] == "RMA-10023"
    assert opened["return_label_url"].endswith("RMA-10023.pdf")
    late = call(
        acme_shop.create_return,
        order_id="A-10040",
        customer_id="C-1002",
        return_reason="changed_mind",
    )
    assert late["rma_number"] is None


def test_customer_lookup() -> None:
    assert call(acme_shop.lookup_customer, customer_id="C-1002")["customer_tier"] == "silver"
    assert call(acme_shop.lookup_customer, customer_id="C-9999") == {"found": False}


def test_data_file_must_stay_inside_the_pack(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="inside the pack"):
        acme_shop.lookup_customer(
            {"customer_id": "C-1001"},
            config={"data_file": "../../../etc/passwd"},
            pack_dir=EXAMPLE,
        )
