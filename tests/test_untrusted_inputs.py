"""Untrusted inputs (issue 24): model folders, boxes, arrays, special files, full disks, parallel and interrupted
runs. Each kind asserts the behaviour a user should see: one line naming the problem, the right exit code, and
nothing run, hung, lost or half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import face_photo

MARKER_CODE = """
from pathlib import Path
Path({marker!r}).write_text("the folder's code ran")
raise SystemExit("planted code ran")
"""


def cage_process(*args: str, stdin: str | None = None, timeout: int = 300, env: dict | None = None):
    environment = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "cage", *args], input=stdin, capture_output=True, text=True,
                          env=environment, timeout=timeout)  # fmt: skip


def one_line(stderr: str) -> str:
    """The one line of ``stderr`` (the tiny test model's "untrained" warning aside), with no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip() and "weights_status=" not in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# ------------------------------------------------------------------------------------- 1. model folders


def planted_folder(tmp_path: Path, model_type: str) -> tuple[Path, Path]:
    folder, marker = tmp_path / f"planted-{model_type}", tmp_path / f"ran-{model_type}"
    folder.mkdir()
    for name in ("configuration_evil.py", "modeling_evil.py"):
        (folder / name).write_text(MARKER_CODE.format(marker=str(marker)))
    config = {"model_type": model_type, "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                                                     "AutoModel": "modeling_evil.EvilModel"}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "EvilProcessor",
                                                                 "auto_map": {"AutoImageProcessor": "modeling_evil.X"}}))  # fmt: skip
    return folder, marker


def test_a_planted_folder_never_runs_its_code_and_never_prompts(tmp_path):
    folder, marker = planted_folder(tmp_path, "evil")
    done = cage_process("predict", str(face_photo("obama_small.jpg")), "--model", str(folder), stdin="y\ny\ny\n")
    line = one_line(done.stderr)
    assert done.returncode == 2
    assert "model_type is 'evil', not a CAGE model" in line and "--trust-remote-code" in line
    assert "[y/N]" not in done.stdout + done.stderr and not marker.exists()
    from cage.inference import ExpressionAnalyzer
    from cage.model_folder import ModelLoadError

    with pytest.raises(ModelLoadError, match="never runs code"):
        ExpressionAnalyzer.from_pretrained(folder)
    assert not marker.exists()


def test_a_cage_folder_with_planted_code_files_loads_cage_s_own_classes(tiny_model_dir, tmp_path):
    folder = tmp_path / "cage-with-planted-code"
    shutil.copytree(tiny_model_dir, folder)
    marker = tmp_path / "ran"
    for name in ("configuration_cage.py", "modeling_cage.py", "image_processing_cage.py"):
        (folder / name).write_text(MARKER_CODE.format(marker=str(marker)))
    from cage.model_folder import load_model_and_processor

    model, processor = load_model_and_processor(folder)
    assert type(model).__module__ == "cage.modeling_cage" and not marker.exists()


def broken_copy(source: Path, target: Path, edit) -> Path:
    shutil.copytree(source, target)
    edit(target)
    return target


def _truncate(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 3])


def _random_bytes(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _pickle_only(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")


def _missing_weights(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("head.")}, folder / "model.safetensors")


def _unexpected_weights(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    save_file({**state, "extra.weight": torch.zeros(3)}, folder / "model.safetensors")


def _impossible_processor(folder: Path) -> None:
    path = folder / "preprocessor_config.json"
    settings = json.loads(path.read_text())
    settings["size"] = {"height": 0, "width": 0}
    path.write_text(json.dumps(settings))


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_truncate, "model.safetensors: cannot load the weights (SafetensorError"),
        (_random_bytes, "model.safetensors: cannot load the weights"),
        (_pickle_only, "pytorch_model.bin: cage loads safetensors weights only"),
        (_missing_weights, "do not fit its config: 5 missing"),
        (_unexpected_weights, "1 unexpected (e.g. extra.weight)"),
        (_impossible_processor, "preprocessor_config.json: cannot load the image processor"),
    ],
    ids=["truncated", "random-bytes", "pickle-only", "missing-weights", "unexpected-weights", "size-0"],
)
def test_each_broken_folder_is_one_line_and_exit_2(tiny_model_dir, tmp_path, cli, edit, expected):
    folder = broken_copy(tiny_model_dir, tmp_path / "broken", edit)
    photo = str(face_photo("obama_small.jpg"))
    code, out, err = cli("predict", photo, photo, "--model", str(folder), "--runtime", "torch")
    assert code == 2 and out == ""
    line = one_line(err)
    assert expected in line and str(folder) in line


