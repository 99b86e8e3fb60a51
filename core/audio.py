"""Audio input (any format soundfile reads) and WAV output, mono mix-down, resampling, fixed-length clips.

Every clip that enters the engine goes through :func:`load_clip`: read, mix to mono,
resample, then pad or crop to a fixed number of samples, so that triggers and front
ends only ever see clips of one length and one rate.

Documented conversions (not errors): multi-channel files are mixed down to mono by
averaging the channels; integer PCM is scaled to [-1, 1); a file at another rate is
resampled (band-limited sinc, torchaudio) when a target rate is given; short clips are
zero-padded at the end, long clips are cropped to the window of highest energy.
Rate pairs whose reduced ratio is awkward (16001 -> 16000 Hz) are resampled with the same
windowed sinc computed per output sample, since torchaudio's per-phase kernel would need
gigabytes for them.
Errors (:class:`DataError`, naming the file): a missing, empty, truncated or non-audio
file (a WAV whose data chunk is shorter than its header declares, or whose header was
never finalised), NaN or infinite samples, float samples beyond +-1000 (60 dB over full
scale: corrupt data, or integer values stored as float), a sample rate outside 1-768 kHz
(a corrupt header: no speech lives there), and a WAV that cannot be written (read-only
folder, full disk). Compressed WAV codecs that libsndfile decodes (mu-law, A-law, IMA and
MS ADPCM, GSM 6.10) are decoded to float like PCM.

Formats: whatever libsndfile (through soundfile) decodes: WAV, FLAC, OGG/Vorbis and Opus, AIFF,
MP3, CAF, AU and more. A file is recognised by its content, not its name: FLAC bytes named
``.wav`` read as FLAC. :func:`audio_files` lists a folder's clips: every file with a known audio
suffix (:data:`AUDIO_SUFFIXES`, so that a broken one is reported, not silently left out) plus any
other file soundfile can open (:func:`is_audio_file`).
"""

from __future__ import annotations

import errno
import math
import os
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.transforms as AT

from core.errors import DataError

#: Sample rates a file may declare; outside this range the header is taken to be corrupt.
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000
#: Largest sample magnitude accepted (float files only can exceed 1): beyond it the data is not audio.
MAX_ABS_SAMPLE = 1000.0
#: Largest torchaudio resampling kernel (elements) built; awkward ratios use :func:`_sinc_resample`.
MAX_KERNEL_ELEMENTS = 1 << 21
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99
#: File name endings taken as audio without opening the file (a broken one is then reported, not skipped).
AUDIO_SUFFIXES = (
    ".wav",
    ".wave",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".aif",
    ".aiff",
    ".aifc",
    ".caf",
    ".au",
    ".snd",
    ".w64",
    ".rf64",
    ".mp3",
)
#: The same endings as a file dialog's filter pattern.
AUDIO_FILTER = " ".join(f"*{s}" for s in AUDIO_SUFFIXES)
#: Endings never opened to look for audio inside (notes, lists, metadata beside the clips).
TEXT_SUFFIXES = frozenset({".txt", ".md", ".json", ".csv", ".tsv", ".yaml", ".yml", ".py", ".html", ".pdf", ".npy"})

__all__ = [
    "AUDIO_SUFFIXES",
    "AUDIO_FILTER",
    "audio_files",
    "is_audio_file",
    "iter_audio_files",
    "read_audio",
    "read_wav",
    "load_clip",
    "to_mono",
    "resample",
    "fix_length",
    "write_wav",
]


