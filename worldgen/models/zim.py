"""ZIM (zero-shot image matting): the published encoder/decoder ONNX pair.

Pre-processing as ZIM's predictor: RGB, longest side resized to 1024, normalised on the 0–255
scale, zero-padded bottom/right to 1024². Box prompts are two corner points labelled 2 and 3 with
an attention mask over the 16-pixel cells the box covers. Single-mask output takes channel 0;
logits are resized to 1024², cropped, resized to the image and thresholded at 0.5 after a sigmoid.
Outputs are read by position, as ZIM's own wrappers unpack them (the published files' output
names are not documented): encoder → image embeddings, feat_D0, feat_D1, feat_D2; decoder → masks,
IoU predictions. Inputs are fed by name, as ZIM does.

Where the graphs run is decided once, by `zim_backend`: on a GPU through onnxruntime's CUDA
provider, or, where the installed onnxruntime has none (the CPU-only build), the same graphs
converted to torch modules by onnx2torch; on any other device through onnxruntime on the CPU.
The reference runs ZIM on the CPU by accident; the SAM ViT-L-sized encoder costs tens of seconds
a world there.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger("worldgen.models")

FRAME = 1024
GRID = 64
CELL = FRAME // GRID
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
FEATURES = ("image_embeddings", "feat_D0", "feat_D1", "feat_D2")
"""The decoder's input names for the encoder's outputs, in the encoder's output order."""

Backend = Literal["onnxruntime-cuda", "torch", "onnxruntime-cpu"]
CUDA_PROVIDER = "CUDAExecutionProvider"


GPU_BYTES_NEEDED = 6 << 30
"""Free device memory below which ZIM stays on the CPU. Measured (H200, 2026-12-03,
bench/zim_memory.py): the ViT-L-sized graphs in torch (fp32, attention unfused as the ONNX graph
has it) on a padded 1920×5760 SR panorama with 16 boxes took 4.37 GiB at the allocator's peak and
4.85 GiB at the driver above what was in use before; 6 GiB leaves a margin. (Before the mattes
were upscaled one box at a time it was 10.5 GiB.) Beside a resident fp8 Fill transformer on a
22.5 GiB card about 8 GiB are free, so ZIM runs on the GPU there too."""


def zim_backend(
    device: torch.device,
    providers: Sequence[str] | None = None,
    onnx2torch: bool | None = None,
    free_bytes: int | None = None,
) -> Backend:
    """Where ZIM runs on `device`, decided here only. A GPU: onnxruntime's CUDA provider if this
    onnxruntime has it (onnxruntime-gpu, as in the image), else the graphs as torch modules (a
    machine with the CPU build of onnxruntime still encodes on the GPU), else, without onnx2torch,
    onnxruntime on the CPU. Any other device, or a GPU with less than GPU_BYTES_NEEDED free at the
    time: onnxruntime on the CPU (slower, but the job fits). `providers` (onnxruntime's available
    providers), `onnx2torch` (importable) and `free_bytes` default to what is installed and free."""
    if device.type != "cuda":
        return "onnxruntime-cpu"
    if free_bytes is None and torch.cuda.is_available():
        from worldgen.models.device import available_gpu_bytes

        free_bytes = available_gpu_bytes(device)
    if free_bytes is not None and free_bytes < GPU_BYTES_NEEDED:
        log.info("ZIM on the CPU: %.1f GiB free on %s", free_bytes / (1 << 30), device)
        return "onnxruntime-cpu"
    if providers is None:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    if CUDA_PROVIDER in providers:
        return "onnxruntime-cuda"
    if onnx2torch is None:
        onnx2torch = onnx2torch_installed()
    return "torch" if onnx2torch else "onnxruntime-cpu"


def onnx2torch_installed() -> bool:
    return importlib.util.find_spec("onnx2torch") is not None


