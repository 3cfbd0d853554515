"""Where a webhook subscription's signing secret comes from: a variable bound to its tenant.

A pack names its secret (``secret_env: CRM_WEBHOOK_SECRET``); the worker reads it from the
environment variable ``WEBHOOK_SECRET__<TENANT>__<NAME>`` of the tenant whose pack it is::

    acme-shop, CRM_WEBHOOK_SECRET  ->  WEBHOOK_SECRET__ACME_SHOP__CRM_WEBHOOK_SECRET

Packs are written by tenants, and every tenant's pack runs in the same worker: if a name
were looked up as it stands, one tenant's pack could name another tenant's variable and sign
its deliveries with that tenant's secret, which the other tenant's endpoint would take as
genuine. Bound to the tenant, a pack can only ever reach its own tenant's secrets.

The mapping is one-to-one: a tenant id (``[a-z0-9][a-z0-9-]*``, the pack schema's ``Slug``)
is upper-cased with ``-`` as ``_`` (tenant ids hold no ``_``), and a name has no ``__`` and
no leading or trailing ``_`` (``schemas.pack.webhooks.SECRET_NAME``), so two different
(tenant, name) pairs never give the same variable. Anything else gives no variable at all.

The variables are deliberately not ``TURNSTREAM_*``: those are settings of the process
(``streams/settings.py``), these are secrets of the tenants it serves.
"""

from __future__ import annotations

import re

from schemas.pack.webhooks import SECRET_NAME

PREFIX = "WEBHOOK_SECRET"
_TENANT = re.compile(r"[a-z0-9][a-z0-9-]*")
MAX_TENANT_CHARS = 64


def secret_variable(tenant_id: str, name: str) -> str | None:
    """The variable holding ``tenant_id``'s secret ``name``; None when either cannot be
    mapped one-to-one (such a secret is never looked up)."""
    if len(tenant_id) > MAX_TENANT_CHARS or not _TENANT.fullmatch(tenant_id):
        return None
    if not SECRET_NAME.fullmatch(name):
        return None
    return f"{PREFIX}__{tenant_id.upper().replace('-', '_')}__{name}"
