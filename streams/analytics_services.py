"""The analytics and webhook services of a worker: ``analytics_services(settings, packs)``.

``turnstream worker`` starts what this returns next to its other agents and stops it on exit:

* :class:`~streams.analytics_consumer.AnalyticsConsumer` (unless
  ``TURNSTREAM_ANALYTICS__ENABLED=false``): ClickHouse writes, and for the embedded engine the
  read-only SQL endpoint on ``127.0.0.1:TURNSTREAM_ANALYTICS__QUERY_PORT``;
* :class:`~streams.webhook_consumer.WebhookConsumer` (unless
  ``TURNSTREAM_WEBHOOKS__ENABLED=false``).

``python -m streams.analytics_services`` runs them alone (with their own PackRegistry) until
SIGINT or SIGTERM: a process that owns the embedded analytics data.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Protocol

from streams.analytics_consumer import AnalyticsConsumer
from streams.pack_registry import PackRegistry
from streams.settings import Settings, SettingsError, load_settings
from streams.webhook_consumer import WebhookConsumer

logger = logging.getLogger(__name__)


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def analytics_services(settings: Settings, packs: PackRegistry) -> list[Service]:
    """The enabled services, not started; start them in order and stop them in reverse."""
    services: list[Service] = []
    if settings.analytics.enabled:
        services.append(AnalyticsConsumer(settings))
    if settings.webhooks.enabled:
        services.append(WebhookConsumer(settings, packs))
    return services


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Start a PackRegistry and the services, wait for ``stop``, stop everything."""
    packs = PackRegistry(settings)
    await packs.start()
    started: list[Service] = []
    try:
        for service in analytics_services(settings, packs):
            await service.start()
            started.append(service)
        logger.info("analytics services running")
        await stop.wait()
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                logger.exception("stopping %r failed", service)
        await packs.stop()


async def _main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"turnstream: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, stop)
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(asyncio.run(_main()))