class OrtGraph:
    """An ONNX graph in an onnxruntime session: `run(feeds)` is `session.run(None, feeds)`."""

    def __init__(self, path: Path, cuda: bool) -> None:
        import onnxruntime as ort

        providers = [CUDA_PROVIDER, "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), providers=providers)

    @property
    def on_cuda(self) -> bool:
        """False when the CUDA provider was asked for but did not load (onnxruntime then falls
        back to the CPU with only a logged error, e.g. when cuDNN or cuBLAS is missing)."""
        return CUDA_PROVIDER in self.session.get_providers()

    def run(self, feeds: Mapping[str, Any]) -> list[Any]:
        return list(self.session.run(None, dict(feeds)))


class TorchGraph:
    """An ONNX graph converted to a torch module (onnx2torch), fp32 on `device`, called like an
    onnxruntime session: fed by name, results by position, as tensors that stay on the device
    (the encoder's features go to the decoder without a trip through host memory).

    The converted module takes the graph's inputs positionally in the graph's declared order
    (initializers that are listed as inputs excepted), so names are mapped to that order here."""

    def __init__(self, path: Path, device: torch.device) -> None:
        stat = path.stat()
        inputs, module = converted_graph(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        self.inputs = list(inputs)
        self.module = copy.deepcopy(module).to(device).eval()  # the memoised host copy stays on the host
        self.device = device

    def run(self, feeds: Mapping[str, Any]) -> list[torch.Tensor]:
        if set(feeds) != set(self.inputs):
            raise ValueError(f"feeds {sorted(feeds)} are not the graph's inputs {sorted(self.inputs)}")
        args = [torch.as_tensor(feeds[name], device=self.device).contiguous() for name in self.inputs]
        with torch.inference_mode():
            outputs = self.module(*args)
        return list(outputs) if isinstance(outputs, tuple | list) else [outputs]


@functools.lru_cache(maxsize=4)
def converted_graph(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, ...], torch.nn.Module]:
    """The graph's input names and its torch module on the host, converted once per process for
    a given file (path, modification time, size): converting ZIM's ViT-L encoder took 11.6 s on the
    H200 host, and a layered world mattes three times (fg1, fg2, sky)."""
    import onnx
    from onnx2torch import convert

    model = onnx.load(path)  # a ModelProto, not the path: convert(path) writes beside the file
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = tuple(value.name for value in model.graph.input if value.name not in initializers)
    number_outputs(model)
    return inputs, convert(model).eval()


def number_outputs(model: Any) -> None:
    """Make graph output i the converted module's result i. onnx2torch returns one result per node
    that produces graph outputs, deduplicated: a node with several outputs gives its whole tuple,
    an output listed twice (or two outputs of one node) gives one result, an output that is an
    input or initializer gives none, and positions shift. Where any of that happens, every graph
    output gets its own Identity node (a copy); otherwise the graph is left as it is."""
    import onnx

    producers = {name: index for index, node in enumerate(model.graph.node) for name in node.output}
    nodes = [producers.get(output.name) for output in model.graph.output]
    distinct = None not in nodes and len(set(nodes)) == len(nodes)
    if distinct and all(len(model.graph.node[index].output) == 1 for index in nodes):
        return
    for index, output in enumerate(model.graph.output):
        name = f"worldgen_output_{index}"
        model.graph.node.append(onnx.helper.make_node("Identity", [output.name], [name], name=name))
        output.name = name


class ZimPredictor:
    def __init__(self, folder: Path, device: torch.device, backend: Backend | None = None) -> None:
        """`backend` overrides `zim_backend(device)` (tests run "torch" on the CPU). If the CUDA
        provider was chosen but does not load, the torch modules take over (where onnx2torch is
        installed), with a warning, rather than onnxruntime's silent fallback to the CPU."""
        self.device = device
        self.backend: Backend = backend or zim_backend(device)
        self.encoder: OrtGraph | TorchGraph
        self.decoder: OrtGraph | TorchGraph
        if self.backend != "torch":
            self.encoder = OrtGraph(folder / "encoder.onnx", cuda=self.backend == "onnxruntime-cuda")
            fallback = backend is None and onnx2torch_installed()
            if self.backend == "onnxruntime-cuda" and not self.encoder.on_cuda and fallback:
                log.warning("ZIM: onnxruntime's CUDA provider did not load; running the graphs in torch")
                self.backend = "torch"
        if self.backend == "torch":
            self.encoder = TorchGraph(folder / "encoder.onnx", device)
            self.decoder = TorchGraph(folder / "decoder.onnx", device)
        else:
            self.decoder = OrtGraph(folder / "decoder.onnx", cuda=self.backend == "onnxruntime-cuda")
        self.graph_bytes = sum((folder / name).stat().st_size for name in ("encoder.onnx", "decoder.onnx"))
        self.features: dict[str, np.ndarray | torch.Tensor] = {}
        """Decoder input name → encoder output (matched by position): arrays from onnxruntime,
        device tensors from torch."""
        self.size = (0, 0)
        self.scaled = (0, 0)

    @property
    def resident_bytes(self) -> int | None:
        """What a warm runtime counts for a parked ZIM: onnxruntime's sessions hold about their
        files' size; torch modules (None here) are counted by the runtime itself."""
        return None if self.backend == "torch" else self.graph_bytes

    def forget_inputs(self) -> None:
        """Drop the last image's features (called when a warm runtime parks this predictor)."""
        self.features = {}

    def set_image(self, image: np.ndarray) -> None:
        """Encode an RGB uint8 image (H, W, 3) once for any number of prompts."""
        height, width = image.shape[:2]
        scale = FRAME / max(height, width)
        new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
        resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR), np.float32)
        canvas = np.zeros((FRAME, FRAME, 3), np.float32)
        canvas[:new_h, :new_w] = (resized - MEAN) / STD
        outputs = self.encoder.run({"image": canvas.transpose(2, 0, 1)[None]})
        self.features = dict(zip(FEATURES, outputs, strict=True))
        self.size, self.scaled = (height, width), (new_h, new_w)

    def box_masks(self, boxes: np.ndarray, batch: int = 16) -> np.ndarray:
        """Boolean mattes (K, H, W) for boxes (K, 4) = x0, y0, x1, y1 in image pixels."""
        height, width = self.size
        new_h, new_w = self.scaled
        scaled = frame_boxes(boxes, self.size, self.scaled)
        masks = np.zeros((len(scaled), height, width), bool)
        for start in range(0, len(scaled), batch):
            chunk = scaled[start : start + batch]
            feeds: dict[str, Any] = dict(self.features)
            feeds["attn_mask"] = box_attention(chunk)
            feeds["point_coords"] = chunk.reshape(-1, 2, 2)
            feeds["point_labels"] = np.tile(np.array([[2, 3]], np.float32), (len(chunk), 1))
            logits = torch.as_tensor(self.decoder.run(feeds)[0][:, :1], device=self.device)
            logits = F.interpolate(logits, (FRAME, FRAME), mode="bilinear", align_corners=False)
            logits = logits[..., :new_h, :new_w]
            # One box at a time to full size: 16 boxes on a padded 1920×5760 SR panorama are
            # 0.7 GB per float tensor, several alive at once; one box is 44 MB.
            for index in range(len(chunk)):
                full = F.interpolate(logits[index : index + 1], (height, width), mode="bilinear", align_corners=False)
                masks[start + index] = (torch.sigmoid(full[0, 0]) > 0.5).cpu().numpy()
        return masks


