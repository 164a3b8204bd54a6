# SPDX-License-Identifier: Apache-2.0
"""Decode any audio or video container to mono float32 blocks at a chosen rate.

FFmpeg (through PyAV) demuxes and decodes; PyAV's resampler only mixes down to mono float,
and soxr changes the rate, streamed, so that a 3-hour file never sits whole in memory
(:class:`MonoResampler`, which live sources share).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soxr

from earmark.errors import (
    CorruptInput,
    EmptyInput,
    FileMissing,
    InputError,
    InputTooLong,
    SilentInput,
    UnsupportedFormat,
)

#: Longest input accepted by default, in seconds (4 h); callers may raise or lower it.
DEFAULT_MAX_SECONDS = 4 * 3600.0
#: Peak level under which a whole input counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class AudioInfo:
    """What the container says before decoding."""

    codec: str
    container: str
    sample_rate: int
    channels: int
    duration_s: float | None


class MonoResampler:
    """Decoded frames → mono float32 at ``sr``, streamed; rebuilt when the input format changes.

    Frames are gathered in an FFmpeg audio FIFO and mixed down (PyAV's resampler) and
    resampled (soxr) ``batch_s`` at a time: decoders hand out small frames (Vorbis: ~576
    samples on average), and per-frame calls into the mixer and the resampler cost several
    times the decoding itself (1,672 s of Ogg: 7.6 CPU-s frame by frame, 2.7 in batches).
    The output is the same but for the resampler's block edges (soxr streams exactly).

    Parameters
    ----------
    sr : int
        Output rate, Hz.
    batch_s : float
        Input gathered before it is mixed and resampled, in seconds (a live source keeps
        it short: it delays the stream by up to this much).
    """

    def __init__(self, sr: int, batch_s: float = 1.0) -> None:
        self.sr = sr
        self.batch_s = batch_s
        self._key: tuple[int, str, str] | None = None
        self._fifo: av.AudioFifo | None = None
        self._batch = 1
        self._mixer: av.AudioResampler | None = None
        self._rs: soxr.ResampleStream | None = None

    def push(self, frame: av.AudioFrame) -> list[np.ndarray]:
        """Add one decoded frame; returns the output samples that became ready."""
        key = (frame.sample_rate, frame.format.name, frame.layout.name)
        out = self.flush() if key != self._key else []
        if self._fifo is None:
            self._key = key
            self._fifo = av.AudioFifo()
            self._batch = max(1, int(self.batch_s * frame.sample_rate))
            self._mixer = av.AudioResampler(format="flt", layout="mono", rate=frame.sample_rate)
            self._rs = soxr.ResampleStream(frame.sample_rate, self.sr, 1, dtype="float32",
                                           quality="HQ")
        frame.pts = None  # the FIFO checks timestamps for gaps; decoders' are not ours to fix
        self._fifo.write(frame)
        if self._fifo.samples >= self._batch:
            out.extend(self._drain())
        return out

    def _drain(self) -> list[np.ndarray]:
        assert self._fifo is not None and self._mixer is not None and self._rs is not None
        frame = self._fifo.read()
        if frame is None:
            return []
        return [self._rs.resample_chunk(_flat(m)) for m in self._mixer.resample(frame)]

    def flush(self) -> list[np.ndarray]:
        """The end of the input (or of one input format): everything still held."""
        if self._fifo is None or self._mixer is None or self._rs is None:
            return []
        out = self._drain()
        out += [self._rs.resample_chunk(_flat(m)) for m in self._mixer.resample(None)]
        out.append(self._rs.resample_chunk(np.zeros(0, np.float32), last=True))
        self._key = self._fifo = self._mixer = self._rs = None
        return out


def _flat(frame: av.AudioFrame) -> np.ndarray:
    return frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)


def _open(path: str | os.PathLike[str]) -> av.container.InputContainer:
    if isinstance(path, str) and path.startswith(URL_SCHEMES):
        return _open_url(path)
    p = Path(path)
    if p.is_dir():
        raise UnsupportedFormat(f"{os.fspath(path)!r} is a folder, not an audio file")
    if not p.is_file():
        raise FileMissing(f"no such file: {os.fspath(path)!r}")
    if not os.access(p, os.R_OK):
        raise InputError(f"cannot read {p.name!r}: permission denied")
    if p.stat().st_size == 0:
        raise EmptyInput(f"file is empty (0 bytes): {os.fspath(path)!r}")
    try:
        return av.open(os.fspath(p), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as exc:
        raise UnsupportedFormat(
            f"FFmpeg does not recognise {p.name!r} as audio or video ({exc.strerror})"
        ) from exc
    except av.error.FFmpegError as exc:
        raise CorruptInput(f"cannot open {p.name!r}: {exc}") from exc


URL_SCHEMES = ("http://", "https://")  #: inputs read over the network by FFmpeg
URL_TIMEOUT_S = 30.0  #: connect / read timeout of a URL input


def _open_url(url: str) -> av.container.InputContainer:
    """An ``http(s)://`` input (an object store's URL, a presigned link), read by FFmpeg as
    a stream: nothing is downloaded to disk first."""
    shown = url.split("?", 1)[0]  # a presigned URL's query string holds its credentials
    try:
        return av.open(url, mode="r", metadata_errors="ignore", timeout=URL_TIMEOUT_S)
    except av.error.HTTPNotFoundError:
        raise FileMissing(f"no such object: {shown!r} (HTTP 404)") from None
    except (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError) as exc:
        raise InputError(f"cannot read {shown!r}: access refused ({exc.strerror}); check the "
                         "URL's credentials or expiry") from None
    except av.error.InvalidDataError as exc:
        raise UnsupportedFormat(
            f"FFmpeg does not recognise {shown!r} as audio or video ({exc.strerror})") from None
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"cannot read {shown!r}: {exc}; check that the server is reachable "
                         "from this node") from None


def _audio_stream(container: av.container.InputContainer, name: str) -> av.audio.AudioStream:
    if not container.streams.audio:
        raise UnsupportedFormat(f"{name!r} has no audio stream")
    return container.streams.audio[0]


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Read codec, rate, channels and duration without decoding."""
    with _open(path) as c:
        s = _audio_stream(c, Path(path).name)
        dur = None
        if s.duration is not None and s.time_base is not None:
            dur = float(s.duration * s.time_base)
        elif c.duration is not None:
            dur = c.duration / av.time_base
        return AudioInfo(
            codec=s.codec_context.name,
            container=c.format.name,
            sample_rate=s.codec_context.sample_rate or 0,
            channels=s.codec_context.channels or 0,
            duration_s=dur,
        )


def iter_blocks(
    path: str | os.PathLike[str],
    sr: int,
    *,
    block_s: float = 30.0,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> Iterator[np.ndarray]:
    """Decode ``path`` to mono float32 at ``sr`` Hz, yielding blocks of about ``block_s`` s.

    Parameters
    ----------
    path : path-like
        Any file FFmpeg reads: WAV, FLAC, MP3, Ogg Vorbis, Opus, AAC/M4A, MP4, WebM, ...
    sr : int
        Output sample rate in Hz.
    block_s : float
        Block length in seconds; the last block may be shorter.
    max_seconds : float or None
        Refuse inputs longer than this (decoded length), with :class:`InputTooLong`.

    Yields
    ------
    block : np.ndarray [shape=(n,), dtype=float32]
        Consecutive samples in [-1, 1] (not clipped: lossy decoders may overshoot slightly).

    Raises
    ------
    FileMissing, EmptyInput, UnsupportedFormat, CorruptInput, InputTooLong
        Before or while decoding. Silence is not checked here (see :func:`decode`).
    """
    name = Path(path).name
    container = _open(path)
    try:
        stream = _audio_stream(container, name)
        in_rate = stream.codec_context.sample_rate
        if not in_rate:
            raise CorruptInput(f"{name!r}: audio stream has no sample rate")
        declared = container.duration / av.time_base if container.duration else None
        if max_seconds is not None and declared is not None and declared > max_seconds * 1.01:
            # refuse at once what the container says is too long (decoding still checks)
            raise InputTooLong(
                f"{name!r} lasts {declared:.0f} s, over the limit of {max_seconds:.0f} s "
                "(raise it with --max-seconds)"
            )
        mono = MonoResampler(sr)
        block_n = max(1, int(block_s * sr))
        limit_n = None if max_seconds is None else int(max_seconds * sr)
        pending: list[np.ndarray] = []
        n_pending = 0
        n_total = 0
        n_bad = 0
        n_packets = 0

        def frames() -> Iterator[av.AudioFrame]:
            nonlocal n_bad, n_packets
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    return
                except av.error.FFmpegError as exc:
                    raise CorruptInput(f"{name!r}: cannot read packets ({exc})") from exc
                if packet.size:
                    n_packets += 1
                try:
                    yield from packet.decode()
                except av.error.FFmpegError:
                    # a damaged packet in the middle: skip it, like players do; too many → corrupt
                    n_bad += 1
                    if n_bad > 50:
                        raise CorruptInput(f"{name!r}: too many undecodable packets") from None

        for frame in frames():
            for y in mono.push(frame):
                pending.append(y)
                n_pending += y.size
            if limit_n is not None and n_total + n_pending > limit_n:
                raise InputTooLong(
                    f"{name!r} is longer than the limit of {max_seconds:.0f} s "
                    "(raise it with --max-seconds)"
                )
            while n_pending >= block_n:
                buf = np.concatenate(pending)
                out, rest = buf[:block_n], buf[block_n:]
                pending, n_pending = ([rest], rest.size) if rest.size else ([], 0)
                n_total += out.size
                yield out
        pending.extend(mono.flush())
        buf = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        if limit_n is not None and n_total + buf.size > limit_n:
            raise InputTooLong(f"{name!r} is longer than the limit of {max_seconds:.0f} s")
        n_total += buf.size
        if n_total == 0:
            if n_bad or n_packets:
                raise CorruptInput(
                    f"{name!r}: no audio could be decoded from {n_packets} packets"
                )
            raise EmptyInput(f"{name!r} holds no audio samples")
        if buf.size:
            yield buf
    finally:
        container.close()


def decode(
    path: str | os.PathLike[str],
    sr: int,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    allow_silent: bool = False,
) -> np.ndarray:
    """Decode a whole (short) input to one mono float32 array at ``sr`` Hz.

    Use :func:`iter_blocks` for long inputs. Raises :class:`SilentInput` when the peak level
    stays under :data:`SILENCE_PEAK`, unless ``allow_silent``.
    """
    blocks = list(iter_blocks(path, sr, max_seconds=max_seconds))
    y = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if not allow_silent and (y.size == 0 or float(np.max(np.abs(y))) < SILENCE_PEAK):
        raise SilentInput(f"{Path(path).name!r} is silent (peak under -80 dBFS)")
    return y


def decode_head(path: str | os.PathLike[str], sr: int, seconds: float) -> np.ndarray:
    """The first ``seconds`` of an input, mono float32 at ``sr`` Hz; decoding stops there.

    Empty (shape (0,)) when the input decodes to nothing; silence is not checked.
    """
    blocks: list[np.ndarray] = []
    n = 0
    for b in iter_blocks(path, sr):
        blocks.append(b)
        n += b.size
        if n >= seconds * sr:
            break
    return np.concatenate(blocks)[: int(seconds * sr)] if blocks else np.zeros(0, np.float32)
