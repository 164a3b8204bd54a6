# SPDX-License-Identifier: Apache-2.0
"""Decoding: every common container through real FFmpeg, streamed blocks, typed errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import needs_ffmpeg
from earmark.audio.decode import MonoResampler, decode, iter_blocks, probe
from earmark.audio.generators import tone
from earmark.errors import (
    CorruptInput,
    EmptyInput,
    FileMissing,
    InputTooLong,
    SilentInput,
    UnsupportedFormat,
)

pytestmark = needs_ffmpeg

ENCODERS = {
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "96k"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "4"],
    "opus": ["-c:a", "libopus", "-b:a", "64k"],
    "m4a": ["-c:a", "aac", "-b:a", "96k"],
    "mp4": ["-f", "lavfi", "-i", "color=c=black:s=64x64:r=10", "-shortest", "-c:v", "mpeg4",
            "-c:a", "aac"],
    "webm": ["-f", "lavfi", "-i", "color=c=black:s=64x64:r=10", "-shortest", "-c:v", "libvpx",
             "-c:a", "libopus"],
    "mkv": ["-c:a", "flac"],
}


def _encode(path: Path, y: np.ndarray, sr: int, args: list[str], channels: int = 1) -> Path:
    x = np.repeat(y[:, None], channels, axis=1) if channels > 1 else y
    pre, post = (args[:args.index("-shortest")], args[args.index("-shortest"):]) \
        if "-shortest" in args else ([], args)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(sr), "-ac", str(channels),
         "-i", "-", *pre, *post, str(path)],
        input=np.asarray(x, np.float32).tobytes(), check=True,
    )
    return path


@pytest.mark.parametrize("ext", sorted(ENCODERS))
def test_every_format_decodes_to_the_same_tone(tmp_path: Path, ext: str) -> None:
    y = tone(440.0, sr=44100, duration=3.0)
    p = _encode(tmp_path / f"a.{ext}", y, 44100, ENCODERS[ext], channels=2)
    z = decode(p, 8000)
    assert abs(z.size / 8000 - 3.0) < 0.1  # duration kept (codec padding trimmed or small)
    spec = np.abs(np.fft.rfft(z[2000:18000] * np.hanning(16000)))
    assert abs(np.argmax(spec) * 8000 / 16000 - 440.0) < 2.0
    assert 0.2 < float(np.max(np.abs(z))) < 0.8
    info = probe(p)
    assert info.channels == 2 and info.sample_rate in (44100, 48000)


def test_blocks_are_streamed_and_concatenate_to_the_whole(tmp_path: Path) -> None:
    y = tone(300.0, sr=16000, duration=20.0)
    p = _encode(tmp_path / "long.flac", y, 16000, ENCODERS["flac"])
    blocks = list(iter_blocks(p, 8000, block_s=3.0))
    assert len(blocks) >= 6
    assert all(b.size == 24000 for b in blocks[:-1])  # fixed-size blocks, never the whole file
    whole = decode(p, 8000)
    assert np.allclose(np.concatenate(blocks), whole)


def test_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(FileMissing):
        decode(tmp_path / "nope.mp3", 8000)
    with pytest.raises(UnsupportedFormat, match="folder"):
        decode(tmp_path, 8000)
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(EmptyInput):
        decode(tmp_path / "empty.mp3", 8000)
    (tmp_path / "text.mp3").write_text("this is not audio at all\n" * 100)
    with pytest.raises(UnsupportedFormat):
        decode(tmp_path / "text.mp3", 8000)
    silent = _encode(tmp_path / "silent.wav", np.zeros(16000, np.float32), 8000,
                     ENCODERS["wav"])
    with pytest.raises(SilentInput):
        decode(silent, 8000)
    assert decode(silent, 8000, allow_silent=True).size == 16000
    long = _encode(tmp_path / "long.wav", tone(200.0, sr=8000, duration=5.0), 8000,
                   ENCODERS["wav"])
    with pytest.raises(InputTooLong):
        decode(long, 8000, max_seconds=2.0)


def test_truncated_and_garbled_files_fail_cleanly(tmp_path: Path) -> None:
    p = _encode(tmp_path / "a.mp3", tone(440.0, sr=22050, duration=4.0), 22050, ENCODERS["mp3"])
    data = p.read_bytes()
    # half a file still decodes what is there
    half = tmp_path / "half.mp3"
    half.write_bytes(data[: len(data) // 2])
    assert 1.0 < decode(half, 8000).size / 8000 < 3.0
    # a header followed by garbage: a typed error, never a crash
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(data[:200] + rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    try:
        decode(bad, 8000)
    except (CorruptInput, UnsupportedFormat, SilentInput, EmptyInput):
        pass


def test_hostile_file_names(tmp_path: Path) -> None:
    y = tone(440.0, sr=8000, duration=2.0)
    for name in ("-leading dash.wav", "spaces and ünïcødé ♫.wav", "semi;colon'quote\".wav"):
        p = _encode(tmp_path / name, y, 8000, ENCODERS["wav"])
        assert decode(p, 8000).size == 16000


def _frames(y: np.ndarray, sr: int, fmt: str, layout: str, n: int) -> list[av.AudioFrame]:
    """``y`` (mono, float in [-1, 1]) cut into ``n``-sample PyAV frames of a format."""
    out = []
    for i in range(0, y.size, n):
        x = y[i: i + n]
        chans = 2 if layout == "stereo" else 1
        if fmt == "s16":  # packed: one plane of interleaved channels
            a = np.repeat((x * 32767).astype(np.int16), chans)[None, :]
        else:  # fltp: one plane per channel
            a = np.repeat(x.astype(np.float32)[None, :], chans, axis=0)
        f = av.AudioFrame.from_ndarray(a, format=fmt, layout=layout)
        f.sample_rate = sr
        out.append(f)
    return out


def test_mono_resampler_batches_small_frames_and_follows_format_changes() -> None:
    """Frames of 576 samples, then the format, layout and rate change mid-stream: every
    sample comes out once, at the output rate, with the tone's frequency kept."""
    f0 = 440.0
    a = tone(f0, sr=44100, duration=1.5).astype(np.float32)
    b = tone(f0, sr=22050, duration=1.0).astype(np.float32)
    mono = MonoResampler(8000, batch_s=0.25)
    out: list[np.ndarray] = []
    for fr in _frames(a, 44100, "s16", "stereo", 576) + _frames(b, 22050, "fltp", "mono", 300):
        out += mono.push(fr)
    out += mono.flush()
    y = np.concatenate(out)
    assert abs(y.size - 2.5 * 8000) <= 16
    spec = np.abs(np.fft.rfft(y[2000:18000]))
    assert abs(np.argmax(spec) * 8000 / 16000 - f0) <= 1.0
    assert mono.flush() == []  # nothing held after the end