def frame_boxes(boxes: np.ndarray, size: tuple[int, int], scaled: tuple[int, int]) -> np.ndarray:
    """Boxes (K, 4) in image pixels → the 1024 frame, scaled in float64 and stored as float32 like
    ZIM's `apply_boxes` + `torch.as_tensor(..., dtype=float)` (float32 arithmetic differs by an ulp)."""
    (height, width), (new_h, new_w) = size, scaled
    scale = np.array([new_w / width, new_h / height, new_w / width, new_h / height])
    return (np.asarray(boxes, np.float64).reshape(-1, 4) * scale).astype(np.float32)


def box_attention(boxes: np.ndarray) -> np.ndarray:
    """(K, 64, 64) attention masks: 1 over the cells a box (in the 1024 frame) covers. Cells come
    from int() truncation toward zero, as ZIM's `bbox_attn_mask` (not floor: a corner in (-16, 0)
    is cell 0)."""
    low = np.trunc(np.minimum(boxes[:, :2], boxes[:, 2:]) / CELL).astype(int).clip(0, GRID)
    high = np.minimum(GRID, np.trunc(np.maximum(boxes[:, :2], boxes[:, 2:]) / CELL).astype(int) + 1)
    cells = np.arange(GRID)
    inside_x = (cells[None, :] >= low[:, :1]) & (cells[None, :] < high[:, :1])
    inside_y = (cells[None, :] >= low[:, 1:2]) & (cells[None, :] < high[:, 1:2])
    return (inside_y[:, :, None] & inside_x[:, None, :]).astype(np.float32)
