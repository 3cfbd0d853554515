"""Settings: defaults, environment overrides, TOML file, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import SelectionStrategy, SettingsError, TaskMode, load_settings


def test_defaults_use_the_embedded_broker_and_heuristic_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TURNSTREAM_KAFKA_BOOTSTRAP", raising=False)
    settings = load_settings()
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.phases.generation.mode is TaskMode.HEURISTIC
    assert settings.retrieval.rules.max_k == 8


def test_external_bootstrap_replaces_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNSTREAM_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    assert load_settings().bootstrap_servers == "kafka-1:9092,kafka-2:9092"


def test_nested_environment_override_keeps_the_other_per_type_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TURNSTREAM_RETRIEVAL__RULES__STRATEGY", "elbow")
    monkeypatch.setenv("TURNSTREAM_PHASES__SENSOR__MODE", "llm")
    settings = load_settings()
    assert settings.retrieval.rules.strategy is SelectionStrategy.ELBOW
    assert settings.retrieval.rules.max_k == 8
    assert settings.phases.sensor.mode is TaskMode.LLM
    assert settings.phases.retrieval.timeout_s == 0.5


def test_toml_file_is_read_and_environment_wins_over_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "turnstream.toml"
    config.write_text('partitions = 24\n[phases.generation]\nmode = "llm"\nretries = 4\n')
    monkeypatch.setenv("TURNSTREAM_CONFIG", str(config))
    monkeypatch.setenv("TURNSTREAM_PARTITIONS", "6")
    settings = load_settings()
    assert settings.partitions == 6
    assert settings.phases.generation.mode is TaskMode.LLM
    assert settings.phases.generation.retries == 4


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("TURNSTREAM_PARTITIONS", "zero", "TURNSTREAM_PARTITIONS"),
        ("TURNSTREAM_PHASES__SENSOR__MODE", "magic", "TURNSTREAM_PHASES__SENSOR__MODE"),
        ("TURNSTREAM_RETRIEVAL__INTENTS__MIN_SCORE", "7", "RETRIEVAL__INTENTS__MIN_SCORE"),
        ("TURNSTREAM_KAFKA_VERSION", "3.9.0", "TURNSTREAM_KAFKA_VERSION"),
    ],
)
def test_invalid_setting_fails_with_its_name(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_min_k_above_max_k_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNSTREAM_RETRIEVAL__RULES__MIN_K", "20")
    with pytest.raises(SettingsError, match=r"TURNSTREAM_RETRIEVAL__RULES.*min_k"):
        load_settings()


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNSTREAM_CONFIG", "/nonexistent/turnstream.toml")
    with pytest.raises(SettingsError, match="file not found"):
        load_settings()


def test_secret_value_is_not_echoed_in_errors_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNSTREAM_LLM_API_KEY", "sk-very-secret")
    assert "sk-very-secret" not in repr(load_settings())
    oversized_secret = "sk-" + "x" * 600
    monkeypatch.setenv("TURNSTREAM_LLM_API_KEY", oversized_secret)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "TURNSTREAM_LLM_API_KEY" in str(err.value)
    assert "<hidden>" in str(err.value)
    assert "xxxxxxxx" not in str(err.value)
