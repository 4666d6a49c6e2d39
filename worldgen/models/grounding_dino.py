"""Open-vocabulary detection with Grounding DINO tiny (transformers)."""

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
    boxes: np.ndarray  # (K, 4) x0, y0, x1, y1 in input pixels
    scores: np.ndarray  # (K,)
    labels: list[str]


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
        outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs.input_ids,
            threshold=BOX_THRESHOLD,
            text_threshold=TEXT_THRESHOLD,
            target_sizes=[(height, width)],
        )[0]
        names = [_match_label(raw, labels) for raw in result["text_labels"]]
        return Detections(
            result["boxes"].float().cpu().numpy().reshape(-1, 4), result["scores"].float().cpu().numpy(), names
        )

    def release(self) -> None:
        self.model.to("meta")


def _match_label(raw: str, labels: list[str]) -> str:
    """The requested label a detection's phrase refers to (phrases can carry extra tokens)."""
    phrase = raw.lower().replace("[sep]", "").strip(" .")
    for label in labels:
        if label.lower() in phrase or phrase in label.lower():
            return label
    return phrase or labels[0]
