"""Deterministic speech synthesis with espeak-ng, resampled from its native 22050 Hz (the noise
and mixing helpers are dsp.py).  Standalone: it imports nothing of the package, so it can be
loaded by path.

This module backs the synthetic corpora (``mae_ast_plugin/corpora/``) but is usable on its
own::

    import numpy as np
    from mae_ast_plugin.corpora import dsp, speech_synth

    speech = speech_synth.synthesize("turn left at the bridge", voice="en-us", variant="f2")
    rng = np.random.default_rng(0)
    noise = dsp.ambient_noise(len(speech), rng, kind="pink")
    noisy = dsp.mix_at_snr(speech, noise, snr_db=10.0, rng=rng)

Speech comes from the espeak-ng C library bundled with the PyPI package
``espeakng-loader`` (library + voice data), driven through ``ctypes``. That
package is imported lazily, so importing this module never requires it.

Determinism: every function returns the same samples for the same arguments.
espeak-ng keeps synthesiser state in C static variables (glottal
phase, pitch flutter counter, echo buffer, random state) that carry over from
one utterance to the next, so two identical calls in one process would not
give identical audio. :func:`synthesize` therefore loads a fresh copy of the
library for every call and unloads it afterwards (about 5 ms of overhead).
Consequence: do not use this module in a process where something else
(e.g. phonemizer) also drives the same libespeak-ng file - the reload can
then not reset its state, and the espeak_Terminate here would disturb it.

Why one file over ~400 lines: it is one concept, deterministic speech at the rate asked for,
and the standalone property rules out a split.  Its parts are the ctypes binding (the struct,
the callback, the per-call reload that makes output reproducible), the voice tables, and the
resampler and trimmer that :func:`synthesize` applies to espeak-ng's 22050 Hz output.  The
resampler would fit dsp.py, but importing dsp.py (or any other module of the package) from here
would break loading this file by path; and a synthesizer that returned 22050 Hz audio would
change the API every caller and test relies on.
"""

import ctypes
import functools
import math
import os
import threading
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EspeakError",
    "UnknownVoiceError",
    "VoiceInfo",
    "espeak_available",
    "espeak_versions",
    "list_voices",
    "list_variants",
    "synthesize",
    "resample",
    "trim_silence",
]

INSTALL_HINT = "pip install espeakng-loader"

# espeak-ng API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0

MIN_RATE_WPM = 80
MAX_RATE_WPM = 450


class EspeakError(RuntimeError):
    """espeak-ng is missing, failed to initialise, or failed to synthesise."""


class UnknownVoiceError(EspeakError, ValueError):
    """The requested voice or voice variant does not exist in the espeak-ng data."""


@dataclass(frozen=True)
class VoiceInfo:
    """One espeak-ng voice (a language/accent) or voice variant."""

    name: str  # human readable, e.g. "English (America)"
    language: str  # what to pass to synthesize(voice=...), e.g. "en-us"
    identifier: str  # path inside espeak-ng-data/voices, e.g. "gmw/en-US"
    gender: str  # "male", "female" or "unknown"


# --------------------------------------------------------------------------
# espeak-ng binding
# --------------------------------------------------------------------------


class _VoiceStruct(ctypes.Structure):
    # espeak_VOICE from speak_lib.h
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SYNTH_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

# The library is process-global C state: serialise every use of it.
_LOCK = threading.Lock()
# Samples delivered by espeak-ng during the current synthesis.
_chunks: list[np.ndarray] = []


def _collect_samples(wav, num_samples, events):
    if num_samples > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    return 0  # 0 = keep synthesising


# Module-level reference keeps the ctypes thunk alive for as long as the
# library may call it.
_SYNTH_CALLBACK = _SYNTH_CALLBACK_TYPE(_collect_samples)


@functools.lru_cache(maxsize=1)
def _espeak_paths() -> tuple[str, str]:
    """(shared library path, espeak-ng-data path) from espeakng-loader."""
    try:
        import espeakng_loader
    except ImportError as exc:
        raise EspeakError(
            "speech synthesis needs the espeak-ng library bundled with the "
            f"'espeakng-loader' package: {INSTALL_HINT}"
        ) from exc
    try:
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
    except Exception as exc:  # the package raises RuntimeError if data is missing
        raise EspeakError(f"espeakng-loader installation is broken: {exc}") from exc
    if not os.path.exists(lib_path):
        raise EspeakError(
            f"espeak-ng library not found at {lib_path}; reinstall with: {INSTALL_HINT}"
        )
    return lib_path, data_path


def espeak_available() -> bool:
    """True if espeakng-loader is installed and its files are present."""
    try:
        _espeak_paths()
    except EspeakError:
        return False
    return True


def _unload(lib: ctypes.CDLL) -> None:
    import _ctypes

    if hasattr(_ctypes, "dlclose"):
        _ctypes.dlclose(lib._handle)
    elif hasattr(_ctypes, "FreeLibrary"):  # Windows
        _ctypes.FreeLibrary(lib._handle)


