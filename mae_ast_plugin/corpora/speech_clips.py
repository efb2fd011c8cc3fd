"""Speech clips of the synthetic corpora: the vocabulary and voices, the planners of the
pretraining, keyword-spotting and speaker-identification parts, and rendering a planned clip
(espeak-ng speech placed on a canvas and mixed with noise at the planned SNR).

The demo corpus (demo.py) uses these planners as they are; the miniature Table 1 benchmark
(table1.py) reuses them with its own split of the voices.  A planner returns {split: [spec]}
where a spec holds everything :func:`render_speech` needs, seeds included.
"""

import numpy as np

from mae_ast_plugin.corpora import dsp
from mae_ast_plugin.corpora import speech_synth as ss
from mae_ast_plugin.corpora.build import (
    SAMPLE_RATE,
    SPLITS_LABELLED,
    clip_rng,
    draw_snr,
    write_pcm,
)
from mae_ast_plugin.prep.common import ClassInfo

ENGLISH_VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
# Human-sounding variants (robotic/whispering/novelty ones are left out).
# None = the voice's default.
VARIANTS = (
    None, "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4",
    "adam", "Alex", "Andrea", "Annie", "benjamin", "david", "linda", "max",
    "paul", "steph", "travis", "quincy",
)

COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree",
    "wow", "learn", "follow", "forward", "backward", "visual",
)
UNKNOWN_CLASS = "_unknown_"
SILENCE_CLASS = "_silence_"

# A tiny grammar gives many distinct English sentences.
DETERMINERS = ("the", "a", "my", "your", "this", "that", "every", "one")
ADJECTIVES = (
    "quiet", "bright", "old", "small", "heavy", "green", "little", "famous",
    "careful", "lazy", "tall", "warm", "empty", "golden", "strange", "happy",
    "silver", "busy", "gentle", "rusty",
)
NOUNS = (
    "farmer", "teacher", "river", "garden", "window", "engine", "doctor",
    "basket", "village", "letter", "mountain", "kitten", "captain", "bicycle",
    "painter", "market", "lantern", "orchard", "sailor", "kitchen", "bridge",
    "forest", "pencil", "station", "neighbour", "student", "ladder", "blanket",
    "harbour", "wagon",
)
VERBS = (
    "carried", "painted", "found", "watched", "opened", "followed", "cleaned",
    "borrowed", "noticed", "repaired", "visited", "counted", "dropped",
    "lifted", "remembered", "described", "pushed", "pulled", "washed", "sold",
)
PREPOSITIONS = (
    "near", "behind", "under", "across", "beside", "inside", "above", "past",
    "around", "beyond",
)
ADVERBS = (
    "slowly", "quickly", "quietly", "carefully", "yesterday", "again",
    "early", "suddenly", "happily", "later",
)
# Other languages for pretraining only: random word strings in that language.
FOREIGN_WORDS = {
    "de": (
        "haus wasser morgen abend garten fenster sonne regen schule freund "
        "strasse brot zeitung bahnhof kirche himmel wald stadt tisch musik "
        "heute langsam schnell immer wieder gross klein gut sprechen lesen"
    ).split(),
    "fr-fr": (
        "maison jardin soleil fenêtre pain ville école voiture chemin matin "
        "soir rivière montagne musique enfant ami livre table toujours demain "
        "petit grand beau lentement parler chanter manger regarder bonjour merci"
    ).split(),
    "es": (
        "casa agua ciudad calle ventana jardín mañana noche escuela amigo "
        "libro mesa cielo montaña camino música pueblo hermano siempre despacio "
        "grande pequeño bonito hablar cantar comer mirar trabajo tiempo gracias"
    ).split(),
    "it": (
        "casa acqua città strada finestra giardino mattina sera scuola amico "
        "libro tavolo cielo montagna cammino musica paese fratello sempre piano "
        "grande piccolo bello parlare cantare mangiare guardare lavoro tempo grazie"
    ).split(),
    "nl": (
        "huis water stad straat raam tuin morgen avond school vriend boek "
        "tafel hemel berg weg muziek dorp broer altijd langzaam groot klein "
        "mooi praten zingen eten kijken werk tijd bedankt"
    ).split(),
}


