"""P2 heuristic sensor: language, frustration, intent change, extraction, and the mask."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors.phases.sensor import (
    CustomerDataMask,
    detect_language,
    mask_customer_data,
    sense,
)
from schemas.domain.customer_data import (
    CustomerDataStore,
    VariableEntry,
    VariableScope,
    VariableSource,
    VariableType,
)
from schemas.domain.session import MessageRole, SessionMessage
from schemas.domain.snapshot import FrustrationLevel, SituationalSnapshot
from schemas.pack.agent_pack import AgentPack
from sinks.pack_files import load_pack

PACK_DIR = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"
NOW = datetime(2024, 5, 1, tzinfo=UTC)
SECRET = "jane.secret@example.com"


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


@pytest.fixture(scope="module")
def store() -> CustomerDataStore:
    entry = VariableEntry(
        value=json.dumps(SECRET),
        type=VariableType.STRING,
        scope=VariableScope.IDENTITY,
        source=VariableSource.USER,
        confidence=1.0,
        last_updated_at=NOW,
    )
    return CustomerDataStore(
        tenant_id="acme-shop", customer_id="c1", variables={"email": entry}, updated_at=NOW
    )


def said(*texts: str) -> list[SessionMessage]:
    return [
        SessionMessage(role=MessageRole.CUSTOMER, text=t, turn_id=f"t{i}", at=NOW)
        for i, t in enumerate(texts)
    ]


def run(pack: AgentPack, text: str, history: list[SessionMessage] | None = None, **kw: object):
    mask = mask_customer_data(pack.fields, None)
    return sense(text, mask, pack.glossary, history or [], pack.intents, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Where is my order? I want a refund please", "en"),
        ("Hola, quiero saber dónde está mi pedido", "es"),
        ("Bonjour, je ne trouve pas ma commande", "fr"),
        ("Hallo, wo ist meine Bestellung? Ich habe sie nicht bekommen", "de"),
        ("Ciao, vorrei sapere dove è il mio ordine", "it"),
        ("Olá, quero saber onde está o meu pedido, obrigado", "pt"),
        ("Hallo, waar is mijn bestelling? Ik wil graag een update", "nl"),
        ("A-10023", "en"),
    ],
)
def test_language_is_the_best_stopword_profile(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_no_stopword_hit_falls_back_to_the_default_language() -> None:
    assert detect_language("10023 ???", default="de") == "de"


def test_calm_message_has_no_frustration_and_a_polite_tone(pack: AgentPack) -> None:
    snap = run(pack, "Could you please check my order? Thanks")
    assert snap.frustration_level is FrustrationLevel.NONE and snap.tone == "polite"


def test_shouting_exclamations_and_strong_words_are_high_frustration(pack: AgentPack) -> None:
    snap = run(pack, "THIS IS UNACCEPTABLE!!! Where is my parcel")
    assert snap.frustration_level is FrustrationLevel.HIGH and snap.tone == "angry"
    assert "frustration cue: capitals" in snap.situation_facts


def test_repeated_complaints_in_history_raise_frustration(pack: AgentPack) -> None:
    alone = run(pack, "still no news about my parcel")
    repeated = run(
        pack,
        "still no news about my parcel",
        said("this is terrible, nobody answers", "still waiting, awful service"),
    )
    assert alone.frustration_level is FrustrationLevel.LOW
    assert repeated.frustration_level is FrustrationLevel.MEDIUM  # 1 + 2 earlier complaints


def test_intent_change_against_the_previous_customer_message(pack: AgentPack) -> None:
    first = run(pack, "I want a refund for my order")
    assert first.new_intent_label == "refund_request" and first.intent_changed
    same = run(pack, "refund please, my order", said("I want a refund for my order"))
    assert not same.intent_changed and not same.topic_changed
    other = run(pack, "When will my package arrive?", said("I want a refund for my order"))
    assert other.new_intent_label == "order_status"
    assert other.intent_changed and other.topic_changed


def test_order_id_and_reason_are_extracted_from_one_message(pack: AgentPack) -> None:
    snap = run(pack, "Refund for order A-10023 please, it arrived broken.")
    values = {k: json.loads(v.value) for k, v in snap.candidate_variables.items()}
    assert values == {"order_id": "A-10023", "refund_reason": "damaged"}
    assert snap.candidate_variables["order_id"].scope is VariableScope.CASE


def test_email_and_customer_number_come_from_field_patterns(pack: AgentPack) -> None:
    snap = run(pack, "My account number is C-1234, email me at bob@example.org.")
    values = {k: json.loads(v.value) for k, v in snap.candidate_variables.items()}
    assert values["customer_id"] == "C-1234" and values["email"] == "bob@example.org"


def test_a_yes_sets_a_boolean_only_when_the_step_asked_for_it(pack: AgentPack) -> None:
    assert "refund_confirmed" not in run(pack, "yes, go ahead").candidate_variables
    asked = run(pack, "yes, go ahead", expected_fields={"refund_confirmed"})
    assert json.loads(asked.candidate_variables["refund_confirmed"].value) is True
    refused = run(pack, "no, don't", expected_fields={"refund_confirmed"})
    assert json.loads(refused.candidate_variables["refund_confirmed"].value) is False


def test_allowed_values_need_the_field_to_be_mentioned(pack: AgentPack) -> None:
    assert "customer_tier" not in run(pack, "I bought a gold watch").candidate_variables
    snap = run(pack, "my tier is gold")
    assert json.loads(snap.candidate_variables["customer_tier"].value) == "gold"


def test_glossary_terms_become_situation_facts(pack: AgentPack) -> None:
    snap = run(pack, "What is the return window for the tent?")
    assert "mentions return window" in snap.situation_facts


def test_the_mask_carries_presence_but_never_values(
    pack: AgentPack, store: CustomerDataStore
) -> None:
    mask = mask_customer_data(pack.fields, store)
    assert SECRET not in mask.model_dump_json()
    assert mask.exists("email") and not mask.exists("order_id")
    snap = sense("my email is x@y.org", mask, pack.glossary, [], pack.intents)
    assert snap.candidate_variables["email"].is_update
    assert SECRET not in snap.model_dump_json()


def test_the_sensor_refuses_anything_but_a_mask(pack: AgentPack, store: CustomerDataStore) -> None:
    with pytest.raises(TypeError):
        sense("hi", store, pack.glossary, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sense("hi", {"email": SECRET}, pack.glossary, [])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CustomerDataMask.model_validate(
            {
                "fields": [
                    {
                        "key": "email",
                        "scope": "IDENTITY",
                        "type": "STRING",
                        "exists": True,
                        "value": SECRET,
                    }
                ]
            }
        )


def test_sensing_is_deterministic(pack: AgentPack) -> None:
    text = "ORDER A-10023 IS LATE!!! refund now"
    first: SituationalSnapshot = run(pack, text, said("terrible"))
    assert all(run(pack, text, said("terrible")) == first for _ in range(3))