class _Espeak:
    """A freshly loaded and initialised espeak-ng, unloaded on exit.

    Reloading per use resets the library's static state, which is what makes
    synthesis reproducible call by call. Must be used under ``_LOCK``.
    """

    def __enter__(self):
        lib_path, data_path = _espeak_paths()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise EspeakError(f"cannot load espeak-ng library {lib_path}: {exc}") from exc
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int
        ]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK_TYPE]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_VoiceStruct)]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None

        sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT
        )
        if sample_rate <= 0:
            _unload(lib)
            raise EspeakError(
                f"espeak_Initialize failed (returned {sample_rate}) with data path {data_path}"
            )
        lib.espeak_SetSynthCallback(_SYNTH_CALLBACK)
        self.lib = lib
        self.sample_rate = sample_rate
        return self

    def __exit__(self, *exc_info):
        self.lib.espeak_Terminate()
        _unload(self.lib)
        self.lib = None
        return False

    def list(self, languages: str | None) -> list[VoiceInfo]:
        spec = None
        if languages is not None:
            spec = _VoiceStruct()
            spec.languages = languages.encode()
            spec = ctypes.byref(spec)
        voices = self.lib.espeak_ListVoices(spec)
        out = []
        i = 0
        while voices[i]:
            v = voices[i].contents
            # `languages` is a list of (priority byte, NUL-terminated name);
            # ctypes stops at the first NUL, so skip the priority byte.
            lang = (v.languages or b"\x05")[1:].decode("utf-8", "replace")
            gender = {1: "male", 2: "female"}.get(v.gender, "unknown")
            out.append(
                VoiceInfo(
                    name=v.name.decode("utf-8", "replace"),
                    language=lang,
                    identifier=v.identifier.decode("utf-8", "replace"),
                    gender=gender,
                )
            )
            i += 1
        return out


@functools.lru_cache(maxsize=1)
def _voice_tables() -> tuple[tuple[VoiceInfo, ...], tuple[VoiceInfo, ...], str]:
    with _LOCK, _Espeak() as es:
        voices = tuple(es.list(None))
        variants = tuple(es.list("variant"))
        version = es.lib.espeak_Info(None).decode()
    return voices, variants, version


def list_voices() -> list[VoiceInfo]:
    """All espeak-ng voices (languages/accents). Pass ``.language`` to synthesize()."""
    return list(_voice_tables()[0])


def list_variants() -> list[str]:
    """Names of the voice variants (e.g. "m3", "f2", "klatt"), sorted."""
    # identifiers look like "!v/m3"; the file name is what "+variant" expects.
    return sorted(v.identifier.split("/", 1)[-1] for v in _voice_tables()[1])


def espeak_versions() -> dict:
    """Versions of espeak-ng and espeakng-loader (recorded in corpus metadata)."""
    from importlib import metadata

    try:
        loader = metadata.version("espeakng-loader")
    except metadata.PackageNotFoundError:
        loader = "unknown"
    return {"espeak_ng": _voice_tables()[2], "espeakng_loader": loader}


def _resolve_voice(voice: str, variant: str | None) -> str:
    """Validate voice/variant and return the name to give espeak_SetVoiceByName.

    Voices are selected by their file identifier (e.g. "roa/fr"): espeak-ng
    does not accept every listed language code (e.g. "fr-fr", "en-gb") there.
    """
    wanted = voice.lower()
    match = None
    for v in _voice_tables()[0]:
        # accept the language code, the voice file path or its basename
        # ("en" for gmw/en) and the display name
        aliases = {v.language.lower(), v.identifier.lower(),
                   v.identifier.rsplit("/", 1)[-1].lower(), v.name.lower()}
        if wanted in aliases:
            match = v
            break
    if match is None:
        raise UnknownVoiceError(
            f"unknown espeak-ng voice {voice!r}; see speech_synth.list_voices() "
            f"(e.g. 'en-us', 'en-gb', 'de', 'fr-fr')"
        )
    if variant is None:
        return match.identifier
    if variant not in set(list_variants()):
        raise UnknownVoiceError(
            f"unknown espeak-ng voice variant {variant!r} (voice {voice!r}); "
            f"see speech_synth.list_variants() (e.g. 'm1'..'m8', 'f1'..'f5')"
        )
    return f"{match.identifier}+{variant}"


