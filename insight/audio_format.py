"""The raw PCM encodings insight decodes: a leaf, so the decoder (``inference/audio.py``) and
the wire schemas share one enum without the decoder importing the API's schemas."""

from __future__ import annotations

from enum import StrEnum


class AudioFormat(StrEnum):
    PCM_F32_LE = "pcm_f32_le"
    PCM_S16_LE = "pcm_s16_le"
    PCM_S24_LE = "pcm_s24_le"