def test_init_model_refuses_to_overwrite_a_model_folder(tiny_model_dir, tmp_path, cli):
    folder = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, weights_status="trained")))
    before = (folder / "model.safetensors").read_bytes()
    code, _, err = cli("init-model", str(folder), "--backbone", "resnet10t", "--image-size", "32")
    assert code == 2 and "holds a trained model" in one_line(err) and "--overwrite" in err
    assert (folder / "model.safetensors").read_bytes() == before
    code, _, err = cli("init-model", str(folder), "--backbone", "resnet10t", "--image-size", "32", "--overwrite")
    assert code == 0 and json.loads((folder / "config.json").read_text())["weights_status"] == "untrained"


# ------------------------------------------------------------------------------------- 3. inputs at the edges


def test_a_fifo_in_a_folder_is_skipped_not_waited_for(tiny_model_dir, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copyfile(face_photo("obama_small.jpg"), folder / "a.jpg")
    os.mkfifo(folder / "stream.mp4")
    done = cage_process("predict", str(folder), "--model", str(tiny_model_dir), "--runtime", "torch",
                        "--format", "jsonl", timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skipped" in done.stderr and "stream.mp4: not a regular file (a FIFO)" in done.stderr
    assert "1 image, " in done.stderr and ", 1 skipped" in done.stderr
    assert [json.loads(line)["file"] for line in done.stdout.splitlines()] == [str(folder / "a.jpg")]


def test_resume_names_and_counts_skipped_files_like_a_plain_run(tiny_model_dir, tmp_path, cli):
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copyfile(face_photo("obama_small.jpg"), folder / "a.jpg")
    (folder / ".hidden.jpg").write_bytes(b"x")
    (folder / "notes.txt").write_text("not an image")
    runs = {}
    for mode in ("plain", "resume"):
        extra = ["--resume"] if mode == "resume" else []
        code, _, err = cli("predict", str(folder), "--model", str(tiny_model_dir), "--runtime", "torch",
                           "--output", str(tmp_path / f"{mode}.jsonl"), *extra)  # fmt: skip
        assert code == 0, err
        runs[mode] = err
    for err in runs.values():
        assert "skipped" in err and ".hidden.jpg: hidden file" in err and "notes.txt: not an image" in err
        assert "1 image, 1 face, 0 failed, 0 faces without a prediction, 2 skipped" in err


def test_bad_user_boxes_are_named_and_the_good_ones_predicted(tiny_model_dir, tmp_path, cli):
    photo = face_photo("obama_small.jpg")
    boxes = tmp_path / "boxes.json"
    # Python's json writes Infinity; a 1e9 or 30000-pixel box would allocate gigabytes for its padded crop
    boxes.write_text(json.dumps({photo.name: [[float("inf"), 0, 50, 50], [0, 0, 1e9, 1e9], [10, 10, 30000, 30000],
                                               [103, 68, 109, 108], [5000, 5000, 10, 10]]}))  # fmt: skip
    started = time.perf_counter()
    code, out, err = cli("predict", str(photo), "--model", str(tiny_model_dir), "--runtime", "torch",
                         "--boxes", str(boxes), "--format", "jsonl")  # fmt: skip
    assert time.perf_counter() - started < 120 and "Traceback" not in err
    assert code == 1
    faces = json.loads(out)["faces"]
    assert len(faces) == 5
    errors = [face.get("error") for face in faces]
    assert "not a finite number" in errors[0] and "larger than 4 times the 320x240 image" in errors[1]
    assert "larger than 4 times" in errors[2] and errors[3] is None and "outside the 320x240 image" in errors[4]
    assert faces[3]["expression"] in faces[3]["probabilities"] and faces[0]["box"] is None
    assert "4 faces without a prediction" in err


def test_float_arrays_outside_0_1_are_refused_not_clipped():
    from cage.face_analysis_cage import array_to_image

    photo = np.asarray(Image.open(face_photo("obama_small.jpg")).convert("RGB"))
    assert np.array_equal(np.asarray(array_to_image(photo / 255.0)), photo)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]; this one spans \[0, 255\].*astype\(np.uint8\)"):
        array_to_image(photo.astype(np.float32))
    with pytest.raises(ValueError, match=r"spans \[-1"):
        array_to_image(photo / 127.5 - 1.0)
    with pytest.raises(ValueError, match="NaN or infinity"):
        array_to_image(np.full((4, 4), np.nan))


def test_animated_images_say_only_the_first_frame_is_read(tmp_path, caplog):
    from cage.face_analysis_cage import read_image

    frames = [Image.open(face_photo("obama_small.jpg")).convert("RGB"), Image.new("RGB", (320, 240))]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:])
    with caplog.at_level("WARNING", logger="cage"):
        image = read_image(tmp_path / "clip.gif")
    assert image.size == (320, 240)
    assert "has 2 frames (animated or multi-page); only the first is read" in caplog.text


