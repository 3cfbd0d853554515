"""The tools of the example pack ``packs/acme-shop/support``, over its ``data/shop.json``.

A stand-in for a real shop backend, small enough to read: each function takes the documented
tool signature and returns the outputs declared in the pack's ``tools.yaml``. Every lookup
checks that the order belongs to ``customer_id``, so the tool layer itself never hands one
customer's data to another. Writes are idempotent by construction (ids derive from the
order), which is why ``tools.yaml`` may declare them IDEMPOTENT_WRITE.

``config`` keys: ``data_file`` (relative to the pack folder) and, for tests and demos,
``today`` (ISO date) to pin the clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

Json = dict[str, Any]
_DAMAGE_REASONS = frozenset({"damaged", "wrong_item"})


@lru_cache(maxsize=8)
def _read(path: Path, _mtime_ns: int) -> Json:
    data: Json = json.loads(path.read_text(encoding="utf-8"))
    return data


def _shop(config: Mapping[str, Any], pack_dir: Path) -> Json:
    path = (pack_dir / str(config.get("data_file", "data/shop.json"))).resolve()
    if not path.is_relative_to(pack_dir.resolve()):
        raise ValueError("data_file must stay inside the pack folder")
    return _read(path, path.stat().st_mtime_ns)


def _today(config: Mapping[str, Any]) -> date:
    return date.fromisoformat(config["today"]) if "today" in config else date.today()


def _order(shop: Json, arguments: Mapping[str, Any]) -> Json | None:
    """The order, only if it belongs to the customer asking."""
    return next(
        (
            order
            for order in shop["orders"]
            if order["order_id"] == arguments.get("order_id")
            and order["customer_id"] == arguments.get("customer_id")
        ),
        None,
    )


def _days_since_delivery(order: Json, today: date) -> int | None:
    delivered = order.get("delivered_at")
    return (today - date.fromisoformat(delivered)).days if delivered else None


def lookup_customer(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    shop = _shop(config, pack_dir)
    wanted = arguments.get("customer_id")
    customer = next((c for c in shop["customers"] if c["customer_id"] == wanted), None)
    if customer is None:
        return {"found": False}
    return {
        "found": True,
        "customer_name": customer["name"],
        "customer_tier": customer["tier"],
        "email": customer["email"],
    }


def lookup_order(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    order = _order(_shop(config, pack_dir), arguments)
    if order is None:
        return {"found": False}
    return {
        "found": True,
        "order_status": order["status"],
        "order_total": order["total"],
        "order_items": order["items"],
        "days_since_delivery": _days_since_delivery(order, _today(config)),
    }


def track_shipment(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    order = _order(_shop(config, pack_dir), arguments)
    if order is None:
        return {"found": False}
    status = {
        "processing": "being packed, not shipped yet",
        "in_transit": f"in transit with {order['carrier']}",
        "delivered": f"delivered on {order['delivered_at']}",
        "cancelled": "cancelled",
    }[order["status"]]
    return {
        "found": True,
        "tracking_status": status,
        "carrier": order["carrier"],
        "tracking_eta": order["eta"],
    }


def _eligibility(shop: Json, order: Json, reason: str | None, today: date) -> Json:
    """Delivered orders within the return window (damaged or wrong items: a longer one);
    at most the order total and the customer's tier limit without a supervisor."""
    tier = next(c["tier"] for c in shop["customers"] if c["customer_id"] == order["customer_id"])
    days = _days_since_delivery(order, today)
    window = (
        shop["damaged_window_days"] if reason in _DAMAGE_REASONS else shop["return_window_days"]
    )
    if order["status"] != "delivered" or days is None:
        note = f"the order is {order['status'].replace('_', ' ')}, not delivered"
        return {"refund_eligible": False, "max_refund_amount": 0, "eligibility_note": note}
    if days > window:
        note = f"delivered {days} days ago; the window is {window} days"
        return {"refund_eligible": False, "max_refund_amount": 0, "eligibility_note": note}
    limit = min(order["total"], shop["refund_limits"][tier])
    note = "eligible" + (
        " (amounts above the tier limit need a supervisor)" if limit < order["total"] else ""
    )
    return {"refund_eligible": True, "max_refund_amount": limit, "eligibility_note": note}


def check_refund_eligibility(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    shop = _shop(config, pack_dir)
    order = _order(shop, arguments)
    if order is None:
        return {
            "refund_eligible": False,
            "max_refund_amount": 0,
            "eligibility_note": "no such order",
        }
    return _eligibility(shop, order, arguments.get("refund_reason"), _today(config))


def create_refund(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    """Re-checks eligibility (the tool, not the conversation, is the last line of defence)
    and caps the amount at what is allowed."""
    shop = _shop(config, pack_dir)
    order = _order(shop, arguments)
    if order is None:
        return {"refund_id": None, "eligibility_note": "no such order"}
    verdict = _eligibility(shop, order, arguments.get("refund_reason"), _today(config))
    if not verdict["refund_eligible"]:
        return {"refund_id": None, "eligibility_note": verdict["eligibility_note"]}
    requested = arguments.get("refund_amount") or verdict["max_refund_amount"]
    return {
        "refund_id": f"RF-{order['order_id'].removeprefix('A-')}",
        "refund_amount": min(float(requested), float(verdict["max_refund_amount"])),
    }


def update_shipping_address(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    """Only while the order is still processing; afterwards the carrier has the parcel."""
    order = _order(_shop(config, pack_dir), arguments)
    updated = (
        order is not None and order["status"] == "processing" and bool(arguments.get("new_address"))
    )
    return {"address_updated": updated}


def create_return(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    shop = _shop(config, pack_dir)
    order = _order(shop, arguments)
    if order is None:
        return {"rma_number": None, "return_note": "no such order"}
    reason = arguments.get("return_reason")
    verdict = _eligibility(shop, order, reason, _today(config))
    if not verdict["refund_eligible"]:
        return {"rma_number": None, "return_note": verdict["eligibility_note"]}
    rma = f"RMA-{order['order_id'].removeprefix('A-')}"
    return {
        "rma_number": rma,
        "return_label_url": f"https://returns.acme-shop.example/labels/{rma}.pdf",
    }
