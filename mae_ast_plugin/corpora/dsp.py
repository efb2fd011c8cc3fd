"""Signal helpers of the synthetic corpora (numpy only, deterministic): coloured and ambient
noise, mixing at a signal-to-noise ratio, fades, 16-bit PCM.

Noise functions take an explicit ``numpy.random.Generator`` and never touch a global RNG.
"""

import math

import numpy as np


def fit_length(
    noise: np.ndarray, length: int, rng: np.random.Generator
) -> np.ndarray:
    """Random crop of ``noise`` to ``length``, tiling it first if too short."""
    noise = np.asarray(noise, dtype=np.float32)
    if len(noise) == 0:
        raise ValueError("noise is empty")
    if len(noise) < length:
        noise = np.tile(noise, -(-length // len(noise)) + 1)
    start = int(rng.integers(0, len(noise) - length + 1))
    return noise[start : start + length]


def fade(audio, n):
    """Linear fade-in and fade-out of ``n`` samples (at most half the clip), in place."""
    n = min(n, len(audio) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]
    return audio


def rms(x: np.ndarray) -> float:
    """Root mean square (0 for empty input)."""
    if len(x) == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _unit_rms(x: np.ndarray) -> np.ndarray:
    level = rms(x)
    return (x / level if level > 0 else x).astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent, unit RMS.

    exponent 0 = white, 1 = pink, 2 = brown (red).
    """
    if n <= 0:
        return np.zeros(0, np.float32)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = freqs[1] if len(freqs) > 1 else 1.0  # no infinite DC gain
    spectrum *= freqs ** (-exponent / 2.0)
    spectrum[0] = 0.0  # zero-mean noise
    return _unit_rms(np.fft.irfft(spectrum, n))


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return coloured_noise(n, rng, 0.0)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return coloured_noise(n, rng, 1.0)


def brown_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return coloured_noise(n, rng, 2.0)


def band_noise(
    n: int, rng: np.random.Generator, low_hz: float, high_hz: float, sample_rate: int = 16000
) -> np.ndarray:
    """Noise confined to [low_hz, high_hz] with soft edges (fans, air vents), unit RMS."""
    if n <= 0:
        return np.zeros(0, np.float32)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    centre = np.sqrt(low_hz * high_hz)
    octaves = np.log2(np.maximum(freqs, 1.0) / centre)
    half_band = np.log2(high_hz / low_hz) / 2
    # flat inside the band, Gaussian roll-off (in octaves) outside it
    excess = np.maximum(np.abs(octaves) - half_band, 0.0)
    spectrum *= np.exp(-0.5 * (excess / 0.5) ** 2)
    spectrum[0] = 0.0
    return _unit_rms(np.fft.irfft(spectrum, n))


def mains_hum(
    n: int, rng: np.random.Generator, sample_rate: int = 16000, mains_hz: float | None = None
) -> np.ndarray:
    """Electrical hum: 50/60 Hz and harmonics with random levels, over a faint pink floor."""
    if n <= 0:
        return np.zeros(0, np.float32)
    if mains_hz is None:
        mains_hz = float(rng.choice([50.0, 60.0]))
    t = np.arange(n) / sample_rate
    hum = np.zeros(n)
    for harmonic in range(1, 7):
        level = rng.uniform(0.1, 1.0) / harmonic
        hum += level * np.sin(2 * np.pi * harmonic * mains_hz * t + rng.uniform(0, 2 * np.pi))
    hum = _unit_rms(hum)
    return _unit_rms(hum + 0.3 * pink_noise(n, rng))


NOISE_KINDS = ("white", "pink", "brown", "hum", "fan", "room")


def ambient_noise(
    n: int, rng: np.random.Generator, kind: str | None = None, sample_rate: int = 16000
) -> np.ndarray:
    """Unit-RMS background noise of the given kind (random kind if None).

    Kinds: white, pink, brown, hum (mains), fan (band-limited rumble/whoosh),
    room (brown + pink + hum, like a quiet room tone). Nothing speech-like
    (no babble), so the noise never carries competing words.
    """
    if kind is None:
        kind = str(rng.choice(NOISE_KINDS))
    if kind == "white":
        return white_noise(n, rng)
    if kind == "pink":
        return pink_noise(n, rng)
    if kind == "brown":
        return brown_noise(n, rng)
    if kind == "hum":
        return mains_hum(n, rng, sample_rate)
    if kind == "fan":
        low = rng.uniform(80.0, 400.0)
        return band_noise(n, rng, low, low * rng.uniform(3.0, 12.0), sample_rate)
    if kind == "room":
        mix = brown_noise(n, rng) + 0.5 * pink_noise(n, rng) + 0.2 * mains_hum(n, rng, sample_rate)
        return _unit_rms(mix)
    raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")


def mix_at_snr(
    speech: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    rng: np.random.Generator | None = None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """speech + noise scaled so that 10*log10(P_speech / P_noise) == snr_db.

    Powers are means over the whole signal; pass ``reference`` (e.g. the
    speech before it was padded with silence) to measure the speech power on
    that instead. ``noise`` is cropped (at a random offset drawn from ``rng``)
    or tiled to the speech length; without ``rng`` it must already have the
    same length. The result is not clipped.
    """
    speech = np.asarray(speech, dtype=np.float32)
    if len(noise) != len(speech):
        if rng is None:
            raise ValueError("noise length differs from speech length; pass rng to crop/tile it")
        noise = fit_length(noise, len(speech), rng)
    speech_power = rms(speech if reference is None else reference) ** 2
    noise_power = rms(noise) ** 2
    if speech_power == 0.0 or noise_power == 0.0:
        return speech.copy()
    gain = math.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return (speech + gain * np.asarray(noise, dtype=np.float32)).astype(np.float32)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float [-1, 1] -> int16 with rounding and clipping."""
    return np.clip(np.round(np.asarray(audio, np.float64) * 32767.0), -32768, 32767).astype(
        np.int16
    )
