"""Secrets and PII: the LLM API key and webhook secrets never appear in logs (DEBUG included),
TurnRecords, responses, analytics rows or prompts; customer data fields marked ``sensitive``
never reach an LLM prompt nor, with the default settings, analytics.

Turns run whole (``run_turn``) with every LLM phase on the scripted OpenAI-compatible server;
webhook deliveries go to a real loopback receiver. Each test also checks that what it looks
for was really in play (the key configured on the client, debug logs emitted, the sensitive
value known to the turn), so that a pass is never vacuous.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator

import aiohttp
import pytest

from schemas.codec import encode
from schemas.domain.turn_input import Channel
from schemas.domain.turn_record import TurnRecord
from schemas.events.completed_turn import CompletedTurn
from schemas.events.webhook import DeliveryStatus, WebhookDelivery
from schemas.pack.webhooks import WebhookSubscription
from sinks.analytics import tables
from sinks.analytics.privacy import Pseudonyms
from sinks.analytics.rows import completed_turn_rows, webhook_delivery_rows
from sinks.llm_openai import OpenAiLlm
from sinks.memory_ingestion import memory_text
from sinks.pack_files import load_pack
from sinks.webhooks.delivery import Deliverer, DeliveryJob, RetryPolicy
from sinks.webhooks.events import events_from_turn
from sinks.webhooks.ssrf import GuardedResolver
from streams.settings import SettingsError, load_settings
from tests.fake_openai import FakeOpenAi, JsonReply, StatusReply, fake_openai_server
from tests.test_analytics_helpers import make_turn
from tests.test_security_helpers import (
    EXAMPLE,
    LLM_PHASES,
    SNAPSHOT,
    Turns,
    llm_settings,
)
from tests.test_webhooks_helpers import Receiver

API_KEY = "sk-live-SECRETKEY-9f8e7d6c5b4a39281706"
HOOK_SECRET = "whsec-SECRET-0a1b2c3d4e5f60718293"
URL_TOKEN = "SECRETTOKEN-in-the-url-4455"
EMAIL = "dana.whitfield@example.com"  # C-1001's email: a field marked sensitive in the pack
GENERATION, SENSOR, RULE_FILTER, JUDGE = (
    "reply",
    "situational_snapshot",
    "rule_filter_verdicts",
    "rule_verdicts",
)
REFUND_SNAPSHOT = {
    **SNAPSHOT,
    "candidate_variables": [
        {"key": "order_id", "value": "A-10023"},
        {"key": "refund_reason", "value": "damaged"},
    ],
}


@pytest.fixture(scope="module")
def turns() -> Turns:
    turns = Turns.create()
    turns.add_pack()
    return turns


@pytest.fixture
def fake() -> Iterator[FakeOpenAi]:
    with fake_openai_server() as server:
        server.always(SENSOR, REFUND_SNAPSHOT)
        server.always(RULE_FILTER, {"verdicts": []})
        server.always(JUDGE, {"verdicts": []})
        yield server


def _reply(text: str) -> JsonReply:
    return JsonReply({"text": text, "categories": [], "resolution": "RESOLVED"})


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as a handler would write it, with its raw args and traceback."""
    parts = [caplog.text]
    for record in caplog.records:
        parts += [record.getMessage(), repr(record.args), record.exc_text or ""]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]))
    return "\n".join(parts)


def _completed(record: TurnRecord) -> CompletedTurn:
    return CompletedTurn(
        session_key=record.context.input.session_key, record=record, emitted_at=record.completed_at
    )


def _sensitive_fields(turns: Turns) -> frozenset[str]:
    pack = turns.packs[("acme-shop", "support")]
    return frozenset(field.key for field in pack.fields if field.sensitive)


def _analytics(
    records: Iterable[TurnRecord],
    sensitive_fields: Collection[str] | None,
    *,
    store_texts: bool = True,
) -> str:
    """Every analytics row the turns produce (with texts and the pack's sensitive fields
    known: the most the sink can store)."""
    return "\n".join(
        repr(
            completed_turn_rows(
                _completed(r), store_texts=store_texts, sensitive_fields=sensitive_fields
            ).rows
        )
        for r in records
    )


