"""Settings from the environment: ``INSIGHT_`` prefix, ``__`` between section and key.

Every variable of SPEC.md is here with its default; ``load_settings`` turns a validation
error into one message per bad variable, named as the user would set it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("~/.local/share/insight-sidecar")
DEFAULT_MODEL = "Xenova/clap-htsat-unfused"
AUTH_FILE_NAME = "auth.env"


class StorageMode(StrEnum):
    FILE = "file"
    QDRANT = "qdrant"


class ModelSettings(BaseModel):
    name: str = DEFAULT_MODEL
    path: Path | None = Field(default=None, description="Local model folder; skips the hub")
    enable_cuda: bool = False
    enable_rocm: bool = False
    enable_coreml: bool = False
    enable_directml: bool = False
    enable_openvino: bool = False
    threads: int = Field(default=0, ge=0, description="ONNX intra-op threads; 0 = all cores")
    quantized: bool | None = Field(
        default=None,
        description="int8 towers: unset = each tower where int8 is within cosine 0.999 of fp32; "
        "true = int8 everywhere; false = fp32 everywhere",
    )
    audio_batch: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Windows per audio-tower run; 0 = auto (CPU int8 1, CPU fp32 8, GPU 32)",
    )
    auto_download: bool = Field(default=True, description="Download the model at start if missing")
    hub_endpoint: str | None = Field(
        default=None, description="Hugging Face hub URL; default HF_ENDPOINT or huggingface.co"
    )

    @field_validator("path")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return v.expanduser() if v else None


class AudioSettings(BaseModel):
    window_size_s: float = Field(default=10.0, gt=0, le=60)
    hop_size_s: float = Field(default=10.0, gt=0, le=60)
    max_embed_s: float = Field(
        default=900.0, gt=0, description="Most audio one `POST /embed/audio` may carry, seconds"
    )


class InferenceSettings(BaseModel):
    max_batch: int = Field(default=16, ge=1, le=256)
    max_wait_ms: float = Field(default=5.0, ge=0, le=1000)
    max_queue: int = Field(default=256, ge=1)
    runners: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Batches run at once; for bulk scans set it to the cores with THREADS=1",
    )
    bulk_batch: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Windows per batch of a background scan (on runners of its own)",
    )
    remote: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: send embedding work to `insight worker --role inference` nodes of "
        "the same model when any are on the bus, else embed here; off: always here",
    )
    remote_inflight: int = Field(
        default=2, ge=1, le=64, description="Requests in flight per inference worker"
    )
    remote_timeout_s: float = Field(
        default=30.0, gt=0, description="An inference request unanswered this long goes elsewhere"
    )
    remote_pcm: Literal["s16", "f32"] = Field(
        default="s16",
        description="Audio windows to inference workers as s16 (16-bit PCM scaled per window: "
        "half the bytes, vectors within cosine 0.9999) or f32 (bit-exact)",
    )
    remote_max_windows: int = Field(
        default=16, ge=1, le=256, description="Audio windows (or texts) per inference request"
    )
    heartbeat_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Inference workers announce themselves this often; silent for 3 of these, "
        "a worker is dropped and its requests go to another",
    )


class StorageSettings(BaseModel):
    mode: StorageMode = StorageMode.FILE
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, validate_default=True)
    url: str = "http://localhost:6334"
    api_key: SecretStr | None = None
    collection_prefix: str = ""
    enabled: bool = True
    lease_ttl_s: float = Field(
        default=15.0,
        ge=0,
        description="Life of the store lease that keeps a second private store off the bus, "
        "renewed every third of it (docs/deployment.md); 0 = no check",
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _alias_usearch(cls, v: Any) -> Any:
        return "file" if isinstance(v, str) and v.lower() == "usearch" else v

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()


class ServerSettings(BaseModel):
    host: str = "0.0.0.0"
    port: int = Field(default=8096, ge=0, le=65535)
    api_key: SecretStr | None = None
    cors_origins: list[str] = Field(default_factory=list)
    max_body_mb: float = Field(default=16.0, gt=0)
    request_timeout_s: float = Field(default=30.0, gt=0)
    expose_file_paths: bool = Field(
        default=False, description="Show tracks' file_path in search/get results"
    )
    header_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="A request head must arrive within this of the connection (or of the "
        "previous reply); also how long an idle keep-alive connection stays open",
    )
    body_timeout_s: float = Field(
        default=60.0, gt=0, description="A request body must arrive within this of its head"
    )


class NatsSettings(BaseModel):
    url: str = Field(default="", description="Empty = start the embedded nats-server")
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    port: int = Field(default=0, ge=0, le=65535, description="Embedded server port; 0 = free")
    max_payload_mb: float = Field(default=8.0, gt=0, le=64)
    replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Replicas of the streams and KV buckets insight creates (3 on a 3-node "
        "NATS cluster); existing ones keep theirs",
    )
    auth_file: Path | None = Field(
        default=None,
        description="User/password file of the embedded server; default <data_dir>/nats/auth.env",
    )
    _data_dir: Path | None = PrivateAttr(default=None)

    @property
    def auth_path(self) -> Path | None:
        """Where the embedded server keeps its generated credentials (and clients read them)."""
        if self.auth_file is not None:
            return self.auth_file.expanduser()
        return self._data_dir / "nats" / AUTH_FILE_NAME if self._data_dir is not None else None


class StreamSettings(BaseModel):
    max_sessions: int = Field(default=100, ge=1)
    max_buffered_s: float = Field(default=900.0, gt=0)
    idle_timeout_s: float = Field(default=300.0, gt=0)
    min_duration_s: float = Field(default=3.0, ge=0)


class TasteSettings(BaseModel):
    half_life_days: float = Field(default=14.0, gt=0)
    cutoff_days: int = Field(default=21, ge=1)
    recent_exclude_days: float = Field(default=2.0, ge=0)


class WatcherSettings(BaseModel):
    enabled: bool = False
    folders: list[Path] = Field(default_factory=list)
    extensions: list[str] = Field(
        default_factory=lambda: ["mp3", "flac", "ogg", "opus", "m4a", "wav", "aiff", "wma"]
    )
    scan_interval_s: float = Field(default=3600.0, ge=0)
    workers: int = Field(default=1, ge=1, le=32)
    mode: Literal["full", "sampled"] = "full"
    distributed: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: with inference workers on the bus, files are analysed by every node "
        "through the INSIGHT_SCAN work queue (the library at the same path on each); off: here",
    )
    scan_here: bool = Field(
        default=True,
        description="Also analyse files of a distributed scan on this node (false: a weak "
        "store node leaves decoding and embedding to the inference workers)",
    )
    scan_ack_wait_s: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="A scan job not acknowledged (or renewed) this long goes to another node; "
        "set by the node that creates the insight-scan consumer",
    )
    sampled_windows: int = Field(default=3, ge=1)
    threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Decode threads of a background scan; 0: a quarter of the cores, at least 1",
    )
    processes: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="Files are decoded in this many processes, 0: in threads. Unset: `insight "
        "scan` one per core (at most 16: threads hold the GIL), the background scan as many as "
        "its THREADS (a file that crashes the decoder takes only its process down)",
    )
    nice: int = Field(
        default=15,
        ge=0,
        le=19,
        description="CPU nice value of a background scan's threads and processes "
        "(IO: lowest best-effort)",
    )
    debounce_s: float = Field(default=2.0, ge=0, description="Quiet time before a changed file")
    scan_on_start: bool = True
    max_file_mb: float = Field(default=1024.0, gt=0, description="Larger files are skipped")
    max_decode_s: float = Field(default=300.0, gt=0, description="Decode time budget per file")
    max_audio_s: float = Field(
        default=1800.0, gt=0, description="Audio decoded per file in full mode (bounds memory)"
    )

    @field_validator("folders")
    @classmethod
    def _no_system_folders(cls, v: list[Path]) -> list[Path]:
        from insight.watcher.roots import folder_refusal, resolved

        for raw in v:
            why = folder_refusal(resolved(raw))
            if why is not None:
                raise ValueError(f"watch folder {raw} is refused: {why}")
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INSIGHT_",
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="ignore",
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    nats: NatsSettings = Field(default_factory=NatsSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    taste: TasteSettings = Field(default_factory=TasteSettings)
    watcher: WatcherSettings = Field(default_factory=WatcherSettings)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _link_sections(self) -> Settings:
        self.nats._data_dir = self.storage.data_dir  # the default place of nats.auth_file
        return self

    @property
    def models_dir(self) -> Path:
        return self.storage.data_dir / "models"


def redact_url(url: str) -> str:
    """``url`` without its secrets: the password (or a lone user, often a token) of the userinfo
    and every query value become ``***``; a URL that does not parse is ``***`` as a whole."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.netloc and "@" in url:  # no scheme: "user:pass@host:6334"
        return "***@" + url.rpartition("@")[2]
    userinfo, at, netloc = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{netloc}" if colon else f"***@{netloc}"
    query = "&".join(
        f"{k.partition('=')[0]}=***" if "=" in k else "***" for k in parts.query.split("&") if k
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class ConfigError(Exception):
    """Invalid configuration; the message names every bad ``INSIGHT_*`` variable."""


def env_name(loc: tuple[int | str, ...]) -> str:
    return "INSIGHT_" + "__".join(str(p).upper() for p in loc if not isinstance(p, int))


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [f"{env_name(e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
