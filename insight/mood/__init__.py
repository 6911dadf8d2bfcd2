"""Zero-shot mood classification over cached CLAP prompt embeddings."""

from insight.mood.classifier import MoodClassifier, PromptBank, classify
from insight.mood.labels import AXIS_PROMPTS, MoodLabel, mood_ids, mood_labels

__all__ = [
    "AXIS_PROMPTS",
    "MoodClassifier",
    "MoodLabel",
    "PromptBank",
    "classify",
    "mood_ids",
    "mood_labels",
]
