"""Folder watcher: analyse a local music library once, then keep up with changes.

- ``scanner``: which files count (extensions) and their fingerprint (size + sha1 of the head
  and tail of the file: cheap, and enough to recognise a moved file).
- ``tags``: title, artists, album, genres, MusicBrainz ids (mutagen; PyAV container metadata as
  fallback, e.g. WAV INFO tags); the file name when there is no title.
- ``decode``: PyAV decode to mono float32 at the model's rate, whole file (``full``) or N
  windows spread over the track (``sampled``, seeking so the rest is never decoded).
- ``state``: SQLite under the data dir (path, size, mtime, content hash, track id, status,
  error) so restarts skip finished files and moved files keep their vectors.
- ``live``: watchdog events, debounced.
- ``guard``: regular files only (never a FIFO, socket or device, also behind a symlink), opened
  without blocking; size budget; the decode time budget and the stop flag of shutdown.
- ``roots``: folders refused (system roots and folders, pseudo filesystems by mount type).
- ``files``: one file through checks, fingerprint, move detection, analysis and its state row.
- ``service``: the queue, workers, folders, pause/resume, status, rescans.
- ``host_work``: decoding in processes (speed for ``insight scan``, isolation from hostile
  files for the background scan); ``polite``: the background's priority and thread and
  process counts.

Track ids (stable across restarts): ``mb:<MusicBrainz recording id>`` when the file has a
MusicBrainz track id tag; otherwise ``file:<first 32 hex of sha256(path relative to the watched
folder, with '/')>``. The id is fixed when a file is first analysed: a file moved
or renamed inside the watched folders keeps its id (and its vectors; only ``file_path`` changes).
"""