def synthesize(
    text: str,
    voice: str = "en-us",
    variant: str | None = None,
    rate_wpm: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    sample_rate: int = 16000,
    trim: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Speak ``text`` and return mono float32 samples in [-1, 1].

    Args:
        text: what to say (UTF-8; read with the rules of ``voice``'s language).
        voice: an espeak-ng language/accent, e.g. "en-us", "en-gb-scotland", "de".
        variant: optional voice variant, e.g. "m3", "f2", "klatt" (list_variants()).
        rate_wpm: speaking rate in words per minute (80-450).
        pitch: base pitch, 0-100 (espeak-ng default 50).
        pitch_range: intonation range, 0-100 (0 = monotone, default 50).
        sample_rate: output rate; espeak-ng's native 22050 Hz is resampled.
        trim: strip leading/trailing silence.
        seed: seed of espeak-ng's internal noise (breathy/whisper variants).

    Raises:
        UnknownVoiceError: ``voice`` or ``variant`` does not exist.
        EspeakError: espeak-ng is not installed or failed.
    """
    if not MIN_RATE_WPM <= rate_wpm <= MAX_RATE_WPM:
        raise ValueError(f"rate_wpm must be in [{MIN_RATE_WPM}, {MAX_RATE_WPM}], got {rate_wpm}")
    for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
        if not 0 <= value <= 100:
            raise ValueError(f"{name} must be in [0, 100], got {value}")
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    full_name = _resolve_voice(voice, variant)

    encoded = text.encode("utf-8") + b"\x00"
    with _LOCK, _Espeak() as es:
        status = es.lib.espeak_SetVoiceByName(full_name.encode())
        if status != _EE_OK:
            raise UnknownVoiceError(
                f"espeak-ng could not select voice {voice!r} variant {variant!r} "
                f"({full_name!r}, status {status})"
            )
        # Parameters after the voice: selecting a voice resets them.
        es.lib.espeak_SetParameter(_PARAM_RATE, int(rate_wpm), 0)
        es.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        es.lib.espeak_SetParameter(_PARAM_RANGE, int(pitch_range), 0)
        es.lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
        _chunks.clear()
        try:
            status = es.lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            es.lib.espeak_Synchronize()
            if status != _EE_OK:
                raise EspeakError(
                    f"espeak_Synth failed with status {status} for voice {full_name!r}"
                )
            pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
        finally:
            _chunks.clear()
        native_rate = es.sample_rate

    audio = pcm.astype(np.float32) / 32768.0
    audio = resample(audio, native_rate, sample_rate)
    if trim:
        audio = trim_silence(audio, sample_rate)
    return audio


# --------------------------------------------------------------------------
# Resampling and trimming of the synthesised speech
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _resample_kernel(orig: int, new: int, zero_crossings: int, beta: float):
    """Polyphase windowed-sinc filter bank, shape (new, orig + 2 * half_taps).

    Row p computes output sample k*new + p from input samples starting at
    k*orig (after left padding by half_taps - 1).
    """
    cutoff = 0.5 * min(1.0, new / orig) * 0.97  # cycles per input sample, below Nyquist
    half_width = zero_crossings / (2.0 * cutoff)  # filter half-length in input samples
    half_taps = int(math.ceil(half_width)) + 1
    taps = np.arange(-(half_taps - 1), half_taps + 1)  # offsets around floor(t)
    kernel = np.zeros((new, orig + 2 * half_taps), dtype=np.float64)
    for p in range(new):
        t = p * orig / new  # input-time of output sample p
        base = int(math.floor(t))
        delta = (t - base) - taps  # distance from each tap to t
        window = np.where(
            np.abs(delta) < half_width,
            np.i0(beta * np.sqrt(np.clip(1.0 - (delta / half_width) ** 2, 0.0, 1.0)))
            / np.i0(beta),
            0.0,
        )
        kernel[p, base : base + len(taps)] = 2 * cutoff * np.sinc(2 * cutoff * delta) * window
    return kernel, half_taps


def resample(audio: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited resampling (Kaiser-windowed sinc, polyphase). Deterministic.

    Output length is ceil(len(audio) * new_sr / orig_sr).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if orig_sr == new_sr or len(audio) == 0:
        return audio.copy()
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = orig_sr // g, new_sr // g
    kernel, half_taps = _resample_kernel(orig, new, 16, 8.0)
    n_out = -(-len(audio) * new // orig)
    n_blocks = -(-n_out // new)
    width = kernel.shape[1]
    padded = np.zeros((n_blocks - 1) * orig + width, dtype=np.float64)
    padded[half_taps - 1 : half_taps - 1 + len(audio)] = audio
    # Block k sees padded[k*orig : k*orig + width]; one matmul does all phases.
    frames = np.lib.stride_tricks.sliding_window_view(padded, width)[::orig]
    out = (frames @ kernel.T).reshape(-1)[:n_out]
    return out.astype(np.float32)


def trim_silence(
    audio: np.ndarray, sample_rate: int, threshold_db: float = -40.0, margin_s: float = 0.02
) -> np.ndarray:
    """Drop leading/trailing samples quieter than ``threshold_db`` below the peak."""
    if len(audio) == 0:
        return audio
    peak = float(np.max(np.abs(audio)))
    if peak == 0.0:
        return audio[:0]
    loud = np.flatnonzero(np.abs(audio) > peak * 10 ** (threshold_db / 20))
    margin = int(margin_s * sample_rate)
    start = max(0, loud[0] - margin)
    end = min(len(audio), loud[-1] + 1 + margin)
    return audio[start:end]