async def test_the_llm_api_key_never_reaches_logs_records_prompts_or_analytics(
    turns: Turns, fake: FakeOpenAi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    turns.forget()
    settings = llm_settings(fake, API_KEY)
    llm = OpenAiLlm(settings, backoff_s=0)
    deps = turns.deps(settings, dict.fromkeys(LLM_PHASES, llm))
    fake.script(
        GENERATION,
        _reply("I can refund up to 500 USD for order A-10023. Shall I go ahead?"),
        _reply("Done."),
        # a server that echoes the key in its errors must not get it into our records
        StatusReply(401, message=f"Incorrect API key provided: {API_KEY}"),
        StatusReply(500, message=f"upstream failed for key {API_KEY}"),
    )
    said = ["I want a refund for order A-10023, it arrived broken", "yes please", "thanks", "bye"]
    results = [
        await turns.say(message, turn_id=f"key-{i}", channel_id="key-visitor", deps=deps)
        for i, message in enumerate(said)
    ]
    assert llm._client_ is not None and llm._client_.api_key == API_KEY  # in use
    await llm.close()

    assert any(r.name.startswith(("openai", "httpx", "httpcore")) for r in caplog.records)
    records = [record for _, record in results]
    assert {e.code for r in records for e in r.context.errors} >= {"llm.fallback"}
    places = {
        "logs": _logged(caplog),
        "records": "\n".join(r.model_dump_json() for r in records),
        "encoded records": repr([encode(_completed(r)) for r in records]),
        "responses": "\n".join(response.model_dump_json() for response, _ in results),
        "prompts": fake.prompts(),
        "analytics": _analytics(records, _sensitive_fields(turns)),
        "memories": "\n".join(memory_text(r) or "" for r in records),
    }
    assert [where for where, text in places.items() if API_KEY in text] == []


def test_settings_never_show_the_api_key() -> None:
    settings = load_settings(llm_api_key=API_KEY)
    assert API_KEY not in repr(settings) and API_KEY not in str(settings)
    assert API_KEY not in repr(OpenAiLlm(settings))
    too_long = API_KEY * 40  # over the 512-character limit: refused, and not shown
    with pytest.raises(SettingsError) as caught:
        load_settings(llm_api_key=too_long, partitions=-1)
    assert "TURNSTREAM_LLM_API_KEY" in str(caught.value) and API_KEY not in str(caught.value)
    assert "TURNSTREAM_PARTITIONS" in str(caught.value)


async def test_webhook_secrets_never_reach_logs_delivery_records_or_analytics(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("WEBHOOK_SECRET__T1__ACME_CRM_WEBHOOK_SECRET", HOOK_SECRET)  # make_turn's
    records: list[WebhookDelivery] = []

    async def keep(record: WebhookDelivery) -> None:
        records.append(record)

    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private=True))
    with (
        Receiver(HOOK_SECRET.encode(), fail_first=1) as flaky,
        Receiver(HOOK_SECRET.encode(), fail_first=9, fail_status=410) as gone,
    ):
        async with aiohttp.ClientSession(connector=connector) as session:
            deliverer = Deliverer(
                session,
                RetryPolicy(max_attempts=3, initial_s=0.01, max_s=0.02),
                allow_private=True,
                on_attempt=keep,
                on_exhausted=keep,
            )
            finals = []
            for receiver, sub in ((flaky, "crm_sync"), (gone, "erp_sync")):
                subscription = WebhookSubscription(
                    id=sub,
                    url=f"{receiver.url}?token={URL_TOKEN}",
                    events=["turn_completed"],
                    secret_env="ACME_CRM_WEBHOOK_SECRET",
                )
                event = events_from_turn(make_turn(f"hook-{sub}"))[0]
                finals.append(await deliverer.deliver(DeliveryJob.of(subscription, event)))
        hits = flaky.snapshot() + gone.snapshot()

    assert [f.status for f in finals] == [DeliveryStatus.DELIVERED, DeliveryStatus.EXHAUSTED]
    assert hits and all(hit.verified for hit in hits)  # signed with the secret, not carrying it
    pack = load_pack(EXAMPLE)
    places = {
        "logs": _logged(caplog),
        "delivery records": "\n".join(r.model_dump_json() for r in records),
        "encoded records": repr([encode(r) for r in records]),
        "analytics": "\n".join(repr(webhook_delivery_rows(r).rows) for r in records),
        "request bodies": repr([hit.body for hit in hits]),
        "pack": pack.model_dump_json(),
    }
    for secret in (HOOK_SECRET, URL_TOKEN):
        assert [where for where, text in places.items() if secret in text] == [], secret


async def test_sensitive_fields_never_reach_an_llm_prompt(turns: Turns, fake: FakeOpenAi) -> None:
    turns.forget()
    settings = llm_settings(fake, API_KEY)
    deps = turns.deps(settings, dict.fromkeys(LLM_PHASES, OpenAiLlm(settings, backoff_s=0)))
    fake.always(GENERATION, _reply("I can refund up to 500 USD for order A-10023."))

    _, first = await turns.say(
        "I want a refund for order A-10023, it arrived broken",
        turn_id="pii-1",
        channel_id="pii-visitor",
        deps=deps,
    )
    _, second = await turns.say("yes please", turn_id="pii-2", channel_id="pii-visitor", deps=deps)

    known = first.context.customer_data
    assert known is not None and known.variables["email"].value == f'"{EMAIL}"'  # in play
    assert second.context.customer_data is not None
    assert "email" in second.context.customer_data.variables
    assert len(fake.requests_for(GENERATION)) >= 2
    assert EMAIL not in fake.prompts()