def english_sentence(rng, min_words=0):
    """A grammatical nonsense sentence; extended with 'and ...' to min_words."""
    words = []
    while True:
        words += [str(rng.choice(DETERMINERS))]
        if rng.random() < 0.6:
            words.append(str(rng.choice(ADJECTIVES)))
        words += [str(rng.choice(NOUNS)), str(rng.choice(VERBS)), str(rng.choice(DETERMINERS))]
        if rng.random() < 0.5:
            words.append(str(rng.choice(ADJECTIVES)))
        words.append(str(rng.choice(NOUNS)))
        if rng.random() < 0.5:
            words += [str(rng.choice(PREPOSITIONS)), "the", str(rng.choice(NOUNS))]
        if rng.random() < 0.3:
            words.append(str(rng.choice(ADVERBS)))
        if len(words) >= min_words:
            return " ".join(words)
        words.append("and")



def identity_name(voice, variant):
    """The name of a voice identity: ``en-gb+f2``, or the accent alone for its default voice."""
    return voice if variant is None else f"{voice}+{variant}"


def speech_clip(rel, text, voice, variant, rate, pitch, pitch_range, rng, args, layout, **extra):
    """A clip spec: everything rendering needs, as JSON-friendly values (``text`` None: noise
    only, the ``_silence_`` class)."""
    spec = {
        "path": rel,
        "text": text,
        "voice": voice,
        "variant": variant,
        "rate_wpm": int(rate),
        "pitch": int(pitch),
        "pitch_range": int(pitch_range),
        "noise": str(rng.choice(dsp.NOISE_KINDS)),
        "snr_db": draw_snr(rng, args) if text is not None else None,
        "layout": layout,
        "render_seed": int(rng.integers(0, 2**31)),
    }
    spec.update(extra)
    return spec


def plan_pretrain(args, variants):
    plans = {}
    foreign = sorted(FOREIGN_WORDS)
    for split, count in (("train", args.num_pretrain), ("valid", args.num_pretrain_valid)):
        clips = []
        for i in range(count):
            rng = clip_rng(args.seed, "pretrain", split, i)
            rate = int(rng.integers(120, 241))
            target_s = float(rng.uniform(1.0, 4.0))
            # roughly as many words as fit in target_s at this rate
            n_words = max(1, int(round(target_s * rate / 60.0)))
            if rng.random() < 0.7:
                voice = str(rng.choice(ENGLISH_VOICES))
                text = " ".join(english_sentence(rng, n_words).split()[:n_words])
            else:
                voice = foreign[int(rng.integers(len(foreign)))]
                text = " ".join(rng.choice(FOREIGN_WORDS[voice], size=n_words))
            variant = variants[int(rng.integers(len(variants)))]
            clips.append(
                speech_clip(
                    f"pretrain/{split}/{i:05d}.wav", text, voice, variant, rate,
                    rng.integers(20, 81), rng.integers(20, 81), rng, args,
                    layout={"min_s": 1.0, "max_s": 4.0},
                )
            )
        plans[split] = clips
    return plans

def keyword_classes():
    """The keyword task's classes: Speech Commands' ten command words, then ``_unknown_`` and
    ``_silence_``."""
    return list(COMMAND_WORDS) + [UNKNOWN_CLASS, SILENCE_CLASS]


def plan_keyword(args, part, pick_identity, **extra):
    """1 s keyword clips: ``keyword_per_class`` per class in train, ``keyword_eval_per_class`` in
    valid and test.  ``pick_identity(rng, split) -> (voice, variant)`` chooses each clip's voice
    from its split's own voices; ``part`` names the planner in the clips' seeds; ``extra`` is
    added to every spec."""
    plans = {}
    for split in SPLITS_LABELLED:
        count = args.keyword_per_class if split == "train" else args.keyword_eval_per_class
        clips = []
        for label, name in enumerate(keyword_classes()):
            for i in range(count):
                rng = clip_rng(args.seed, part, split, name, i)
                voice, variant = pick_identity(rng, split)
                if name == SILENCE_CLASS:
                    text = None
                elif name == UNKNOWN_CLASS:
                    text = str(rng.choice(UNKNOWN_WORDS))
                else:
                    text = name
                clips.append(
                    speech_clip(
                        f"keyword/{split}/{name}/{i:04d}.wav", text, voice, variant,
                        rng.integers(110, 221), rng.integers(20, 81), rng.integers(20, 81),
                        rng, args, layout={"fixed_s": 1.0}, label=label, **extra,
                        identity=identity_name(voice, variant),
                        silence_dbfs=round(float(rng.uniform(-50.0, -25.0)), 2),
                    )
                )
        plans[split] = clips
    return plans


