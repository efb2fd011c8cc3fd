"""Write emotion-recognition manifests for IEMOCAP (SUPERB's 4-class, 5-fold protocol).

ROOT is ``IEMOCAP_full_release/`` with ``Session{1..5}/sentences/wav/{dialog}/{utt}.wav`` and
the annotations ``Session{n}/dialog/EmoEvaluation/{dialog}.txt``, whose utterance lines read
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``.

Utterances labelled neu, hap, exc (merged into hap), ang and sad are kept, as the 4 classes
neu, hap, ang, sad; other labels are dropped and counted.  For k = 1..5, ``{dest}/fold{k}/``
gets ``train``, ``valid``, ``test`` (``.tsv`` + ``.lbl``) and ``labels.csv``: test = Session k,
valid = a deterministic 20% of the other four sessions, train = the rest.  Valid holds whole
dialogues (``Ses01F_impro01``...: the utterances of one conversation never straddle train and
valid), stratified so that each class has about 20% of its utterances, and at least one
dialogue, in valid.  (A session's two speakers act in all its dialogues, so only whole sessions
would keep speakers apart: the test fold does that.)

Example (from the repository root):
    mae-ast-prepare iemocap /data/IEMOCAP_full_release --dest manifests/iemocap
"""

import os
import re
from collections import Counter

from .audio import measure_clips
from .common import ClassInfo, Entry, PrepError, existing_dir, make_parser
from .manifests import write_outputs
from .splits import grouped_stratified_holdout, note_classes_not_held_out, split_rng
from .summary import PrepSummary

NUM_SESSIONS = 5
CLASSES = ("neu", "hap", "ang", "sad")
EMOTION_TO_CLASS = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
# "[start - end]<TAB>utterance<TAB>emotion<TAB>[v, a, d]"; other lines are headers or ratings.
UTTERANCE_LINE = re.compile(r"^\[[\d.]+ - [\d.]+\]\t(\S+)\t(\S+)\t")


def get_parser(prog=None):
    parser = make_parser(__doc__, prog, "IEMOCAP_full_release directory (holds Session1..Session5)")
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=0.2,
        help="fraction of each class in the four training sessions held out for validation, "
        "as whole dialogues (default: %(default)s)",
    )
    return parser


def read_session(root: str, session: int, summary: PrepSummary, kept: Counter):
    """Labelled utterances of one session as ``Entry`` objects, sorted by path; ``kept``
    counts the original emotion labels of the kept utterances."""
    session_dir = existing_dir(os.path.join(root, f"Session{session}"), "IEMOCAP session")
    emo_dir = existing_dir(
        os.path.join(session_dir, "dialog", "EmoEvaluation"), "IEMOCAP annotation directory"
    )
    wav_dir = os.path.join(session_dir, "sentences", "wav")
    entries, seen = [], {}
    for name in sorted(os.listdir(emo_dir)):
        path = os.path.join(emo_dir, name)
        if name.startswith(".") or not name.endswith(".txt") or not os.path.isfile(path):
            continue  # Categorical/, Attribute/... hold per-annotator files, not the consensus
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line_no, line in enumerate(handle, start=1):
                match = UTTERANCE_LINE.match(line)
                if not match:
                    continue
                utterance, emotion = match.groups()
                where = f"{path}:{line_no}"
                if utterance in seen:
                    raise PrepError(f"{where}: {utterance} is also annotated at {seen[utterance]}")
                seen[utterance] = where
                if emotion not in EMOTION_TO_CLASS:
                    summary.count(f"dropped utterances labelled {emotion!r}")
                    continue
                kept[emotion] += 1
                dialog = utterance.rsplit("_", 1)[0]
                label = CLASSES.index(EMOTION_TO_CLASS[emotion])
                wav_path = os.path.join(wav_dir, dialog, utterance + ".wav")
                entries.append(Entry(wav_path, (label,), where))
    if not entries:
        raise PrepError(f"{emo_dir}: no utterance annotations found")
    return sorted(entries, key=lambda entry: entry.path)


def dialogue_of(clip) -> str:
    """The dialogue of an utterance: its folder, ``sentences/wav/{dialogue}/{utterance}.wav``."""
    return os.path.basename(os.path.dirname(clip.path))


def prepare(args):
    root = existing_dir(args.root, "IEMOCAP root")
    summary = PrepSummary("IEMOCAP emotion recognition")
    session_clips, kept = {}, Counter()
    for session in range(1, NUM_SESSIONS + 1):
        entries = read_session(root, session, summary, kept)
        session_clips[session] = measure_clips(
            entries, skip_invalid=args.skip_invalid, summary=summary, workers=args.workers
        )
    splits = {}
    for fold in range(1, NUM_SESSIONS + 1):
        others = [
            clip for session, clips in session_clips.items() if session != fold for clip in clips
        ]
        train, valid, _ = grouped_stratified_holdout(
            others, args.valid_fraction, split_rng(args.seed, fold),
            group_of=dialogue_of, labels_of=lambda clip: clip.labels,
            summary=summary, name=f"fold{fold}/valid",
        )  # fmt: skip
        note_classes_not_held_out(summary, f"fold{fold}/valid", train, valid, CLASSES)
        splits[f"fold{fold}/train"] = train
        splits[f"fold{fold}/valid"] = valid
        splits[f"fold{fold}/test"] = session_clips[fold]
    summary.note(f"exc merged into hap: {kept['exc']} utterances")
    classes = [ClassInfo(name, name) for name in CLASSES]
    write_outputs(args.dest, root, splits, summary, classes)
    summary.print()
    return summary

