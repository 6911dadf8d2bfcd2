"""Settings from the environment: every variable, defaults, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from insight.config import ConfigError, StorageMode, load_settings

ENV = {
    "INSIGHT_MODEL__NAME": "laion/larger_clap_music",
    "INSIGHT_MODEL__PATH": "/models/clap",
    "INSIGHT_MODEL__ENABLE_CUDA": "true",
    "INSIGHT_MODEL__ENABLE_ROCM": "true",
    "INSIGHT_MODEL__ENABLE_COREML": "1",
    "INSIGHT_MODEL__ENABLE_DIRECTML": "yes",
    "INSIGHT_MODEL__ENABLE_OPENVINO": "on",
    "INSIGHT_MODEL__THREADS": "3",
    "INSIGHT_AUDIO__WINDOW_SIZE_S": "7.5",
    "INSIGHT_AUDIO__HOP_SIZE_S": "5.0",
    "INSIGHT_STORAGE__MODE": "qdrant",
    "INSIGHT_STORAGE__DATA_DIR": "/srv/insight",
    "INSIGHT_STORAGE__URL": "http://qdrant:6334",
    "INSIGHT_STORAGE__API_KEY": "s3cret-qdrant-key",
    "INSIGHT_STORAGE__COLLECTION_PREFIX": "home",
    "INSIGHT_STORAGE__ENABLED": "false",
    "INSIGHT_SERVER__HOST": "127.0.0.1",
    "INSIGHT_SERVER__PORT": "9000",
    "INSIGHT_SERVER__API_KEY": "bridge-key",
    "INSIGHT_NATS__URL": "nats://nats:4222",
    "INSIGHT_NATS__USER": "insight",
    "INSIGHT_NATS__PASSWORD": "pw",
    "INSIGHT_NATS__CREDS_FILE": "/run/insight.creds",
    "INSIGHT_NATS__TLS_CA": "/etc/ca.pem",
    "INSIGHT_STREAM__MAX_SESSIONS": "7",
    "INSIGHT_STREAM__IDLE_TIMEOUT_S": "60",
    "INSIGHT_WATCHER__FOLDERS": '["/music", "/more"]',
    "INSIGHT_WATCHER__ENABLED": "true",
}


def test_defaults_match_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("INSIGHT_"):
            monkeypatch.delenv(key)
    s = load_settings()
    assert s.model.name == "Xenova/clap-htsat-unfused"
    assert s.model.path is None
    assert not any(
        (
            s.model.enable_cuda,
            s.model.enable_rocm,
            s.model.enable_coreml,
            s.model.enable_directml,
            s.model.enable_openvino,
        )
    )
    assert (s.audio.window_size_s, s.audio.hop_size_s) == (10.0, 10.0)
    assert s.storage.mode is StorageMode.FILE
    assert s.storage.data_dir == Path("~/.local/share/insight-sidecar").expanduser()
    assert s.storage.url == "http://localhost:6334"
    assert s.storage.api_key is None and s.storage.collection_prefix == ""
    assert s.storage.enabled is True
    assert (s.server.host, s.server.port) == ("0.0.0.0", 8096)
    assert s.nats.url == ""


def test_every_variable_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    s = load_settings()
    assert s.model.name == "laion/larger_clap_music"
    assert s.model.path == Path("/models/clap")
    assert all(
        (
            s.model.enable_cuda,
            s.model.enable_rocm,
            s.model.enable_coreml,
            s.model.enable_directml,
            s.model.enable_openvino,
        )
    )
    assert s.model.threads == 3
    assert (s.audio.window_size_s, s.audio.hop_size_s) == (7.5, 5.0)
    assert s.storage.mode is StorageMode.QDRANT
    assert s.storage.data_dir == Path("/srv/insight")
    assert s.storage.url == "http://qdrant:6334"
    assert s.storage.api_key is not None
    assert s.storage.api_key.get_secret_value() == "s3cret-qdrant-key"
    assert "s3cret" not in repr(s)
    assert s.storage.collection_prefix == "home"
    assert s.storage.enabled is False
    assert (s.server.host, s.server.port) == ("127.0.0.1", 9000)
    assert s.server.api_key is not None and s.server.api_key.get_secret_value() == "bridge-key"
    assert s.nats.url == "nats://nats:4222" and s.nats.user == "insight"
    assert s.nats.creds_file == Path("/run/insight.creds")
    assert s.nats.tls_ca == Path("/etc/ca.pem")
    assert (s.stream.max_sessions, s.stream.idle_timeout_s) == (7, 60.0)
    assert s.watcher.enabled and s.watcher.folders == [Path("/music"), Path("/more")]


def test_usearch_is_an_alias_of_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHT_STORAGE__MODE", "usearch")
    assert load_settings().storage.mode is StorageMode.FILE


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("INSIGHT_SERVER__PORT", "eighty"),
        ("INSIGHT_SERVER__PORT", "70000"),
        ("INSIGHT_STORAGE__MODE", "postgres"),
        ("INSIGHT_AUDIO__WINDOW_SIZE_S", "-1"),
        ("INSIGHT_MODEL__ENABLE_CUDA", "maybe"),
        ("INSIGHT_STREAM__MAX_SESSIONS", "0"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert var in str(exc.value)
    assert value in str(exc.value)


def test_cli_reports_bad_config_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from insight.cli import main

    monkeypatch.setenv("INSIGHT_SERVER__PORT", "not-a-port")
    assert main(["serve"]) == 2
    assert "INSIGHT_SERVER__PORT" in capsys.readouterr().err
