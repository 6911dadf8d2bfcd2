"""Every request and reply of the API, one source for the bus and for HTTP.

Field names and defaults follow SPEC.md "Data Types"; where SPEC is silent they follow the
original sidecar (shared/reference/seed-implementation.md). Path parameters of the HTTP API
(track_id, user_id, session_id, model_id, ...) are ordinary fields of the request models, so a
bus client sends exactly what the bridge sends.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from insight.schema_types import (
    Finite,
    FolderPath,
    Id,
    Pcm,
    SampleRate,
    TrackId,
    Vector,
)


class Schema(BaseModel):
    model_config = ConfigDict(extra="ignore", ser_json_bytes="base64", val_json_bytes="base64")


class Empty(Schema):
    """Request with no fields (GET endpoints without parameters)."""


# --- enums -------------------------------------------------------------------------------


class AudioFormat(StrEnum):
    PCM_F32_LE = "pcm_f32_le"
    PCM_S16_LE = "pcm_s16_le"
    PCM_S24_LE = "pcm_s24_le"


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class MoodTier(StrEnum):
    PRIMARY = "primary"
    REFINED = "refined"
    CONTEXTUAL = "contextual"


class SignalType(StrEnum):
    FULL_PLAY = "full_play"
    PARTIAL_PLAY = "partial_play"
    SKIP = "skip"
    REPEAT = "repeat"
    FAVORITE = "favorite"
    DISLIKE = "dislike"
    SAVE = "save"


class SessionStatus(StrEnum):
    ACTIVE = "active"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    ABORTED = "aborted"
    ERROR = "error"


class ModelStatus(StrEnum):
    NOT_DOWNLOADED = "not_downloaded"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    LOADED = "loaded"
    FAILED = "failed"


class DownloadStatus(StrEnum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


Collection = Literal["text", "audio"]


# --- shared shapes -----------------------------------------------------------------------


class IngestMetadata(Schema):
    name: str = Field(max_length=4096)
    artists: list[str] = Field(default_factory=list)
    album: str | None = None
    genres: list[str] = Field(default_factory=list)


class HashedMetadata(IngestMetadata):
    metadata_hash: str | None = None


class TrackMetadata(Schema):
    """Stored payload of a track, as returned by get/search."""

    track_id: str
    name: str = ""
    artists: list[str] = Field(default_factory=list)
    album: str | None = None
    genres: list[str] = Field(default_factory=list)
    file_path: str | None = None
    updated_at: int = 0
    primary_mood: str | None = None
    moods: list[str] | None = None
    mood_scores: dict[str, float] | None = None
    valence: float | None = None
    arousal: float | None = None
    metadata_hash: str | None = None
    source: str | None = None
    model_id: str | None = None
    version: str | None = None
    year: int | None = None
    mbid: str | None = None
    external_ids: dict[str, str] | None = None
    bpm: float | None = None
    key: str | None = None


class SearchFilter(Schema):
    artists: list[str] | None = None
    genres: list[str] | None = None
    album: str | None = None
    exclude_ids: list[Id] | None = None
    moods: list[str] | None = None
    exclude_moods: list[str] | None = None
    min_valence: Finite | None = None
    max_valence: Finite | None = None
    min_arousal: Finite | None = None
    max_arousal: Finite | None = None
    model_id: str | None = Field(
        default=None,
        description="Only vectors made by this model; search pins it to the loaded model",
    )
    min_bpm: float | None = Field(default=None, ge=0, le=1000)
    max_bpm: float | None = Field(default=None, ge=0, le=1000)
    keys: list[str] | None = Field(
        default=None, max_length=64, description="Musical key, any of (case-insensitive)"
    )


# --- health / config / status ------------------------------------------------------------


class HealthResponse(Schema):
    status: HealthStatus
    version: str
    model_loaded: bool
    storage_ready: bool
    message: str | None = None


class ModelConfigInfo(Schema):
    name: str
    cuda_enabled: bool
    loaded: bool
    device: str | None = None


class AudioConfigInfo(Schema):
    window_size_s: float
    hop_size_s: float


class ServerConfigInfo(Schema):
    host: str
    port: int


class StorageConfigInfo(Schema):
    url: str
    enabled: bool
    connected: bool
    mode: str


class ConfigResponse(Schema):
    model: ModelConfigInfo
    audio: AudioConfigInfo
    server: ServerConfigInfo
    storage: StorageConfigInfo


class StorageStats(Schema):
    mode: str
    connected: bool
    text_collection_count: int = 0
    audio_collection_count: int = 0
    profile_count: int = 0
    total_tracks: int = 0
    index_size_bytes: int | None = None
    stale_vectors: int = 0
    message: str | None = None


class StorageStatsResponse(Schema):
    stats: StorageStats


class ModelDetail(Schema):
    model_id: str
    name: str
    description: str | None = None
    status: ModelStatus
    estimated_size_bytes: int | None = None
    actual_size_bytes: int | None = None
    cache_path: str | None = None
    recommended: bool = False
    is_current: bool = False
    device: str | None = None
    license: str | None = None
    onnx_on_hub: bool = True
    note: str | None = None


class SystemStatus(Schema):
    version: str
    health: HealthStatus
    uptime_seconds: int
    model: ModelDetail | None = None
    storage: StorageStats
    features: list[str]
    workers: int = 1
    message: str | None = None


# --- embeddings --------------------------------------------------------------------------


class TextEmbedRequest(Schema):
    text: str | None = Field(default=None, max_length=100_000)
    metadata: IngestMetadata | None = None

    @model_validator(mode="after")
    def _one_given(self) -> TextEmbedRequest:
        if self.text is None and self.metadata is None:
            raise ValueError("Either 'text' or 'metadata' must be provided")
        return self


class TextEmbedResponse(Schema):
    embedding: Vector
    text: str


class AudioEmbedRequest(Schema):
    format: AudioFormat
    sample_rate: SampleRate
    channels: int = Field(ge=1, le=2)
    data: Pcm


class AudioEmbedResponse(Schema):
    embedding: Vector
    duration_s: float
    windows: int = 1


# --- tracks ------------------------------------------------------------------------------


class TrackRef(Schema):
    track_id: TrackId


class GetTrackRequest(TrackRef):
    include_text: bool = False
    include_audio: bool = False


class TrackResponse(Schema):
    track_id: str
    metadata: TrackMetadata | None
    has_text: bool
    has_audio: bool
    text_embedding: Vector | None = None
    audio_embedding: Vector | None = None


class DeleteTrackRequest(TrackRef):
    text: bool = True
    audio: bool = True


class DeleteTrackResponse(Schema):
    track_id: str
    text_deleted: bool
    audio_deleted: bool


class UpsertRequest(Schema):
    track_id: TrackId
    metadata: IngestMetadata
    text_embedding: Vector | None = None
    audio_embedding: Vector | None = None

    @model_validator(mode="after")
    def _some_vector(self) -> UpsertRequest:
        if self.text_embedding is None and self.audio_embedding is None:
            raise ValueError("At least one embedding (text or audio) must be provided")
        return self


class UpsertResponse(Schema):
    track_id: str
    text_stored: bool
    audio_stored: bool


MAX_BATCH = 100


class BatchUpsertRequest(Schema):
    tracks: list[UpsertRequest] = Field(max_length=MAX_BATCH)


class BatchItemResult(Schema):
    track_id: str
    success: bool
    error: str | None = None
    text_stored: bool = False
    audio_stored: bool = False
    text: str | None = None


class BatchResponse(Schema):
    results: list[BatchItemResult]
    total: int
    succeeded: int
    failed: int


class EmbedTextAndStoreRequest(Schema):
    track_id: TrackId
    metadata: HashedMetadata


class EmbedTextAndStoreResponse(Schema):
    track_id: str
    stored: bool
    text: str
    primary_mood: str | None = None


class BatchEmbedTextRequest(Schema):
    tracks: list[EmbedTextAndStoreRequest] = Field(max_length=MAX_BATCH)


class SearchRequest(Schema):
    embedding: Vector
    collection: Collection = "text"
    limit: int = Field(default=10, ge=1, le=100)
    filter: SearchFilter | None = None


class TextSearchRequest(Schema):
    query: str = Field(min_length=1, max_length=10_000)
    limit: int = Field(default=10, ge=1, le=100)
    filter: SearchFilter | None = None


class SimilarRequest(TrackRef):
    limit: int = Field(default=10, ge=1, le=100)
    filter: SearchFilter | None = None
    collection: Literal["auto", "text", "audio"] = "auto"


class MultiSimilarRequest(Schema):
    track_ids: list[TrackId] = Field(min_length=1, max_length=50)
    negative_ids: list[TrackId] = Field(default_factory=list, max_length=50)
    limit: int = Field(default=10, ge=1, le=100)
    filter: SearchFilter | None = None


class RadioRequest(Schema):
    seed_ids: list[TrackId] = Field(min_length=1, max_length=50)
    recent_ids: list[TrackId] = Field(default_factory=list, max_length=1000)
    count: int = Field(default=10, ge=1, le=100)
    filter: SearchFilter | None = None
    max_per_artist: int = Field(default=2, ge=1)


class SearchResult(Schema):
    track_id: str
    score: float
    metadata: TrackMetadata
    reason: str | None = None


class SearchResponse(Schema):
    results: list[SearchResult]
    count: int


# --- mood --------------------------------------------------------------------------------


class MoodClassifyRequest(Schema):
    embedding: Vector | None = None
    track_id: Id | None = None
    tiers: list[MoodTier] = Field(default_factory=lambda: [MoodTier.PRIMARY, MoodTier.REFINED])
    top_k: int = Field(default=3, ge=1, le=26)
    include_va: bool = True

    @model_validator(mode="after")
    def _one_given(self) -> MoodClassifyRequest:
        if self.embedding is None and self.track_id is None:
            raise ValueError("Either 'embedding' or 'track_id' must be provided")
        return self


class MoodScore(Schema):
    mood: str
    name: str
    confidence: float
    tier: MoodTier


class MoodClassification(Schema):
    primary_mood: str | None = None
    moods: list[str]
    mood_scores: dict[str, float]
    valence: float | None = None
    arousal: float | None = None
    details: list[MoodScore] = Field(default_factory=list)
    source: str | None = None


class MoodInfo(Schema):
    id: str
    name: str
    tier: MoodTier
    valence_hint: float
    arousal_hint: float
    prompt: str


class MoodListResponse(Schema):
    moods: list[MoodInfo]
    counts: dict[str, int]


# --- taste -------------------------------------------------------------------------------


class UserInteraction(Schema):
    """Either SPEC's aggregate form or the original sidecar's event form."""

    track_id: TrackId
    play_count: int | None = Field(default=None, ge=0)
    skip_count: int | None = Field(default=None, ge=0)
    is_favorite: bool | None = None
    last_played: int | None = None
    timestamp: int | None = None
    signal_type: SignalType | None = None
    seconds_played: Finite | None = Field(default=None, ge=0)
    duration: Finite | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_form(self) -> UserInteraction:
        aggregate = any(v is not None for v in (self.play_count, self.skip_count, self.is_favorite))
        if not aggregate and self.signal_type is None:
            raise ValueError(
                "an interaction needs play_count/skip_count/is_favorite or a signal_type"
            )
        return self


def _profile_type(v: Any) -> Any:
    """Accept "global", "mood:<id>" and the original's tagged {"type": "Mood", "value": ...}."""
    if isinstance(v, dict):
        kind = str(v.get("type", "")).lower()
        return f"{kind}:{v['value']}" if v.get("value") else kind
    return v


