#!/usr/bin/env python3
"""Consume squeezelite's stdout PCM at real-time rate (44100 Hz x 2 ch x 16 bit) so playback
takes wall-clock time; no catch-up burst after a pause (the schedule never lags now by >0.1 s)."""
import sys, time
RATE = 44100 * 2 * 2
inp = sys.stdin.buffer
due = time.monotonic()
while True:
    b = inp.read1(8192) if hasattr(inp, "read1") else inp.read(8192)
    if not b:
        break
    now = time.monotonic()
    due = max(due, now - 0.1) + len(b) / RATE
    if due > now:
        time.sleep(due - now)
