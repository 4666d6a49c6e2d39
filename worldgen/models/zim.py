"""ZIM (zero-shot image matting) through onnxruntime: the published encoder/decoder ONNX pair.

Pre-processing as ZIM's predictor: RGB, longest side resized to 1024, normalised on the 0–255
scale, zero-padded bottom/right to 1024². Box prompts are two corner points labelled 2 and 3 with
an attention mask over the 16-pixel cells the box covers. Single-mask output takes channel 0;
logits are resized to 1024², cropped, resized to the image and thresholded at 0.5 after a sigmoid.
Outputs are read by position, as ZIM's own wrappers unpack them (the published files' output
names are not documented): encoder → image embeddings, feat_D0, feat_D1, feat_D2; decoder → masks,
IoU predictions. Inputs are fed by name, as ZIM does.
The CUDA provider is used when the device is a GPU (the reference stays on the CPU by accident).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

FRAME = 1024
GRID = 64
CELL = FRAME // GRID
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
FEATURES = ("image_embeddings", "feat_D0", "feat_D1", "feat_D2")
"""The decoder's input names for the encoder's outputs, in the encoder's output order."""


def providers(device: torch.device) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class ZimPredictor:
    def __init__(self, folder: Path, device: torch.device) -> None:
        import onnxruntime as ort

        chosen = providers(device)
        self.device = device
        self.encoder = ort.InferenceSession(str(folder / "encoder.onnx"), providers=chosen)
        self.decoder = ort.InferenceSession(str(folder / "decoder.onnx"), providers=chosen)
        self.features: dict[str, np.ndarray] = {}
        """Decoder input name → encoder output (matched by position)."""
        self.size = (0, 0)
        self.scaled = (0, 0)

    def set_image(self, image: np.ndarray) -> None:
        """Encode an RGB uint8 image (H, W, 3) once for any number of prompts."""
        height, width = image.shape[:2]
        scale = FRAME / max(height, width)
        new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
        resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR), np.float32)
        canvas = np.zeros((FRAME, FRAME, 3), np.float32)
        canvas[:new_h, :new_w] = (resized - MEAN) / STD
        outputs = self.encoder.run(None, {"image": canvas.transpose(2, 0, 1)[None]})
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
            feeds = dict(self.features)
            feeds["attn_mask"] = box_attention(chunk)
            feeds["point_coords"] = chunk.reshape(-1, 2, 2)
            feeds["point_labels"] = np.tile(np.array([[2, 3]], np.float32), (len(chunk), 1))
            logits = torch.from_numpy(self.decoder.run(None, feeds)[0][:, :1]).to(self.device)
            logits = F.interpolate(logits, (FRAME, FRAME), mode="bilinear", align_corners=False)
            logits = logits[..., :new_h, :new_w]
            logits = F.interpolate(logits, (height, width), mode="bilinear", align_corners=False)
            masks[start : start + len(chunk)] = (torch.sigmoid(logits[:, 0]) > 0.5).cpu().numpy()
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
