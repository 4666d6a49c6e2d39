"""Open-vocabulary detection with Grounding DINO tiny (transformers).

On a GPU the forward pass and its post-processing run under a bf16 autocast: the reference's
LayerDecomposition enters `torch.autocast("cuda", bfloat16)` and never leaves it, so its detector
scores and boxes (and so the 0.3 / 0.35 thresholds) are those of a bf16 forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

BOX_THRESHOLD = 0.3
TEXT_THRESHOLD = 0.3


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (K, 4) float32 x0, y0, x1, y1 in input pixels
    scores: np.ndarray  # (K,) float32
    labels: list[str]
    """The phrase decoded for each box (what the reference writes as the label)."""


class GroundingDino:
    def __init__(self, folder: Path, device: torch.device) -> None:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(folder)
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(folder).to(device).eval()
        self.device = device

    @torch.no_grad()
    def detect(self, image: np.ndarray, labels: list[str]) -> Detections:
        """Boxes for the labels, prompted as "a. b." with box and text thresholds 0.3."""
        text = ". ".join(labels) + "."
        height, width = image.shape[:2]
        inputs = self.processor(images=Image.fromarray(image), text=text, return_tensors="pt").to(self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            outputs = self.model(**inputs)
            result = self.processor.post_process_grounded_object_detection(
                outputs,
                inputs.input_ids,
                threshold=BOX_THRESHOLD,
                text_threshold=TEXT_THRESHOLD,
                target_sizes=[(height, width)],
            )[0]
        return Detections(
            result["boxes"].float().cpu().numpy().reshape(-1, 4),
            result["scores"].float().cpu().numpy(),
            list(result["text_labels"]),
        )

    def release(self) -> None:
        self.model.to("meta")