# ------------------------------------------------------------------------------------- outputs


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 KiB tmpfs; skipped where the test cannot mount one (mounting needs root, or a user namespace)."""
    mount = tmp_path / "disk"
    if not _mount_tmpfs(mount, "size=16k"):
        pytest.skip("cannot mount a tmpfs here (needs root): the disk-full test runs where it can")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def crops_folder(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "crops"
    folder.mkdir()
    face = Image.open(face_photo("obama_small.jpg")).convert("RGB").crop((90, 50, 230, 200)).resize((64, 64))
    for index in range(count):
        face.save(folder / f"face{index:03d}.png")
    return folder


def test_a_full_disk_is_one_line_exit_3_and_no_half_written_file(tiny_model_dir, tmp_path, tiny_disk, cli):
    folder = crops_folder(tmp_path, 40)  # ~40 records of ~600 bytes: more than 16 KiB
    output = tiny_disk / "out.jsonl"
    code, _, err = cli("predict", str(folder), "--model", str(tiny_model_dir), "--runtime", "torch",
                       "--detector", "none", "--output", str(output), "--no-progress")  # fmt: skip
    assert code == 3
    assert one_line(err) == f"cage predict: cannot write {output}: No space left on device; nothing was written there"
    assert sorted(p.name for p in tiny_disk.iterdir()) == []


def test_a_read_only_annotate_folder_is_refused_before_any_work(tiny_model_dir, tmp_path, cli):
    read_only = tmp_path / "ro"
    if not _mount_tmpfs(read_only, "ro,size=16k"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        code, out, err = cli("predict", str(face_photo("obama_small.jpg")), "--model", str(tiny_model_dir),
                             "--annotate", str(read_only / "annotated"))  # fmt: skip
    finally:
        subprocess.run(["umount", str(read_only)], capture_output=True)
    assert code == 3 and out == ""  # an output that cannot be written: exit 3, as --output
    assert "cannot write there (Read-only file system)" in one_line(err)


def test_an_output_in_a_read_only_folder_is_one_line_and_exit_3_before_any_work(tiny_model_dir, tmp_path, cli):
    read_only = tmp_path / "ro"
    if not _mount_tmpfs(read_only, "ro,size=16k"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        for extra in ([], ["--resume"]):
            code, out, err = cli("predict", str(face_photo("obama_small.jpg")), "--model", str(tiny_model_dir),
                                 "--output", str(read_only / "out.jsonl"), *extra)  # fmt: skip
            assert code == 3 and out == "", (extra, err)
            assert one_line(err).startswith(f"cage predict: cannot write {read_only / 'out.jsonl'}: Read-only file system")
    finally:
        subprocess.run(["umount", str(read_only)], capture_output=True)


def test_an_output_link_is_written_through_and_a_device_or_fifo_is_never_replaced(tiny_model_dir, tmp_path, cli):
    target = tmp_path / "target.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    code, _, err = cli("predict", str(face_photo("obama_small.jpg")), "--model", str(tiny_model_dir), "--output",
                       str(link))  # fmt: skip
    assert code == 0, err
    assert link.is_symlink() and json.loads(target.read_text())["faces"]  # the link stays; its target holds the record
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    code, out, err = cli("predict", str(face_photo("obama_small.jpg")), "--model", str(tiny_model_dir), "--output",
                         str(fifo))  # fmt: skip
    assert code == 2 and out == "" and "is not a regular file" in one_line(err)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the FIFO, not replaced by a file


def test_a_second_run_on_the_same_output_is_refused(tiny_model_dir, tmp_path, cli):
    from cage.files import OutputLock

    output = tmp_path / "out.jsonl"
    photo = str(face_photo("obama_small.jpg"))
    with OutputLock(output):  # another run is writing it
        for extra in ([], ["--resume"]):
            code, _, err = cli("predict", photo, "--model", str(tiny_model_dir), "--runtime", "torch",
                               "--output", str(output), *extra)  # fmt: skip
            assert code == 2 and "another cage process is writing" in one_line(err)
    assert not output.exists()
    code, _, err = cli("predict", photo, "--model", str(tiny_model_dir), "--runtime", "torch", "--output", str(output))
    assert code == 0 and json.loads(output.read_text().splitlines()[0])["file"] == photo
    assert not (tmp_path / "out.jsonl.lock").exists()


def test_ctrl_c_ends_with_one_line_and_exit_130(tiny_model_dir, tmp_path):
    folder = crops_folder(tmp_path, 600)
    output = tmp_path / "out.jsonl"
    environment = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "cage", "predict", str(folder), "--model", str(tiny_model_dir),
                                "--runtime", "torch", "--detector", "none", "--output", str(output), "--no-progress",
                                "--batch-size", "1"],  # fmt: skip
                               stderr=subprocess.PIPE, text=True, env=environment)  # fmt: skip
    partial = tmp_path / ".out.jsonl.partial"
    deadline = time.time() + 180
    while not (partial.exists() and partial.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.05)  # records are flowing: the run is mid-way
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert one_line(err) == "cage predict: interrupted"
    assert not output.exists() and not partial.exists()