def is_audio_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a regular file that soundfile can open, judged by its content (any suffix)."""
    path = Path(path)
    try:
        if not path.is_file():  # never open a pipe or a device to look inside
            return False
        sf.info(os.fsencode(path))
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError, MemoryError):
        return False
    return True


def iter_audio_files(folder: str | os.PathLike) -> Iterator[Path]:
    """The audio files directly in ``folder``, unsorted: known suffixes, then any other file soundfile opens.

    A name with an audio suffix counts without being opened (a broken clip is then reported by the
    reader instead of vanishing from the dataset); other names count when their content is audio
    (hidden files and text-like suffixes are not opened). An unreadable folder holds none.
    """
    folder = Path(folder)
    others = []
    try:
        names = list(folder.iterdir())
    except OSError:  # unreadable or gone: no clips here, as a glob would find none
        return
    for p in names:
        suffix = p.suffix.lower()
        if suffix in AUDIO_SUFFIXES:
            yield p
        elif not p.name.startswith(".") and suffix not in TEXT_SUFFIXES:
            others.append(p)
    for p in others:
        if is_audio_file(p):
            yield p


def audio_files(folder: str | os.PathLike) -> list[Path]:
    """The audio files directly in ``folder``, sorted by name (see :func:`iter_audio_files`)."""
    return sorted(iter_audio_files(folder))


def _is_riff_wave(path: Path) -> bool:
    """True when the file starts with a RIFF/WAVE (or RF64/BW64) header."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE"


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file of any format soundfile reads as float32 ``[channels, frames]`` and its rate.

    The format is taken from the content, not the suffix. Raises :class:`DataError` naming the file
    when it is missing, unreadable, empty, cut short, declares an implausible sample rate, or holds
    NaN/Inf or absurdly large samples.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: a folder, not an audio file")
    if not path.is_file():
        if path.is_symlink():
            try:
                path.stat()
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise DataError(f"{path}: a symbolic link that leads back to itself (a loop)") from None
            raise DataError(f"{path}: a symbolic link to {os.readlink(path)}, which does not exist")
        if path.exists():  # a pipe, a socket, a device
            raise DataError(f"{path}: not a regular file (a pipe or device); an audio file is needed")
        raise DataError(f"{path}: no such audio file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); re-record or remove it")
    try:
        data, rate = sf.read(os.fsencode(path), dtype="float32", always_2d=True)  # bytes: any file name
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
        hint = (
            "check that it is a complete WAV"
            if _is_riff_wave(path)
            else "check that it is a complete audio file in a format soundfile reads (WAV, FLAC, OGG/Vorbis, AIFF, ...)"
        )
        raise DataError(f"{path}: not a readable audio file ({exc}); {hint}") from exc
    except MemoryError as exc:
        raise DataError(f"{path}: holds more audio than fits in memory; cut it into shorter clips") from exc
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise DataError(
            f"{path}: the header declares a sample rate of {rate} Hz, outside "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; the header is corrupt or the file is not audio"
        )
    problem = _riff_data_problem(path, size)
    if problem:
        raise DataError(f"{path}: {problem}")
    if data.shape[0] == 0:
        raise DataError(f"{path}: the file holds no audio samples (0 frames)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise DataError(f"{path}: {bad} samples are NaN or infinite; the file is corrupt and cannot be used")
    peak = float(np.abs(data).max())
    if peak > MAX_ABS_SAMPLE:
        raise DataError(
            f"{path}: samples reach {peak:.3g}, far beyond full scale (1.0); the float data is corrupt "
            "or holds integer values stored as float (scale it to [-1, 1])"
        )
    return np.ascontiguousarray(data.T), int(rate)


#: The former name of :func:`read_audio`, kept for callers that read WAV files.
read_wav = read_audio


def _riff_data_problem(path: Path, size: int) -> str | None:
    """Why a RIFF/WAVE file's data chunk disagrees with the bytes present, or None.

    libsndfile quietly reads what is there; a clip cut short would enter a dataset as a
    shorter word, so a declared size beyond the file's end is an error. The sizes 0 and
    0xFFFFFFFF of streaming writers are accepted when audio follows.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos = 12
            for _ in range(256):  # chunks before the data: fmt, fact, LIST, ...
                f.seek(pos)
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                declared = int.from_bytes(chunk[4:8], "little")
                if chunk[:4] == b"data":
                    present = size - pos - 8
                    if declared == 0 and present > 0:
                        return (
                            f"the header declares no audio but {present} bytes follow it; the recording was never "
                            "finalised (its writer stopped before completing the header)"
                        )
                    if declared != 0xFFFFFFFF and declared > present:
                        return (
                            f"truncated: the header declares {declared} bytes of audio, the file holds {present}; "
                            "it was cut short (an interrupted copy or download): copy it again or remove it"
                        )
                    return None
                pos += 8 + declared + (declared & 1)
    except OSError:
        return None
    return None


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Mix ``[channels, frames]`` (or ``[frames]``) down to ``[frames]`` by averaging channels."""
    if wave.ndim == 1:
        return wave
    if wave.ndim != 2:
        raise ValueError(f"expected [channels, frames], got shape {tuple(wave.shape)}")
    return wave.mean(axis=0) if wave.shape[0] > 1 else wave[0]


def resample(wave: np.ndarray | torch.Tensor, orig_rate: int, new_rate: int) -> np.ndarray | torch.Tensor:
    """Resample along the last axis with torchaudio's band-limited sinc interpolation."""
    if orig_rate == new_rate:
        return wave
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    orig_rate, new_rate = int(orig_rate), int(new_rate)
    if _kernel_elements(orig_rate, new_rate) > MAX_KERNEL_ELEMENTS:
        with torch.no_grad():
            if isinstance(wave, torch.Tensor):
                return _sinc_resample(wave, orig_rate, new_rate)
            as_tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
            return _sinc_resample(as_tensor, orig_rate, new_rate).numpy()
    resampler = _resampler(orig_rate, new_rate)
    with torch.no_grad():
        if isinstance(wave, torch.Tensor):
            return resampler.to(wave.device)(wave) if wave.device.type != "cpu" else resampler(wave)
        return resampler(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))).numpy()


