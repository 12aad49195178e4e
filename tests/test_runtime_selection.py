"""The default `cage predict` path: the fastest variant that passes the agreement bar (issue 8), and ONNX."""

from __future__ import annotations

import json

import pytest
import torch

from cage import ExpressionAnalyzer
from cage.cli import main
from cage.pipeline_cage import has_native_bf16, resolve_precision
from conftest import face_photo

PHOTOS = ("two_people.jpg", "obama.jpg", "obama_small.jpg", "biden.jpg", "32bit.png", "obama_partial_face.jpg")


def test_auto_precision_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert has_native_bf16(cpu) and resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not has_native_bf16(cpu) and resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu)


def test_bf16_path_passes_the_agreement_bar_on_real_faces(tiny_model_dir):
    exact = ExpressionAnalyzer.from_pretrained(tiny_model_dir, precision="fp32")
    fast = ExpressionAnalyzer.from_pretrained(tiny_model_dir, precision="bf16")
    assert fast.precision == "bf16" and exact.precision == "fp32"
    faces = 0
    for name in PHOTOS:
        photo = face_photo(name)
        for a, b in zip(exact.predict(photo), fast.predict(photo), strict=True):
            faces += 1
            assert a["box"] == b["box"] and a["expression"] == b["expression"]
            assert abs(a["valence"] - b["valence"]) <= 0.02 and abs(a["arousal"] - b["arousal"]) <= 0.02
    assert faces == 7