ProfileType = Annotated[
    str,
    BeforeValidator(_profile_type),
    Field(pattern=r"^(global|all|distaste|mood(:[a-z_]+)?)$"),
]


class UserRef(Schema):
    user_id: Id


class ComputeProfileRequest(UserRef):
    interactions: list[UserInteraction] | None = Field(default=None, max_length=100_000)
    cutoff_days: int | None = Field(default=None, ge=1, le=36_500)
    profile_type: ProfileType = Field(
        default="all", description="all = global + one profile per liked primary mood"
    )


class ProfileSummary(Schema):
    profile_type: str
    track_count: int
    confidence: float
    updated_at: int


class ComputeProfileResponse(Schema):
    user_id: str
    profiles: list[ProfileSummary]
    missing_tracks: list[str] = Field(default_factory=list)


class RecommendRequest(UserRef):
    limit: int = Field(default=25, ge=1, le=500)
    profile_type: ProfileType = "global"
    exclude_ids: list[Id] = Field(default_factory=list)
    filter: SearchFilter | None = None
    diversity: float = Field(default=0.3, ge=0, le=1, description="0 = pure relevance (MMR)")
    max_per_artist: int | None = Field(default=3, ge=1)
    exclude_recent: bool = True


class RecommendResponse(Schema):
    tracks: list[SearchResult]
    profile_confidence: float


