"""Where ZIM runs (`zim_backend`), and the torch execution of its ONNX graphs (onnx2torch) against
onnxruntime's: same features, same mattes, inputs by name, outputs by position."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from worldgen.models import zim
from worldgen.models.tiny.zim import DECODER_INPUTS, ENCODER_OUTPUTS
from worldgen.models.zim import FEATURES, OrtGraph, TorchGraph, ZimPredictor, number_outputs, zim_backend

CPU = torch.device("cpu")
IMAGE = np.random.default_rng(0).integers(0, 255, (300, 600, 3), np.uint8)
BOXES = np.array([[100, 50, 300, 200], [400, 100, 500, 250], [-20, 0, 620, 310]], np.float32)
"""Three boxes (one past the image's edges) in chunks of two: decoder batches of 2 and 1."""


def zim_folder(tiny_models: Path) -> Path:
    return tiny_models / "naver-iv/zim-anything-vitl/zim_vit_l_2092"


def assert_close(actual: torch.Tensor, expected: np.ndarray, relative: float) -> float:
    """Max |actual − expected|, asserted ≤ relative × the largest |expected|."""
    difference = float(np.abs(actual.cpu().numpy() - expected).max())
    assert difference <= relative * float(np.abs(expected).max()), difference
    return difference


@pytest.mark.parametrize(
    ("device", "providers", "onnx2torch", "expected"),
    [
        ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], True, "onnxruntime-cuda"),
        ("cuda:1", ["TensorrtExecutionProvider", "CUDAExecutionProvider"], False, "onnxruntime-cuda"),
        ("cuda", ["CPUExecutionProvider"], True, "torch"),  # onnxruntime's CPU build on a GPU machine
        ("cuda:0", ["AzureExecutionProvider", "CPUExecutionProvider"], True, "torch"),
        ("cuda", ["CPUExecutionProvider"], False, "onnxruntime-cpu"),  # nothing else there
        ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], True, "onnxruntime-cpu"),
        ("cpu", ["CPUExecutionProvider"], True, "onnxruntime-cpu"),
        ("mps", ["CPUExecutionProvider"], True, "onnxruntime-cpu"),
    ],
)
def test_backend_choice(device: str, providers: list[str], onnx2torch: bool, expected: str) -> None:
    assert zim_backend(torch.device(device), providers, onnx2torch, free_bytes=20 << 30) == expected


