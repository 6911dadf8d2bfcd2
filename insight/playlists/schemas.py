"""Requests and replies of song paths, mixes, cluster playlists and the library map."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from insight.schemas import Schema, SearchFilter, SearchResult, TrackId, TrackMetadata

PlaylistId = Annotated[str, Field(min_length=1, max_length=64)]
Unit = Annotated[float, Field(ge=-1.0, le=1.0)]
PlaylistKind = Literal["cluster", "mix", "path"]


class SaveAs(Schema):
    save: bool = Field(default=False, description="Store the result as a playlist")
    name: str | None = Field(default=None, max_length=200)


class PathRequest(SaveAs):
    start_id: TrackId
    end_id: TrackId
    steps: int = Field(default=12, ge=2, le=100, description="Tracks on the path, A and B too")
    max_per_artist: int | None = Field(default=None, ge=1)
    filter: SearchFilter | None = None

    @model_validator(mode="after")
    def _distinct(self) -> PathRequest:
        if self.start_id == self.end_id:
            raise ValueError("start_id and end_id must differ")
        return self


class PathStep(Schema):
    position: int
    track_id: str
    progress: float = Field(description="Projection on the line A→B: 0 at A, 1 at B")
    target_similarity: float = Field(description="Cosine to this step's evenly spaced target")
    line_distance: float = Field(description="Distance from the line A→B in embedding space")
    metadata: TrackMetadata


class PathResponse(Schema):
    steps: list[PathStep]
    count: int
    playlist_id: str | None = None


class MixRequest(SaveAs):
    size: int = Field(default=25, ge=1, le=500)
    moods: list[str] = Field(default_factory=list, max_length=26)
    genres: list[str] = Field(default_factory=list, max_length=50)
    min_valence: Unit | None = None
    max_valence: Unit | None = None
    min_arousal: Unit | None = None
    max_arousal: Unit | None = None
    min_tempo: float | None = Field(default=None, ge=0, le=400)
    max_tempo: float | None = Field(default=None, ge=0, le=400)
    prompt: str | None = Field(default=None, max_length=1000)
    user_id: str | None = Field(default=None, min_length=1, max_length=1024)
    diversity: float = Field(default=0.3, ge=0, le=1)
    max_per_artist: int | None = Field(default=2, ge=1)


class MixResponse(Schema):
    tracks: list[SearchResult]
    count: int
    playlist_id: str | None = None


class ClusterRequest(Schema):
    clusters: int = Field(default=8, ge=2, le=200)
    refresh_interval_s: int = Field(
        default=0, ge=0, le=30 * 86_400, description="Re-cluster on this schedule (0: never)"
    )
    seed: int = Field(default=0, ge=0)


class PlaylistSummary(Schema):
    playlist_id: str
    kind: PlaylistKind
    name: str
    description: str = ""
    track_count: int
    created_at: int
    updated_at: int


class ClusterResponse(Schema):
    playlists: list[PlaylistSummary]
    tracks: int
    kept_share: float | None = Field(
        default=None, description="Share of tracks that kept their playlist since the last run"
    )


class PlaylistRef(Schema):
    playlist_id: PlaylistId


class PlaylistsResponse(Schema):
    playlists: list[PlaylistSummary]
    refresh_interval_s: int = Field(default=0, description="Cluster refresh schedule (0: none)")
    next_refresh_at: int | None = None


class PlaylistResponse(Schema):
    playlist: PlaylistSummary
    track_ids: list[str]
    tracks: list[TrackMetadata]


class M3u8Response(Schema):
    playlist_id: str
    filename: str
    content: str


class MapRequest(Schema):
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=20_000, ge=1, le=20_000)
    refresh: bool = False


class MapResponse(Schema):
    """One page of the 2-D library map, column by column (a point is one index)."""

    total: int
    offset: int
    version: int
    computed_at: int
    recomputing: bool
    track_ids: list[str]
    x: list[float]
    y: list[float]
    names: list[str]
    artists: list[str | None]
    moods: list[str | None]
    genres: list[str | None]
    valence: list[float | None]
    arousal: list[float | None]


class HistoryRequest(Schema):
    user_id: Annotated[str, Field(min_length=1, max_length=1024)]
    limit: int = Field(default=20, ge=1, le=500)


class HistoryItem(Schema):
    track_id: str
    play_count: int
    skip_count: int
    is_favorite: bool
    last_played: int
    metadata: TrackMetadata | None = None


class HistoryResponse(Schema):
    user_id: str
    items: list[HistoryItem]