class ProfileRequest(UserRef):
    profile_type: ProfileType = "global"


class TasteProfile(Schema):
    user_id: str
    profile_type: str
    embedding: Vector
    track_count: int
    confidence: float
    updated_at: int


class TasteVectorResponse(Schema):
    profile: TasteProfile


class DeletedResponse(Schema):
    deleted: bool
    message: str


# --- streaming ---------------------------------------------------------------------------


class StartStreamRequest(Schema):
    track_id: TrackId
    metadata: IngestMetadata
    format: AudioFormat
    sample_rate: SampleRate
    channels: int = Field(ge=1, le=2)
    replace_existing: bool = True


class StartStreamResponse(Schema):
    session_id: str
    window_samples: int


class SessionRef(Schema):
    session_id: Annotated[str, Field(min_length=1, max_length=128)]


class FramesRequest(SessionRef):
    data: Pcm
    seq: int | None = Field(default=None, ge=0, description="Chunk number, set by the bridge")
    remaining_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Bytes of the whole frames body from this chunk on, set by the bridge: "
        "the body is refused as a whole before its first chunk is stored",
    )


class FramesResponse(Schema):
    buffered_seconds: float
    windows_completed: int


class EndStreamRequest(SessionRef):
    store: bool = True
    min_duration_s: float = Field(default=3.0, ge=0)