def _sensitive_values(turns: Turns, records: Iterable[TurnRecord]) -> set[str]:
    pack = turns.packs[("acme-shop", "support")]
    sensitive = {field.key for field in pack.fields if field.sensitive}
    return {
        entry.value.strip('"')
        for record in records
        if record.context.customer_data is not None
        for key, entry in record.context.customer_data.variables.items()
        if key in sensitive
    }


async def test_sensitive_fields_are_not_stored_in_analytics_by_default(turns: Turns) -> None:
    turns.forget()
    said = [
        f"Hi, my email is {EMAIL}. I want a refund for order A-10023, it arrived broken",
        "yes please",
    ]
    records = [
        (await turns.say(m, turn_id=f"pii-a-{i}", channel_id="pii-a"))[1]
        for i, m in enumerate(said)
    ]
    values = _sensitive_values(turns, records)
    assert EMAIL in values  # the turn knows it

    stored = load_settings().analytics.store_texts
    rows = []
    for record in records:
        completed = CompletedTurn(
            session_key=record.context.input.session_key,
            record=record,
            emitted_at=record.completed_at,
        )
        rows.append(repr(completed_turn_rows(completed, store_texts=stored).rows))
    assert not stored
    assert {value for value in values if value in "\n".join(rows)} == set()


async def test_sensitive_fields_are_masked_in_stored_texts(turns: Turns) -> None:
    turns.forget()
    _, record = await turns.say(
        f"my email is {EMAIL}, where is my order A-10024?", turn_id="pii-t", channel_id="pii-t"
    )
    assert EMAIL in _sensitive_values(turns, [record])
    sensitive = _sensitive_fields(turns)
    assert {"email", "phone", "new_address"} <= sensitive
    stored = _analytics([record], sensitive)
    assert EMAIL not in stored
    texts = completed_turn_rows(
        _completed(record), store_texts=True, sensitive_fields=sensitive
    ).rows["turns"][0][-2:]
    assert texts[0] == "my email is [sensitive:email], where is my order A-10024?"  # stored
    assert EMAIL not in texts[1] and texts[1]

    # values no field holds are masked by their patterns; the rest stays readable
    _, second = await turns.say(
        "Or call me at +1 (206) 555-0148 about order A-10024. Card 4111 1111 1111 1111.",
        turn_id="pii-t2",
        channel_id="pii-t",
    )
    message = completed_turn_rows(
        _completed(second), store_texts=True, sensitive_fields=sensitive
    ).rows["turns"][0][-2]
    assert message == "Or call me at [phone] about order A-10024. Card [card]."
    assert "4111" not in _analytics([second], sensitive)

    # the pack not known: message and answer are not stored at all
    unknown = completed_turn_rows(_completed(record), store_texts=True).rows["turns"][0][-2:]
    assert unknown == ("", "")


async def test_the_customers_address_is_not_stored_in_analytics(turns: Turns) -> None:
    turns.forget()
    said = [
        await turns.say(
            "where is my order A-10024?",
            turn_id=f"pii-c{i}",
            channel=Channel.EMAIL,
            channel_id=EMAIL,
        )
        for i in range(2)
    ]
    _, other = await turns.say(
        "where is my order A-10024?",
        turn_id="pii-c-other",
        channel=Channel.EMAIL,
        channel_id="someone.else@example.com",
    )
    records = [record for _, record in said]
    assert records[0].context.input.session_key == f"acme-shop:email:{EMAIL}"  # in play
    sensitive = _sensitive_fields(turns)
    for store_texts in (False, True):
        assert EMAIL not in _analytics(records, sensitive, store_texts=store_texts)
        assert EMAIL not in _analytics(records, None, store_texts=store_texts)

    # a pseudonym: the same for the same address, another for another address
    column = tables.TURNS.column_names.index("session_key")

    def pseudonym(record: TurnRecord) -> str:
        return str(completed_turn_rows(_completed(record)).rows["turns"][0][column])

    keys = [pseudonym(r) for r in [*records, other]]
    assert keys[0] == keys[1] != keys[2]
    assert all(key.startswith("sk_") and len(key) == 35 for key in keys)
    # keyed: another deployment key gives other pseudonyms, so none can be recomputed from
    # the address alone
    keyed = Pseudonyms(b"another-deployment-key-0123456789")
    again = completed_turn_rows(_completed(records[0]), pseudonyms=keyed).rows["turns"][0]
    assert again[column] != keys[0] and again[column].startswith("sk_")
