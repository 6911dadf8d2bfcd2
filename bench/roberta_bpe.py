"""RoBERTa's byte-level BPE rebuilt from GPT-2's ranks, for benchmarks at real token counts.

The hub's CLAP folders carry RoBERTa's ``tokenizer.json`` (GPT-2's 50 257 byte-level merges
plus RoBERTa's specials). It cannot be downloaded here, but GPT-2's ranks ship inside
``openai-whisper``'s source package (``whisper/assets/gpt2.tiktoken``, MIT), which the package
registry serves. The merges are recovered from the ranks the way transformers' tiktoken
converter does, so a sentence splits into the same number of tokens as with RoBERTa's own
files. Ids are ``rank + 4`` after ``<s> <pad> </s> <unk>`` (RoBERTa orders its ids by fairseq's
dictionary instead): the counts are real, the ids only stand in.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import tarfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

WHISPER_SDIST = "openai-whisper==20250625"
ASSET = "whisper/assets/gpt2.tiktoken"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
MASK_ID = 50264  # RoBERTa's vocab has 50 265 entries, <mask> last


def fetch_gpt2_ranks(work: Path) -> Path:
    """``gpt2.tiktoken`` from openai-whisper's sdist (pip download, once per work folder)."""
    out = work / "gpt2.tiktoken"
    if out.exists():
        return out
    work.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", WHISPER_SDIST, "--no-deps", "--no-binary"]
    subprocess.run([*pip, ":all:", "-d", str(work), "-q"], check=True)
    sdist = next(work.glob("openai_whisper-*.tar.gz"), None)
    if sdist is None:
        raise OSError(f"pip download {WHISPER_SDIST} left no source package in {work}")
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(ASSET))
        data = tar.extractfile(member)
        assert data is not None
        out.write_bytes(data.read())
    return out


def _byte_chars() -> dict[int, str]:
    """GPT-2's printable stand-in for every byte (``bytes_to_unicode``)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def roberta_bpe(ranks_file: Path) -> Tokenizer:
    """RoBERTa's tokenizer (byte-level BPE, ``<s> … </s>``) from GPT-2's token ranks."""
    ranks: dict[bytes, int] = {}
    for line in ranks_file.read_text().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    show = _byte_chars()

    def text(token: bytes) -> str:
        return "".join(show[b] for b in token)

    merges: list[tuple[int, int, int, str, str]] = []  # ordered as transformers orders them
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], text(left), text(right)))
    merges.sort()
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    vocab.update({text(token): rank + len(SPECIALS) for token, rank in ranks.items()})
    vocab["<mask>"] = MASK_ID
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=[(a, b) for *_, a, b in merges], unk_token="<unk>")
    )
    tok.add_special_tokens([*SPECIALS, "<mask>"])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return tok