class EndStreamResponse(Schema):
    track_id: str
    duration_s: float
    windows_processed: int
    text_stored: bool
    audio_stored: bool
    primary_mood: str | None = None


class StreamStatusResponse(Schema):
    session_id: str
    track_id: str
    status: SessionStatus
    buffered_seconds: float
    windows_completed: int
    age_seconds: float


class AbortResponse(Schema):
    session_id: str
    aborted: bool


# --- models ------------------------------------------------------------------------------


class ModelsResponse(Schema):
    models: list[ModelDetail]
    current_model: str | None = None


class ModelRef(Schema):
    model_id: Annotated[str, Field(min_length=1, max_length=256)]


class DownloadResponse(Schema):
    download_id: str | None = None
    model_id: str
    message: str
    already_exists: bool


class DownloadProgress(Schema):
    download_id: str
    model_id: str
    status: DownloadStatus
    bytes_downloaded: int
    total_bytes: int | None = None
    error: str | None = None
    started_at: int
    current_file: str | None = None
    completed_at: int | None = None


class DownloadsResponse(Schema):
    downloads: list[DownloadProgress]


class DownloadRef(Schema):
    download_id: str


class ModelActionResponse(Schema):
    model_id: str
    success: bool
    message: str
    stale_vectors: int = 0


class ReembedRequest(Schema):
    drop_unrecoverable: bool = Field(
        default=False,
        description="Delete stale audio vectors that cannot be rebuilt (no known file)",
    )


class ReembedResponse(Schema):
    reembedded_text: int
    reembedded_audio: int
    remaining_stale: int
    message: str
    dropped_audio: int = 0


# --- watcher -----------------------------------------------------------------------------


class WatchedFolder(Schema):
    path: FolderPath
    recursive: bool = True
    label: str | None = None
    enabled: bool = True


class WatcherFailure(Schema):
    path: str
    error: str


class WatcherStatus(Schema):
    state: Literal["stopped", "scanning", "watching", "paused", "disabled"]
    folders: list[WatchedFolder]
    done: int = 0
    pending: int = 0
    failed: int = 0
    current_file: str | None = None
    rate_per_min: float = 0.0
    eta_s: float | None = None
    mode: str = "full"
    recent_failures: list[WatcherFailure] = Field(
        default_factory=list, description="The last failed or skipped files, with the reason"
    )


class WatcherActionResponse(Schema):
    success: bool
    message: str


class ScanRequest(Schema):
    force: bool = False


class FolderRef(Schema):
    path: FolderPath


class FoldersResponse(Schema):
    folders: list[WatchedFolder]


class ListensRequest(UserRef):
    since: int = Field(default=0, ge=0, description="only plays that started at/after (unix s)")
    limit: int = Field(default=1000, ge=1, le=10_000, description="newest plays first")


class ListenedPlay(Schema):
    track_id: str
    started_at: int
    seconds_played: float
    duration: float
    fully_played: bool
    skipped: bool


class OpenListen(Schema):
    track_id: str
    started_at: int
    position: float
    playing: bool


class ListensResponse(Schema):
    """What insight believes a user did: plays and skips (newest first), favorites, and the
    listen still open (not booked until its item ends)."""

    user_id: str
    plays: list[ListenedPlay]
    play_count: int = Field(description="plays among those returned (not skips)")
    skip_count: int = Field(description="skips among those returned")
    favorites: list[str]
    listening: OpenListen | None = None


class EventTrackMetadata(HashedMetadata):
    """What a Music Assistant track adds to the text and the payload: its ``version`` (a
    "Live" take is another text), album year, MusicBrainz recording id and all external ids,
    and ``audio_metadata`` bpm / musical key (filterable)."""

    version: str | None = Field(default=None, max_length=4096)
    year: int | None = Field(default=None, ge=0, le=9999)
    mbid: str | None = Field(default=None, max_length=256)
    external_ids: dict[str, str] | None = None
    bpm: float | None = Field(default=None, ge=0, le=1000)
    key: str | None = Field(default=None, max_length=64)