def _records(capsys, *args) -> list[dict]:
    assert main(["predict", *args, "--format", "jsonl", "--no-progress"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cli_default_agrees_with_forced_fp32_and_onnx(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CAGE_CACHE", str(tmp_path / "cache"))
    photo = str(face_photo("two_people.jpg"))
    default = _records(capsys, photo, "--model", str(tiny_model_dir))
    fp32 = _records(capsys, photo, "--model", str(tiny_model_dir), "--precision", "fp32")
    onnx = _records(capsys, photo, "--model", str(tiny_model_dir), "--runtime", "onnx")
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1  # exported once, then cached
    onnx_again = _records(capsys, photo, "--model", str(tiny_model_dir), "--runtime", "onnx")
    assert onnx_again == onnx
    for d, f, o in zip(default[0]["faces"], fp32[0]["faces"], onnx[0]["faces"], strict=True):
        assert d["box"] == f["box"] == o["box"] and d["expression"] == f["expression"] == o["expression"]
        assert abs(d["valence"] - f["valence"]) <= 0.02 and abs(d["arousal"] - f["arousal"]) <= 0.02
        for key in ("valence", "arousal"):
            assert o[key] == pytest.approx(f[key], abs=1e-4)
        for label, p in f["probabilities"].items():
            assert o["probabilities"][label] == pytest.approx(p, abs=1e-4)
    assert len(fp32[0]["faces"]) == 2


# --- issue 14: runtime choice by CPU flags, parity and agreement of each path, fallback ---------------------

from cage.runtimes import select  # noqa: E402
from cage.bench.benchmark import face_crops  # noqa: E402
from conftest import FACES_DIR  # noqa: E402

AVX2_LAPTOP = select.parse_cpu_flags("laptop", {"sse4_2", "avx", "avx2", "fma"})
AVX512_SERVER = select.parse_cpu_flags("skylake", {"avx2", "avx512f", "avx512_vnni"})
BF16_SERVER = select.parse_cpu_flags("zen4", {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
AMX_SERVER = select.parse_cpu_flags("sapphire rapids", {"avx2", "avx512f", "amx_tile", "amx_bf16", "amx_int8"})
OLD_CPU = select.parse_cpu_flags("old", {"sse4_2"})
ALL = {"torch", "onnx", "openvino"}


def test_auto_chooses_by_cpu_flags_and_installed_runtimes():
    exact = [("openvino", "fp32"), ("onnx", "fp32"), ("torch", "fp32")]
    for cpu in (AVX2_LAPTOP, AVX512_SERVER, OLD_CPU):
        assert not cpu.native_bf16
        assert select.runtime_candidates(cpu, ALL) == exact
    for cpu in (BF16_SERVER, AMX_SERVER):
        assert cpu.native_bf16
        assert select.runtime_candidates(cpu, ALL) == [("openvino", "bf16"), ("torch", "bf16"), *exact]
        assert select.runtime_candidates(cpu, ALL, precision="fp32") == exact
    assert AMX_SERVER.amx and not AMX_SERVER.avx512_bf16 and BF16_SERVER.vnni and not AVX2_LAPTOP.avx512
    assert select.runtime_candidates(AVX2_LAPTOP, {"torch"}) == [("torch", "fp32")]
    assert select.runtime_candidates(BF16_SERVER, {"torch", "onnx"}) == [("torch", "bf16"), ("onnx", "fp32"),
                                                                         ("torch", "fp32")]  # fmt: skip
    assert select.runtime_candidates(AVX2_LAPTOP, ALL, runtime="openvino") == [("openvino", "fp32")]
    assert select.runtime_candidates(AVX2_LAPTOP, ALL, precision="bf16") == [("torch", "bf16")]
    with pytest.raises(ValueError, match="no bf16 path for runtime 'onnx'"):
        select.runtime_candidates(BF16_SERVER, ALL, runtime="onnx", precision="bf16")
    with pytest.raises(ValueError, match="runtime must be"):
        select.runtime_candidates(BF16_SERVER, ALL, runtime="tensorrt")
    assert "AVX512-BF16 yes" in BF16_SERVER.describe() and "AVX-512 no" in AVX2_LAPTOP.describe()


def test_an_isa_cap_makes_auto_choose_as_on_that_cpu(monkeypatch):
    capped = select.cap_features(BF16_SERVER, "AVX2")  # ONEDNN_MAX_CPU_ISA=AVX2 on an AVX512-BF16 CPU
    assert (capped.avx2, capped.avx512, capped.avx512_bf16, capped.vnni) == (True, False, False, False)
    assert select.runtime_candidates(capped, ALL) == select.runtime_candidates(AVX2_LAPTOP, ALL)
    assert "(capped by ONEDNN_MAX_CPU_ISA=AVX2)" in capped.describe()
    sapphire_rapids = select.parse_cpu_flags("xeon", {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
    without_amx = select.cap_features(sapphire_rapids, "AVX512_CORE_BF16")
    assert without_amx.native_bf16 and not without_amx.amx
    assert select.cap_features(AVX2_LAPTOP, "AVX512_CORE_BF16") == AVX2_LAPTOP  # a cap adds nothing...
    assert select.cap_features(BF16_SERVER, "ALL") == BF16_SERVER  # ...and ALL/unknown values cap nothing
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not select.cpu_features().avx512 and not select.cpu_features().native_bf16


@pytest.fixture(scope="module")
def tiny_network_and_crops(tiny_model_dir, tmp_path_factory):
    from cage.model_folder import load_model_and_processor

    model, processor = load_model_and_processor(tiny_model_dir)
    crops = face_crops(processor, FACES_DIR)
    assert len(crops) >= 7
    with torch.inference_mode():
        reference = model(pixel_values=crops)
    return model, crops, reference, tmp_path_factory.mktemp("runtime-cache")


@pytest.mark.parametrize("runtime", ["openvino", "onnx"])
def test_exact_paths_match_eager_fp32_on_real_face_crops(tiny_network_and_crops, runtime):
    pytest.importorskip({"openvino": "openvino", "onnx": "onnxruntime"}[runtime])
    model, crops, reference, cache = tiny_network_and_crops
    runner, used, precision = select.load_runner(model, runtime, "fp32", cache_dir=cache, features=AVX2_LAPTOP)
    assert (used, precision) == (runtime, "fp32")
    out = runner(pixel_values=crops)
    assert (out.logits - reference.logits).abs().max() <= 1e-4
    assert (out.regression - reference.regression).abs().max() <= 1e-4


def _agreement(out, reference) -> tuple[float, float]:
    agree = float((out.logits.argmax(-1) == reference.logits.argmax(-1)).float().mean())
    return agree, float((out.regression.float() - reference.regression).abs().max())


def test_reduced_paths_pass_the_agreement_gate_on_real_face_crops(tiny_network_and_crops):
    from cage.runtimes.torch_variants import TorchRunner

    model, crops, reference, cache = tiny_network_and_crops
    torch_bf16 = TorchRunner(model, autocast_dtype=torch.bfloat16, channels_last=True)(pixel_values=crops)
    assert _agreement(torch_bf16, reference) >= (1.0, 0.0) and _agreement(torch_bf16, reference)[1] <= 0.02
    if not select.cpu_features().native_bf16:
        pytest.skip("OpenVINO bf16 needs a CPU with native bf16 (AVX512-BF16/AMX); not this one")
    pytest.importorskip("openvino")
    runner, used, precision = select.load_runner(model, "openvino", "bf16", cache_dir=cache, features=BF16_SERVER)
    assert (used, precision, runner.precision) == ("openvino", "bf16", "bf16")
    agree, delta = _agreement(runner(pixel_values=crops), reference)
    assert agree == 1.0 and delta <= 0.02


def test_a_failing_runtime_falls_back_to_the_next_with_one_warning(tiny_network_and_crops, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    from cage.runtimes import openvino

    model, crops, reference, cache = tiny_network_and_crops

    def broken(*args, **kwargs):
        raise RuntimeError("cannot compile for this CPU\nsecond line")

    monkeypatch.setattr(openvino.OpenVinoModel, "__init__", broken)
    monkeypatch.setattr(select, "installed_runtimes", lambda: ALL)
    with caplog.at_level("WARNING", logger="cage"):
        runner, used, precision = select.load_runner(model, cache_dir=cache, features=AVX2_LAPTOP)
    assert (used, precision) == ("onnx", "fp32")
    assert [r.getMessage() for r in caplog.records] == [
        "cage: openvino fp32 failed (RuntimeError: cannot compile for this CPU); using onnx fp32"
    ]
    assert (runner(pixel_values=crops).logits - reference.logits).abs().max() <= 1e-4
    with pytest.raises(RuntimeError, match="no runtime could be used: openvino fp32 failed"):
        select.load_runner(model, "openvino", "fp32", cache_dir=cache, features=AVX2_LAPTOP)


def test_a_runtime_computing_wrong_numbers_is_never_used(tiny_network_and_crops, monkeypatch, caplog):
    from cage.modeling_cage import CageOutput
    from cage.runtimes import onnx

    model, crops, reference, cache = tiny_network_and_crops

    class Wrong:
        def __init__(self, path, config, threads=None):
            self.config = config

        def __call__(self, pixel_values=None):
            out = model(pixel_values=pixel_values)
            return CageOutput(logits=out.logits + 1e-3, regression=out.regression)

    monkeypatch.setattr(onnx, "OnnxRuntimeModel", Wrong)
    monkeypatch.setattr(onnx, "cached_onnx_export", lambda *a, **k: cache / "wrong.onnx")
    monkeypatch.setattr(select, "installed_runtimes", lambda: {"torch", "onnx"})
    with caplog.at_level("WARNING", logger="cage"):
        runner, used, precision = select.load_runner(model, cache_dir=cache, features=AVX2_LAPTOP)
    assert runner is model and (used, precision) == ("torch", "fp32")
    assert len(caplog.records) == 1 and "onnx fp32 failed (RuntimeError: differs from PyTorch fp32" in caplog.text


def test_cage_predict_default_falls_back_with_one_warning_and_the_exact_numbers(
    tiny_model_dir, monkeypatch, capsys, caplog
):
    from cage.runtimes import openvino

    photo = str(face_photo("two_people.jpg"))
    exact = _records(capsys, photo, "--model", str(tiny_model_dir), "--runtime", "torch", "--precision", "fp32",
                     "--detector", "dlib")  # fmt: skip

    def broken(*args, **kwargs):
        raise RuntimeError("no CPU plugin")

    monkeypatch.setattr(openvino.OpenVinoModel, "__init__", broken)
    with caplog.at_level("WARNING", logger="cage"):
        fallback = _records(capsys, photo, "--model", str(tiny_model_dir), "--precision", "fp32", "--detector", "dlib")
    warnings = [r.getMessage() for r in caplog.records if r.name == "cage"]
    assert warnings == ["cage: openvino fp32 failed (RuntimeError: no CPU plugin); using onnx fp32"]
    for a, b in zip(exact[0]["faces"], fallback[0]["faces"], strict=True):
        assert a["expression"] == b["expression"] and a["box"] == b["box"]
        assert abs(a["valence"] - b["valence"]) <= 1e-4 and abs(a["arousal"] - b["arousal"]) <= 1e-4


def test_the_live_path_takes_the_lowest_latency_working_path(tiny_network_and_crops, monkeypatch):
    pytest.importorskip("openvino")
    model, crops, reference, cache = tiny_network_and_crops
    measured = []
    fake_seconds = {("openvino", "bf16"): 0.3, ("torch", "bf16"): 0.2, ("openvino", "fp32"): 0.1,
                    ("torch", "fp32"): 0.4}  # fmt: skip

    def fake_latency(runner, path, size):
        measured.append(path)
        return fake_seconds[path]

    monkeypatch.setattr(select, "measure_latency_s", fake_latency)
    monkeypatch.setattr(select, "installed_runtimes", lambda: ALL)
    runner, used, precision = select.load_runner(model, latency=True, cache_dir=cache, features=AVX2_LAPTOP)
    assert (used, precision) == ("openvino", "fp32") and sorted(measured) == [("openvino", "fp32"), ("torch", "fp32")]
    measured.clear()
    fake_seconds[("openvino", "fp32")] = 0.5
    runner, used, precision = select.load_runner(model, latency=True, cache_dir=cache, features=AVX2_LAPTOP)
    assert runner is model and (used, precision) == ("torch", "fp32")  # ONNX skipped: OpenVINO works
    assert select.measure_latency_s(model, ("torch", "bf16"), int(model.config.image_size)) > 0


def test_bench_isolated_pair_and_hardware_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from cage.bench import benchmark

    monkeypatch.setenv("CAGE_CACHE", str(tmp_path / "cache"))
    authors = benchmark.build_authors_network(10)
    torch.save(authors.state_dict(), tmp_path / "authors.pt")
    benchmark.isolated_pair_main([str(tiny_model_dir), str(tmp_path / "authors.pt"), "10", "2", "1"])
    pair = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert pair["batch"] == 2 and pair["rounds"] == 1 and pair["path"].split()[0] in ("openvino", "onnx", "torch")
    assert pair["ratio"] == pytest.approx(pair["default_images_per_s"] / pair["authors_images_per_s"])
    machine = {"cpu_line": "cpu", "torch_threads": 2, "logical_cpus": 2, "torch": "t", "openvino": "o",
               "onnxruntime": "r", "python": "p", "isa_caps": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}  # fmt: skip
    assert "capped by ONEDNN_MAX_CPU_ISA=AVX2" in benchmark.hardware_line(machine)
    assert "capped" not in benchmark.hardware_line({**machine, "isa_caps": {}})


def test_a_damaged_cached_graph_is_converted_again(tiny_network_and_crops, tmp_path, caplog):
    pytest.importorskip("openvino")
    model, crops, reference, _ = tiny_network_and_crops
    cache = tmp_path / "cache"
    select.load_runner(model, "openvino", "fp32", cache_dir=cache, features=AVX2_LAPTOP)
    (weights,) = (cache / "openvino").glob("*.bin")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # e.g. an interrupted copy
    caplog.clear()  # the first conversion's notice is not this call's
    with caplog.at_level("INFO", logger="cage"):
        runner, used, _ = select.load_runner(model, "auto", "fp32", cache_dir=cache, features=AVX2_LAPTOP)
    assert used == "openvino" and {r.levelname for r in caplog.records} == {"INFO"}  # no fallback warning
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot be loaded; converting again" in m for m in messages) == 1, messages
    assert sum(m.startswith("cage: converting the model for OpenVINO") for m in messages) == 1, messages
    assert (runner(pixel_values=crops).logits - reference.logits).abs().max() <= 1e-4


def test_error_line_names_the_message_not_openvinos_source_lines():
    from cage.runtimes import error_line

    nested = RuntimeError("Exception from src/inference/src/cpp/core.cpp:132:\nException from src/x.cpp:59:\nbad one\n")
    assert error_line(nested) == "RuntimeError: bad one"
    assert error_line(ValueError("one\ntwo")) == "ValueError: one" and error_line(KeyError()) == "KeyError"
