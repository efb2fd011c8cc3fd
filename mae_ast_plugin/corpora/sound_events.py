"""Synthetic sound events of the miniature Table 1 benchmark (its ESC-50 stand-in, and the
sound scenes of its pretraining corpus): ten classes that differ in spectral-temporal structure,
each event drawn with a main frequency and a temporal rate from log-spaced bands that belong to
one split (:data:`BAND_SPLITS`), so test clips sit in bands no training clip uses.
"""

import numpy as np

from mae_ast_plugin.corpora import dsp
from mae_ast_plugin.corpora.build import (
    SAMPLE_RATE,
    SPLITS_LABELLED,
    clip_rng,
    draw_snr,
    write_pcm,
)

EVENT_CLASSES = (
    "pure_tone",  # one steady sinusoid
    "harmonic_complex",  # a steady fundamental with 3-8 harmonics
    "chirp_up",  # a tone gliding up 1-3 octaves
    "chirp_down",  # the same, gliding down
    "fm_warble",  # a tone with sinusoidal vibrato (5-20 % deep)
    "am_tone",  # a tone with sinusoidal tremolo
    "tone_pips",  # a tone switched on and off regularly (a beeping alarm)
    "click_train",  # regular clicks (short damped resonances)
    "noise_bursts",  # band noise switched on and off at random times
    "noise_sweep",  # a band of noise whose centre glides up or down
)
EVENT_SECONDS = 2.0
FREQ_RANGE_HZ = (250.0, 3000.0)
RATE_RANGE_HZ = (3.0, 24.0)
# Both ranges are cut into 10 log-spaced bands; a clip draws its frequency and its rate from
# bands of its own split.  Test and valid bands lie between training bands.
BAND_SPLITS = (
    "train", "train", "test", "train", "valid", "train", "test", "train", "valid", "train"
)


def band_edges(value_range):
    low, high = value_range
    return np.geomspace(low, high, len(BAND_SPLITS) + 1)


def draw_in_bands(rng, value_range, split):
    """A log-uniform value from one of ``split``'s bands; returns (value, band index)."""
    edges = band_edges(value_range)
    bands = [i for i, owner in enumerate(BAND_SPLITS) if owner == split]
    band = bands[int(rng.integers(len(bands)))]
    value = float(np.exp(rng.uniform(np.log(edges[band]), np.log(edges[band + 1]))))
    return round(value, 3), band


def event_params(rng, name, split):
    """Every random choice of one event: the split-owned frequency and rate and the free ones."""
    freq, freq_band = draw_in_bands(rng, FREQ_RANGE_HZ, split)
    rate, rate_band = draw_in_bands(rng, RATE_RANGE_HZ, split)
    return {
        "class": name,
        "freq_hz": freq,
        "freq_band": freq_band,
        "rate_hz": rate,
        "rate_band": rate_band,
        "octaves": round(float(rng.uniform(1.0, 3.0)), 3),  # chirp / sweep extent
        "depth": round(float(rng.uniform(0.05, 0.2)), 3),  # FM depth
        "am_depth": round(float(rng.uniform(0.7, 1.0)), 3),
        "duty": round(float(rng.uniform(0.25, 0.5)), 3),  # tone pips
        "harmonics": int(rng.integers(3, 9)),
        "tilt": round(float(rng.uniform(0.5, 1.5)), 3),  # harmonic amplitudes ~ 1/k^tilt
        "direction": int(rng.choice([-1, 1])),  # noise sweep
        "seed": int(rng.integers(0, 2**31)),
    }


def _sine_from_frequency(freq_track):
    """A unit sinusoid following a per-sample frequency track (Hz)."""
    return np.sin(2 * np.pi * np.cumsum(freq_track) / SAMPLE_RATE)


def _gate(t, rate, duty, ramp_s=0.005):
    """Regular on/off gating with raised-cosine edges: 1 for ``duty`` of each period."""
    period = 1.0 / rate
    phase = np.mod(t, period)
    on = duty * period
    ramp = min(ramp_s, on / 2)
    rise = np.clip(phase / ramp, 0, 1)
    fall = np.clip((on - phase) / ramp, 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))