@pytest.mark.parametrize("providers", [["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]])
def test_a_gpu_short_of_memory_keeps_zim_on_the_cpu(providers: list[str]) -> None:
    """Planned against the card's free memory: beside a resident Fill transformer on a 24 GB card,
    ZIM's fp32 encoder in torch does not fit (fp8-storage ran out of memory there), so it runs on
    the CPU."""
    from worldgen.models.zim import GPU_BYTES_NEEDED

    cuda = torch.device("cuda")
    assert zim_backend(cuda, providers, True, free_bytes=GPU_BYTES_NEEDED - 1) == "onnxruntime-cpu"
    assert zim_backend(cuda, providers, True, free_bytes=GPU_BYTES_NEEDED) != "onnxruntime-cpu"


def test_backend_choice_defaults_to_what_is_installed() -> None:
    """onnx2torch is a dependency; the CUDA provider is there only with onnxruntime-gpu."""
    cuda_provider = "CUDAExecutionProvider" in ort.get_available_providers()
    assert zim_backend(torch.device("cuda")) == ("onnxruntime-cuda" if cuda_provider else "torch")
    assert zim_backend(CPU) == "onnxruntime-cpu"


def test_torch_backend_matches_onnxruntime(tiny_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny twin through onnx2torch: the encoder's features agree with onnxruntime's to float32
    rounding, stay torch tensors on the device and go to the decoder as they are; the mattes are
    identical (0 pixels differ)."""
    reference = ZimPredictor(zim_folder(tiny_models), CPU, "onnxruntime-cpu")
    converted = ZimPredictor(zim_folder(tiny_models), CPU, "torch")
    assert isinstance(reference.encoder, OrtGraph) and isinstance(converted.decoder, TorchGraph)
    reference.set_image(IMAGE)
    converted.set_image(IMAGE)
    for name in FEATURES:
        feature = converted.features[name]
        assert isinstance(feature, torch.Tensor) and feature.device == CPU and feature.dtype == torch.float32
        expected = reference.features[name]
        assert isinstance(expected, np.ndarray) and feature.shape == expected.shape
        assert assert_close(feature, expected, 1e-5) < 1e-6  # measured: ≤ 1.2e-7
    fed: list[dict] = []
    run = TorchGraph.run
    monkeypatch.setattr(TorchGraph, "run", lambda self, feeds: fed.append(dict(feeds)) or run(self, feeds))
    masks = converted.box_masks(BOXES, batch=2)
    assert len(fed) == 2 and all(fed[0][name] is converted.features[name] for name in FEATURES)
    expected_masks = reference.box_masks(BOXES, batch=2)
    assert masks.shape == (3, 300, 600) and masks[0].any() and masks[1].any()
    assert np.array_equal(masks, expected_masks)


def test_cuda_provider_that_does_not_load_hands_over_to_torch(
    tiny_models: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime falls back to the CPU with only a log line when its CUDA provider cannot load
    (here: the CPU build, asked for CUDA); the predictor notices and runs the graphs in torch."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu installed: its CUDA provider may load here")
    monkeypatch.setattr(zim, "zim_backend", lambda device: "onnxruntime-cuda")
    predictor = ZimPredictor(zim_folder(tiny_models), CPU)
    assert predictor.backend == "torch" and isinstance(predictor.encoder, TorchGraph)
    assert "CUDA provider did not load" in caplog.text
    forced = ZimPredictor(zim_folder(tiny_models), CPU, "onnxruntime-cuda")  # asked for: kept
    assert forced.backend == "onnxruntime-cuda" and isinstance(forced.encoder, OrtGraph)
    predictor.set_image(IMAGE)
    forced.set_image(IMAGE)
    assert np.array_equal(predictor.box_masks(BOXES), forced.box_masks(BOXES))


def test_torch_backend_feeds_inputs_by_name(tiny_models: Path, tmp_path: Path) -> None:
    """The converted module takes the graph's inputs positionally in their declared order, which
    need not be the order the predictor names them in: the tiny decoder with its inputs declared
    in reverse gives the same mattes as the original through onnxruntime."""
    folder = zim_folder(tiny_models)
    shutil.copy(folder / "encoder.onnx", tmp_path / "encoder.onnx")
    model = onnx.load(str(folder / "decoder.onnx"))
    declared = list(model.graph.input)
    assert [value.name for value in declared] == list(DECODER_INPUTS)
    del model.graph.input[:]
    model.graph.input.extend(reversed(declared))
    onnx.save(model, str(tmp_path / "decoder.onnx"))
    reference = ZimPredictor(folder, CPU, "onnxruntime-cpu")
    converted = ZimPredictor(tmp_path, CPU, "torch")
    assert isinstance(converted.decoder, TorchGraph)
    assert converted.decoder.inputs == list(reversed(DECODER_INPUTS))
    reference.set_image(IMAGE)
    converted.set_image(IMAGE)
    assert np.array_equal(converted.box_masks(BOXES), reference.box_masks(BOXES))


def test_torch_graph_maps_names_to_the_declared_order(tmp_path: Path) -> None:
    """a − 2·b with the inputs declared (b, a) and an initializer listed among the inputs (older
    exporters): feeding by name is the only way to get it right, and unknown names are refused."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["b", "two"], ["b2"]), helper.make_node("Sub", ["a", "b2"], ["y"])],
        "order",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 3]) for name in ("b", "a")]
        + [helper.make_tensor_value_info("two", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    path = tmp_path / "order.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    converted = TorchGraph(path, CPU)
    assert converted.inputs == ["b", "a"]
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.full((2, 3), 10, np.float32)
    (result,) = converted.run({"a": a, "b": b})
    (expected,) = OrtGraph(path, cuda=False).run({"a": a, "b": b})
    assert np.array_equal(result.numpy(), a - 2 * b) and np.array_equal(expected, a - 2 * b)
    with pytest.raises(ValueError, match="not the graph's inputs"):
        converted.run({"a": a, "b": b, "c": b})


def test_torch_graph_returns_outputs_by_position(tiny_models: Path, tmp_path: Path) -> None:
    """onnx2torch returns one result per producing node; outputs that share a node (Split), repeat,
    or pass an input through would shift positions. `number_outputs` gives each its own Identity,
    and leaves graphs that need none (the ZIM twin) alone."""
    graph = helper.make_graph(
        [helper.make_node("Split", ["x", "sizes"], ["s0", "s1"], axis=1), helper.make_node("Neg", ["x"], ["n"])],
        "positions",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("s1", "n", "s0", "n", "x")],
        initializer=[helper.make_tensor("sizes", TensorProto.INT64, [2], [2, 2])],
    )
    path = tmp_path / "positions.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    expected = OrtGraph(path, cuda=False).run({"x": x})
    results = TorchGraph(path, CPU).run({"x": x})
    assert len(results) == len(expected) == 5
    for result, value in zip(results, expected, strict=True):
        assert np.array_equal(result.numpy(), value)
    assert np.array_equal(results[0].numpy(), x[:, 2:]) and np.array_equal(results[4].numpy(), x)
    for name in ("encoder", "decoder"):
        model = onnx.load(str(zim_folder(tiny_models) / f"{name}.onnx"))
        nodes = len(model.graph.node)
        number_outputs(model)
        assert len(model.graph.node) == nodes


def sam_sized_encoder() -> torch.nn.Module:
    """The benchmark's SAM-trunk ZIM encoder shrunk (width 64, 2 blocks, one of them with global
    attention) so it exports and runs in seconds on a CPU; same operators."""
    from worldgen.models.tiny.zim import SamTrunkEncoder

    shrunk = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "global_attn_indexes": [1]}
    encoder = SamTrunkEncoder(**shrunk, output_channels=256, image_size=1024).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in encoder.named_parameters():  # random, nonzero biases and rel-pos tables
            param.copy_(1.0 + 0.02 * torch.randn(param.shape, generator=generator)
                        if "norm" in name and name.endswith("weight")
                        else 0.02 * torch.randn(param.shape, generator=generator))  # fmt: skip
    return encoder


def test_sam_sized_encoder_converts(tiny_models: Path, tmp_path: Path) -> None:
    """The benchmark's ViT-L-sized encoder graph (opset 17, exported as bench/gpu.py does) has no
    operator onnx2torch lacks, and the converted module agrees with onnxruntime: features within
    1e-4 of their scale (measured ≤ 2e-6), identical mattes with the tiny decoder."""
    torch.onnx.export(
        sam_sized_encoder(),
        (torch.zeros(1, 3, 1024, 1024),),
        str(tmp_path / "encoder.onnx"),
        input_names=["image"],
        output_names=list(ENCODER_OUTPUTS),
        opset_version=17,
        dynamo=False,
    )
    shutil.copy(zim_folder(tiny_models) / "decoder.onnx", tmp_path / "decoder.onnx")
    operators = {node.op_type for node in onnx.load(str(tmp_path / "encoder.onnx")).graph.node}
    assert {"Einsum", "Erf", "LayerNormalization", "Pad", "ConvTranspose", "Softmax", "Resize"} <= operators
    reference = ZimPredictor(tmp_path, CPU, "onnxruntime-cpu")
    converted = ZimPredictor(tmp_path, CPU, "torch")
    reference.set_image(IMAGE)
    converted.set_image(IMAGE)
    for name in FEATURES:
        expected = reference.features[name]
        assert isinstance(expected, np.ndarray)
        assert_close(converted.features[name], expected, 1e-4)  # type: ignore[arg-type]
    assert np.array_equal(converted.box_masks(BOXES), reference.box_masks(BOXES))


def test_graphs_are_converted_once_per_file(tiny_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A layered world mattes three times; the ONNX → torch conversion (11.6 s for ViT-L on the GPU
    host) happens once per file, each predictor gets its own module copy, and a changed file is
    converted again."""
    import onnx2torch

    folder = tmp_path / "zim"
    shutil.copytree(zim_folder(tiny_models), folder)
    zim.converted_graph.cache_clear()
    calls: list[object] = []
    convert = onnx2torch.convert
    monkeypatch.setattr(onnx2torch, "convert", lambda model: calls.append(model) or convert(model))
    first, second = ZimPredictor(folder, CPU, "torch"), ZimPredictor(folder, CPU, "torch")
    assert len(calls) == 2  # encoder and decoder, once
    assert isinstance(first.encoder, TorchGraph) and isinstance(second.encoder, TorchGraph)
    assert first.encoder.module is not second.encoder.module
    first.set_image(IMAGE)
    second.set_image(IMAGE)
    assert np.array_equal(first.box_masks(BOXES), second.box_masks(BOXES))
    (folder / "decoder.onnx").write_bytes((folder / "decoder.onnx").read_bytes())  # a new file version
    os.utime(folder / "decoder.onnx", ns=(1, 1))
    ZimPredictor(folder, CPU, "torch")
    assert len(calls) == 3  # only the decoder again
    zim.converted_graph.cache_clear()