@lru_cache(maxsize=16)
def _resampler(orig_rate: int, new_rate: int) -> AT.Resample:
    """One resampler per rate pair: its sinc kernel is built once, not on every clip."""
    return AT.Resample(orig_rate, new_rate)


def _kernel_elements(orig_rate: int, new_rate: int) -> int:
    """Size of torchaudio's kernel for a rate pair: ``new * (orig + 2 * width)`` after reducing by the gcd."""
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF))
    return new * (orig + 2 * width)


def _sinc_weights(frac: torch.Tensor, taps: torch.Tensor, scale: float) -> torch.Tensor:
    """Hann-windowed sinc weights ``[len(frac), len(taps)]`` for outputs ``frac`` samples past a tap origin."""
    t = (taps[None, :].to(torch.float64) - frac[:, None]) * scale
    t = t.clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = torch.cos(t * (math.pi / LOWPASS_FILTER_WIDTH / 2)) ** 2
    return (torch.special.sinc(t) * window * scale).to(torch.float32)


def _sinc_resample(wave: torch.Tensor, orig_rate: int, new_rate: int, chunk_elements: int = 1 << 21) -> torch.Tensor:
    """torchaudio's Hann-windowed sinc resampling, evaluated output sample by output sample.

    Memory grows with the filter length, not with the reduced rate ratio, so any pair of
    rates works; output sample ``m`` sits at input position ``m * orig / new``, and its
    weights depend only on that position's fraction (one table row per phase when small).
    """
    shape = wave.shape
    flat = wave.reshape(-1, shape[-1]).to(torch.float32)
    length = flat.shape[-1]
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    scale = min(1.0, new / orig) * ROLLOFF  # cut-off as a fraction of the input Nyquist band
    width = math.ceil(LOWPASS_FILTER_WIDTH / scale)
    taps = torch.arange(-width, width + 2, dtype=torch.int64, device=flat.device)
    windows = torch.nn.functional.pad(flat, (width, width + 2)).unfold(-1, taps.numel(), 1)  # a view, no copy
    table = None
    if new * taps.numel() <= MAX_KERNEL_ELEMENTS:
        table = _sinc_weights(torch.arange(new, dtype=torch.float64, device=flat.device) / new, taps, scale)
    out_len = -(-new * length // orig)
    out = torch.empty(flat.shape[0], out_len, dtype=torch.float32, device=flat.device)
    step = max(1, chunk_elements // taps.numel())
    for start in range(0, out_len, step):
        m = torch.arange(start, min(out_len, start + step), dtype=torch.int64, device=flat.device)
        first, phase = torch.div(m * orig, new, rounding_mode="floor"), (m * orig) % new
        weights = table[phase] if table is not None else _sinc_weights(phase.to(torch.float64) / new, taps, scale)
        out[:, start : start + m.numel()] = (windows[:, first] * weights).sum(-1)
    return out.reshape(*shape[:-1], out_len)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file the usual permissions and rename it over ``path``.

    ``mkstemp`` creates files readable by the owner only; the final file should be as
    readable as any other file the user writes (0666 minus the umask).
    """
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def fix_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Pad with zeros at the end, or crop to the ``num_samples`` window of highest energy.

    Cropping by energy keeps the spoken word of a long recording (FSDD clips reach
    2.3 s with silence around the word) instead of cutting it at an arbitrary edge.
    """
    n = wave.shape[-1]
    if n == num_samples:
        return wave
    if n < num_samples:
        pad = [(0, 0)] * (wave.ndim - 1) + [(0, num_samples - n)]
        return np.pad(wave, pad)
    energy = np.square(wave.astype(np.float64))
    if energy.ndim > 1:
        energy = energy.sum(axis=tuple(range(energy.ndim - 1)))
    csum = np.concatenate([[0.0], np.cumsum(energy)])
    window = csum[num_samples:] - csum[:-num_samples]
    start = int(np.argmax(window))
    return wave[..., start : start + num_samples]


def load_clip(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    num_samples: int | None = 16000,
    *,
    allow_resample: bool = True,
) -> np.ndarray:
    """Load one clip (any format soundfile reads) as mono float32 ``[num_samples]`` at ``sample_rate``.

    ``num_samples=None`` keeps the natural length. With ``allow_resample=False`` a file
    at another rate is an error instead of being converted.
    """
    data, rate = read_audio(path)
    mono = to_mono(data)
    if rate != sample_rate:
        if not allow_resample:
            raise DataError(
                f"{path}: sample rate is {rate} Hz, expected {sample_rate} Hz; resample the file or allow resampling"
            )
        mono = resample(mono, rate, sample_rate)
    if num_samples is not None:
        mono = fix_length(mono, num_samples)
    return np.ascontiguousarray(mono, dtype=np.float32)


def write_wav(
    path: str | os.PathLike,
    wave: np.ndarray | torch.Tensor,
    sample_rate: int,
    subtype: str = "PCM_16",
) -> Path:
    """Write mono ``[frames]`` or ``[channels, frames]`` audio atomically (temp file + rename).

    Samples outside [-1, 1] are clipped for integer subtypes, as any WAV writer must.
    The target is never left half-written: on failure (read-only folder, full disk) the
    temporary file is removed, an existing file is left as it was, and :class:`DataError`
    names the file.
    """
    path = Path(path)
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.T
    elif wave.ndim != 1:
        raise ValueError(f"expected [frames] or [channels, frames], got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise DataError(f"{path}: refusing to write NaN or infinite samples")
    if subtype.startswith("PCM"):
        wave = np.clip(wave, -1.0, 1.0)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        sf.write(tmp, wave, int(sample_rate), subtype=subtype, format="WAV")
        publish(tmp, path)
    except (OSError, sf.SoundFileError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip()
        raise DataError(
            f"{path}: could not write the WAV file ({reason}); the folder may be read-only or the "
            "disk full. Nothing was overwritten; free space or choose another folder."
        ) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path