def synth_event(params, seconds):
    """One event, unit peak, ``seconds`` long; deterministic in ``params``."""
    rng = np.random.default_rng(params["seed"])
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    f, rate, name = params["freq_hz"], params["rate_hz"], params["class"]
    nyquist_safe = 0.45 * SAMPLE_RATE
    if name == "pure_tone":
        x = _sine_from_frequency(np.full(n, f))
    elif name == "harmonic_complex":
        f0 = f / 2
        x = sum(
            np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k ** params["tilt"]
            for k in range(1, params["harmonics"] + 1) if k * f0 < nyquist_safe
        )
    elif name in ("chirp_up", "chirp_down"):
        sign = 1 if name == "chirp_up" else -1
        octaves = sign * params["octaves"] * (t / seconds - 0.5)  # centred on f
        x = _sine_from_frequency(np.clip(f * 2.0**octaves, 50, nyquist_safe))
    elif name == "fm_warble":
        x = _sine_from_frequency(f * (1 + params["depth"] * np.sin(2 * np.pi * rate * t)))
    elif name == "am_tone":
        tremolo = 1 - params["am_depth"] * 0.5 * (1 - np.cos(2 * np.pi * rate * t))
        x = tremolo * _sine_from_frequency(np.full(n, f))
    elif name == "tone_pips":
        x = _gate(t, rate, params["duty"]) * _sine_from_frequency(np.full(n, f))
    elif name == "click_train":
        # clicks at twice the rate (6-48 per second): each a 2-4 ms damped resonance at f
        x = np.zeros(n)
        click_t = np.arange(int(0.04 * SAMPLE_RATE)) / SAMPLE_RATE
        click = np.exp(-click_t / rng.uniform(0.002, 0.004)) * np.sin(2 * np.pi * f * click_t)
        for start in np.arange(rng.uniform(0, 0.5 / rate), seconds, 0.5 / rate):
            i = int(start * SAMPLE_RATE)
            x[i : i + len(click)] += click[: n - i]
    elif name == "noise_bursts":
        # Poisson burst onsets at the rate's mean, bursts 20-100 ms: irregular, unlike pips
        envelope = np.zeros(n)
        onset = rng.exponential(1.0 / rate)
        while onset < seconds:
            i, length = int(onset * SAMPLE_RATE), int(rng.uniform(0.02, 0.1) * SAMPLE_RATE)
            envelope[i : i + length] = np.hanning(length)[: n - i]
            onset += rng.exponential(1.0 / rate)
        x = envelope * dsp.band_noise(n, rng, f / np.sqrt(2), f * np.sqrt(2), SAMPLE_RATE)
    elif name == "noise_sweep":
        # 40 random-phase partials spread over 1/3 octave around a gliding centre
        centre = f * 2.0 ** (params["direction"] * params["octaves"] * (t / seconds - 0.5))
        spread = 2.0 ** rng.uniform(-1 / 6, 1 / 6, size=40)
        x = sum(
            _sine_from_frequency(np.clip(centre * s, 50, nyquist_safe)) * rng.uniform(0.5, 1)
            for s in spread
        )
    else:
        raise ValueError(f"unknown event class {name!r}")
    x = np.asarray(x, dtype=np.float64)
    x = dsp.fade(x.astype(np.float32), int(0.01 * SAMPLE_RATE))
    peak = float(np.max(np.abs(x)))
    return x / peak if peak > 0 else x


def sound_clip(path, rng, args, events, length_s, **extra):
    """A sound clip spec: events as (params, onset_s, duration_s, gain) plus background noise."""
    return {
        "path": path,
        "kind": "sound",
        "length_s": length_s,
        "events": events,
        "noise": str(rng.choice(dsp.NOISE_KINDS)),
        "snr_db": draw_snr(rng, args),
        "render_seed": int(rng.integers(0, 2**31)),
        **extra,
    }


def plan_events(args):
    """One event of the clip's class per clip, 0.6-1.8 s long at a random onset in 2 s."""
    plans = {}
    for split in SPLITS_LABELLED:
        count = args.events_per_class if split == "train" else args.events_eval_per_class
        clips = []
        for label, name in enumerate(EVENT_CLASSES):
            for i in range(count):
                rng = clip_rng(args.seed, "local-events", split, name, i)
                duration = round(float(rng.uniform(0.6, 1.8)), 3)
                onset = round(float(rng.uniform(0, EVENT_SECONDS - duration)), 3)
                event = (event_params(rng, name, split), onset, duration, 1.0)
                clips.append(sound_clip(
                    f"events/{split}/{name}/{i:04d}.wav", rng, args, [event], EVENT_SECONDS,
                    label=label,
                ))
        plans[split] = clips
    return plans


def render_sound(spec, out_root):
    """Render one sound clip; returns (path, num_samples)."""
    rng = np.random.default_rng(spec["render_seed"])
    n = int(round(spec["length_s"] * SAMPLE_RATE))
    signal = np.zeros(n, dtype=np.float64)
    for params, onset, duration, gain in spec["events"]:
        event = synth_event(params, duration)
        start = int(round(onset * SAMPLE_RATE))
        end = min(n, start + len(event))
        signal[start:end] += gain * event[: end - start]
    events_only = signal.astype(np.float32)
    noise = dsp.ambient_noise(n, rng, spec["noise"], SAMPLE_RATE)
    # SNR measured over the sounding part, as the demo measures speech without its padding
    sounding = events_only[np.abs(events_only) > 0] if np.any(events_only) else events_only
    audio = dsp.mix_at_snr(events_only, noise, spec["snr_db"], reference=sounding)
    audio = audio * np.float32(rng.uniform(0.3, 0.9) / max(float(np.max(np.abs(audio))), 1e-9))
    return write_pcm(audio, out_root, spec)