def plan_speakers(args, variants):
    """Speaker roster and clips; sentences never repeat across splits."""
    identities = [(v, var) for v in ENGLISH_VOICES for var in variants]
    if args.num_speakers > len(identities):
        raise SystemExit(f"--num-speakers can be at most {len(identities)}")
    roster_rng = clip_rng(args.seed, "speaker", "roster")
    order = roster_rng.permutation(len(identities))[: args.num_speakers]
    speakers = []
    for index, k in enumerate(order):
        voice, variant = identities[int(k)]
        speakers.append(
            {
                "index": index,
                "mid": f"spk{index:02d}",
                "voice": voice,
                "variant": variant,
                "pitch": int(roster_rng.integers(25, 76)),
                "rate_wpm": int(roster_rng.integers(130, 211)),
                "pitch_range": int(roster_rng.integers(30, 71)),
            }
        )
    used = set()  # sentences of earlier splits
    plans = {}
    for split in SPLITS_LABELLED:
        count = args.speaker_clips if split == "train" else args.speaker_eval_clips
        clips, this_split = [], set()
        for spk in speakers:
            for i in range(count):
                rng = clip_rng(args.seed, "speaker", split, spk["index"], i)
                text = english_sentence(rng)
                while text in used:  # keep evaluation sentences unseen
                    text = english_sentence(rng)
                this_split.add(text)
                clips.append(
                    speech_clip(
                        f"speaker/{split}/{spk['mid']}/{i:04d}.wav", text, spk["voice"],
                        spk["variant"], spk["rate_wpm"], spk["pitch"], spk["pitch_range"],
                        rng, args, layout={"min_s": 1.0, "max_s": 6.0}, label=spk["index"],
                        speaker=spk["mid"],
                    )
                )
        used |= this_split
        plans[split] = clips
    return speakers, plans


def speaker_classes(speakers):
    """labels.csv rows of the speaker task: a speaker's id and its voice, pitch and rate."""
    return [
        ClassInfo(
            s["mid"],
            f"{identity_name(s['voice'], s['variant'])} pitch={s['pitch']} rate={s['rate_wpm']}wpm",
        )
        for s in sorted(speakers, key=lambda s: s["index"])
    ]


def _place(speech, layout, rng):
    """Put speech on a silent canvas; returns (canvas, visible speech)."""
    sr = SAMPLE_RATE
    if "fixed_s" in layout:  # keyword: centred with a little jitter
        length = int(round(layout["fixed_s"] * sr))
        if len(speech) > length:
            start = (len(speech) - length) // 2
            speech = dsp.fade(speech[start : start + length].copy(), int(0.01 * sr))
        slack = length - len(speech)
        jitter = int(min(slack // 2, 0.1 * sr))
        offset = slack // 2 + (int(rng.integers(-jitter, jitter + 1)) if jitter else 0)
    else:  # free length: random margins, total within [min_s, max_s]
        lead = int(rng.uniform(0.05, 0.35) * sr)
        tail = int(rng.uniform(0.05, 0.35) * sr)
        min_len, max_len = int(layout["min_s"] * sr), int(layout["max_s"] * sr)
        length = int(np.clip(lead + len(speech) + tail, min_len, max_len))
        if lead + len(speech) > length:  # too long: keep the start, fade the cut
            speech = dsp.fade(speech[: max(0, length - lead)].copy(), int(0.01 * sr))
        # centre the speech in any padding added to reach min_s
        offset = lead + max(0, (length - (lead + len(speech) + tail)) // 2)
    canvas = np.zeros(length, dtype=np.float32)
    canvas[offset : offset + len(speech)] = speech
    return canvas, speech


def render_speech(spec, out_root):
    """Render one clip to out_root/spec['path']; returns (path, num_samples)."""
    rng = np.random.default_rng(spec["render_seed"])
    if spec["text"] is None:  # _silence_: noise only
        length = int(round(spec["layout"]["fixed_s"] * SAMPLE_RATE))
        noise = dsp.ambient_noise(length, rng, spec["noise"], SAMPLE_RATE)
        audio = noise * np.float32(10 ** (spec["silence_dbfs"] / 20))
    else:
        speech = ss.synthesize(
            spec["text"], voice=spec["voice"], variant=spec["variant"],
            rate_wpm=spec["rate_wpm"], pitch=spec["pitch"],
            pitch_range=spec["pitch_range"], sample_rate=SAMPLE_RATE,
            seed=spec["render_seed"],
        )
        canvas, visible = _place(speech, spec["layout"], rng)
        noise = dsp.ambient_noise(len(canvas), rng, spec["noise"], SAMPLE_RATE)
        audio = dsp.mix_at_snr(canvas, noise, spec["snr_db"], reference=visible)
        # vary loudness between clips and stay clear of clipping
        peak = float(np.max(np.abs(audio)))
        if peak > 0:
            audio = audio * np.float32(rng.uniform(0.3, 0.9) / peak)
    return write_pcm(audio, out_root, spec)

