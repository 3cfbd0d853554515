"""The tools of the second example pack ``packs/brightwatt-energy/care`` (an energy supplier),
over its ``data/accounts.json``.

A stand-in for a billing and network backend, small enough to read: each function takes the
documented tool signature ``function(arguments, *, config, pack_dir) -> dict`` and returns the
outputs declared in the pack's ``tools.yaml``. Every account lookup is by the ``customer_id``
the gateway gave, so no tool can read another customer's account. Writes return references
derived from their inputs, so a retried call gives the same answer (IDEMPOTENT_WRITE).

``config`` keys: ``data_file`` (relative to the pack folder) and ``today`` (ISO date) to pin
the clock of the demo data.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

Json = dict[str, Any]
MIN_INSTALMENT = 10.0
MAX_PLAN_MONTHS = 12
_KWH_PER_MONTH_DEFAULT = 250


@lru_cache(maxsize=8)
def _read(path: Path, _mtime_ns: int) -> Json:
    data: Json = json.loads(path.read_text(encoding="utf-8"))
    return data


def _data(config: Mapping[str, Any], pack_dir: Path) -> Json:
    path = (pack_dir / str(config.get("data_file", "data/accounts.json"))).resolve()
    if not path.is_relative_to(pack_dir.resolve()):
        raise ValueError("data_file must stay inside the pack folder")
    return _read(path, path.stat().st_mtime_ns)


def _today(config: Mapping[str, Any]) -> date:
    return date.fromisoformat(config["today"]) if "today" in config else date.today()


def _account(data: Json, arguments: Mapping[str, Any]) -> Json:
    wanted = arguments.get("customer_id")
    for account in data["accounts"]:
        if account["customer_id"] == wanted:
            found: Json = account
            return found
    raise LookupError(f"no account for customer {wanted!r}")


def _tariff(data: Json, key: object) -> Json:
    tariff = data["tariffs"].get(key)
    if tariff is None:
        raise ValueError(f"unknown tariff {key!r}; known: {', '.join(data['tariffs'])}")
    found: Json = tariff
    return found


def _slug(text: object) -> str:
    return re.sub(r"[^A-Z0-9]+", "", str(text).upper())[:12]


def lookup_account(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    data = _data(config, pack_dir)
    account = _account(data, arguments)
    return {
        "customer_name": account["name"],
        "tariff": account["tariff"],
        "tariff_name": _tariff(data, account["tariff"])["name"],
        "fixed_until": account["fixed_until"] or "",
        "account_balance": account["balance"],
    }


def submit_meter_reading(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    """Accepts a reading at or above the last one; a lower one is refused with a note."""
    account = _account(_data(config, pack_dir), arguments)
    reading = float(arguments["meter_reading"])
    last = float(account["last_reading"])
    if reading < last:
        return {
            "reading_accepted": False,
            "reading_note": f"it is lower than the last reading on file ({last:.0f})",
        }
    return {
        "reading_accepted": True,
        "usage_since_last": round(reading - last),
        "reading_note": "your next bill will use it",
    }


def quote_tariff(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    """The monthly estimate on the new tariff, and the exit fee when leaving a fixed tariff
    before its end date."""
    data = _data(config, pack_dir)
    account = _account(data, arguments)
    new = _tariff(data, arguments["new_tariff"])
    current = _tariff(data, account["tariff"])
    fixed_until = account["fixed_until"]
    leaving_early = fixed_until is not None and date.fromisoformat(fixed_until) > _today(config)
    kwh = float(account.get("monthly_kwh") or _KWH_PER_MONTH_DEFAULT)
    monthly = (kwh * new["unit_rate_p"] + 30 * new["standing_charge_p"]) / 100
    start = date.fromisoformat(str(arguments["tariff_start_date"])[:10])
    return {
        "exit_fee": float(current["exit_fee"]) if leaving_early else 0.0,
        "new_monthly_estimate": round(monthly, 2),
        "new_tariff_name": new["name"],
        "new_tariff_start": f"{start.day} {start:%B %Y}",
    }


def switch_tariff(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    data = _data(config, pack_dir)
    account = _account(data, arguments)
    _tariff(data, arguments["new_tariff"])
    start = str(arguments["tariff_start_date"])[:10]
    reference = f"SW-{_slug(account['customer_id'])}-{_slug(arguments['new_tariff'])}"
    return {"switch_reference": reference, "switch_effective": start}


def register_move(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    account = _account(_data(config, pack_dir), arguments)
    moving = str(arguments["move_out_date"])[:10]
    return {"move_reference": f"MV-{_slug(account['customer_id'])}-{_slug(moving)}"}


def check_outage(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    """Known outages by postcode area (the letters and digits before the space)."""
    postcode = str(arguments["postcode"]).upper().strip()
    area = postcode.split()[0] if " " in postcode else postcode[:-3]
    for outage in _data(config, pack_dir)["outages"]:
        if outage["postcode_area"] == area:
            return {
                "outage_found": True,
                "outage_cause": outage["cause"],
                "outage_restore_time": outage["restore_by"],
                "outage_reference": outage["reference"],
            }
    return {"outage_found": False}


def propose_payment_plan(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    """How many months the debt takes at the offered instalment; acceptable from
    MIN_INSTALMENT a month and within MAX_PLAN_MONTHS."""
    account = _account(_data(config, pack_dir), arguments)
    debt = max(0.0, -float(account["balance"]))
    amount = float(arguments["instalment_amount"])
    if debt == 0:
        return {"plan_acceptable": False, "plan_note": "there is nothing owed on the account"}
    if amount < MIN_INSTALMENT:
        return {
            "plan_acceptable": False,
            "plan_note": f"the smallest instalment is {MIN_INSTALMENT:.0f} GBP",
        }
    months = math.ceil(debt / amount)
    if months > MAX_PLAN_MONTHS:
        return {
            "plan_acceptable": False,
            "plan_months": months,
            "plan_note": f"it would take {months} months; plans run at most {MAX_PLAN_MONTHS}",
        }
    return {"plan_acceptable": True, "plan_months": months, "debt_amount": debt}


def create_payment_plan(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    account = _account(_data(config, pack_dir), arguments)
    amount = float(arguments["instalment_amount"])
    return {"plan_reference": f"PP-{_slug(account['customer_id'])}-{round(amount)}"}


def get_latest_bill(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    bill = _account(_data(config, pack_dir), arguments)["latest_bill"]
    return {
        "bill_period": bill["period"],
        "bill_amount": bill["amount"],
        "bill_kwh": bill["kwh"],
        "bill_estimated": bill["estimated"],
    }


def create_handoff(
    arguments: Mapping[str, Any], *, config: Mapping[str, Any], pack_dir: Path
) -> Json:
    account = _account(_data(config, pack_dir), arguments)
    return {"handoff_ticket_id": f"HO-{_slug(account['customer_id'])}", "wait_minutes": 4}
