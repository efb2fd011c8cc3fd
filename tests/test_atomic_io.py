"""mae_ast_plugin/atomic_io.py: a failed write leaves the old file and no temporary behind."""

import json
import os
import wave

import numpy as np
import pytest

from mae_ast_plugin.atomic_io import (
    atomic_open,
    atomic_save_npy,
    atomic_write_audio,
    atomic_write_json,
    atomic_write_text,
)


def test_writers_replace_the_file_and_leave_nothing_else(tmp_path):
    atomic_write_text(str(tmp_path / "a.txt"), "one\r\ntwo\n")
    atomic_write_json(str(tmp_path / "deep" / "b.json"), {"x": [1, 2.5]})  # directory created
    atomic_save_npy(str(tmp_path / "c.npy"), np.arange(4, dtype=np.int16))
    atomic_write_audio(str(tmp_path / "d.wav"), np.zeros(160, np.float32), 16000)
    assert (tmp_path / "a.txt").read_bytes() == b"one\r\ntwo\n"  # line ends kept as given
    assert json.loads((tmp_path / "deep" / "b.json").read_text()) == {"x": [1, 2.5]}
    assert np.load(tmp_path / "c.npy").tolist() == [0, 1, 2, 3]
    with wave.open(str(tmp_path / "d.wav")) as handle:
        assert (handle.getframerate(), handle.getnframes()) == (16000, 160)
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "c.npy", "d.wav", "deep"]
    atomic_write_text(str(tmp_path / "a.txt"), "new\n")
    assert (tmp_path / "a.txt").read_text() == "new\n"


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(str(path), {"mAP": 0.5})
    with pytest.raises(ValueError, match="JSON compliant"):
        atomic_write_json(str(path), {"mAP": float("nan")})  # strict JSON: no NaN token
    with pytest.raises(RuntimeError, match="disk"):
        with atomic_open(str(path)) as handle:
            handle.write(b"{")
            raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"mAP": 0.5}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_files_honour_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        atomic_write_text(str(tmp_path / "x.txt"), "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o640


def test_a_file_the_writer_made_private_gets_the_usual_mode(tmp_path):
    """safetensors' save_file creates its file 0o600; the result must be readable like any
    file ``open`` creates (0o666 less the umask), or an exported folder cannot be shared."""
    import os

    from mae_ast_plugin.atomic_io import atomic_target

    target = tmp_path / "model.safetensors"
    with atomic_target(str(target)) as temporary:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT, 0o600))
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask



def test_table1_results_with_a_nan_are_written_as_strict_json(tmp_path):
    """A diverged run's NaN loss is null in its result file, not a crash of the experiment."""
    import json

    from mae_ast_plugin.experiments.runs import write_json

    write_json(tmp_path / "result.json", {"valid_loss": float("nan"), "runs": [1.0, float("inf")]})
    assert json.loads((tmp_path / "result.json").read_text()) == {
        "valid_loss": None, "runs": [1.0, None]}
