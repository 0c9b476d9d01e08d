"""Audio in and out: uploads decoded to 16 kHz mono float32, synthesised audio encoded as WAV or PCM.

Whisper and Silero VAD both want 16 kHz mono, so every upload is brought to that once,
here, with the limits checked before the samples are decoded: a small compressed file
can hold hours of silence, and its header says so before a byte is decoded.
"""

from __future__ import annotations

import io
import struct
from math import gcd

import numpy as np

from xrserve.core.errors import BadRequest, PayloadTooLarge

ASR_RATE = 16_000
#: Longest upload transcribed, in seconds. A turn in a conversation is seconds long; a
#: long recording would hold the single ASR instance for a minute (~0.2 s per 30 s window
#: at best on 2 cores) while interactive turns wait. Split longer files on the client.
MAX_DURATION_S = 300.0
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # OpenAI's own limit for /v1/audio/transcriptions
FORMATS_HINT = "send WAV, FLAC, OGG (Vorbis/Opus) or MP3"


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased), float32 in and out."""
    if source_rate == target_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    common = gcd(int(source_rate), int(target_rate))
    return resample_poly(samples, target_rate // common, source_rate // common).astype(np.float32)


def _too_long(seconds: float) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the audio is {seconds:.0f} s long; the limit is {MAX_DURATION_S:.0f} s. "
        "Split it into shorter files and send them one by one"
    )


def decode_upload(data: bytes, *, max_duration_s: float = MAX_DURATION_S) -> np.ndarray:
    """An uploaded audio file as 16 kHz mono float32 in [-1, 1], or a 400/413 that says why not."""
    if not data:
        raise BadRequest(f"the audio file is empty; {FORMATS_HINT}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(
            f"the audio file is {len(data) / 2**20:.1f} MiB; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB"
        )
    try:
        samples, rate = _decode_soundfile(data, max_duration_s)
    except _NotSoundfile:
        samples, rate = _decode_av(data, max_duration_s)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    samples = np.nan_to_num(samples.astype(np.float32, copy=False))
    return np.clip(resample(samples, rate, ASR_RATE), -1.0, 1.0)


class _NotSoundfile(Exception):
    pass


def _decode_soundfile(data: bytes, max_duration_s: float) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as handle:
            rate = handle.samplerate
            if rate <= 0:
                raise BadRequest(f"the audio header announces a sample rate of {rate} Hz; {FORMATS_HINT}")
            if handle.frames > 0 and handle.frames / rate > max_duration_s:
                raise _too_long(handle.frames / rate)
            samples = handle.read(frames=int(max_duration_s * rate) + 1, dtype="float32", always_2d=False)
    except soundfile.LibsndfileError as exc:
        raise _NotSoundfile(str(exc)) from None
    except (RuntimeError, ValueError) as exc:  # a header that parses but whose data does not
        raise BadRequest(f"the audio file could not be decoded ({exc}); {FORMATS_HINT}") from None
    if len(samples) > max_duration_s * rate:
        raise _too_long(len(samples) / rate)
    return samples, rate


def _decode_av(data: bytes, max_duration_s: float) -> tuple[np.ndarray, int]:
    """Containers libsndfile does not read (WebM/Opus from browsers, M4A) through FFmpeg's libraries."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise BadRequest(f"the file has no audio stream; {FORMATS_HINT}")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=ASR_RATE)
            parts, total = [], 0
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    parts.append(chunk)
                    total += chunk.size
                if total > max_duration_s * ASR_RATE:
                    raise _too_long(total / ASR_RATE)
    except av.error.FFmpegError as exc:
        raise BadRequest(f"the audio file could not be decoded ({exc}); {FORMATS_HINT}") from None
    if not parts:
        raise BadRequest(f"the audio file holds no samples; {FORMATS_HINT}")
    return np.concatenate(parts), ASR_RATE


def pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] to little-endian signed 16-bit PCM."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def pcm16_to_float(payload: bytes | memoryview) -> np.ndarray:
    if len(payload) % 2:
        raise BadRequest(
            f"audio payload of {len(payload)} bytes is not whole 16-bit samples; send little-endian PCM16 mono"
        )
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0


def wav_header(sample_rate: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte PCM16 mono WAV header; with no length (streaming) the sizes are 0xFFFFFFFF, as OpenAI sends."""
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", size)
    )


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    return wav_header(sample_rate, len(pcm)) + pcm
