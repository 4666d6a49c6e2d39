"""A tiny ZIM twin: `zim_vit_l_2092/encoder.onnx` and `decoder.onnx` with the published
interface (names, dtypes, shapes), exported from small random-weight torch modules.

Encoder: image (1, 3, 1024, 1024) → image_embeddings (1, 256, 64, 64), feat_D0 (1, 64, 512, 512),
feat_D1 (1, 128, 256, 256), feat_D2 (1, 256, 128, 128). Decoder: those four, attn_mask (B, 64, 64),
point_coords (B, N, 2), point_labels (B, N) → masks (B, 4, 512, 512) logits, iou_predictions (B, 4).
Random weights, but the decoder's mask logits follow the prompt's attention mask, so a box prompt
yields a box-shaped matte and the segmentation post-processing downstream has real masks to work on.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_OUTPUTS = ("image_embeddings", "feat_D0", "feat_D1", "feat_D2")
DECODER_INPUTS = ("feat_D0", "feat_D1", "feat_D2", "image_embeddings", "attn_mask", "point_coords", "point_labels")


class TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 256, 1)
        self.d0, self.d1, self.d2 = nn.Conv2d(3, 64, 1), nn.Conv2d(3, 128, 1), nn.Conv2d(3, 256, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            self.embed(F.avg_pool2d(image, 16)),
            self.d0(F.avg_pool2d(image, 2)),
            self.d1(F.avg_pool2d(image, 4)),
            self.d2(F.avg_pool2d(image, 8)),
        )


class SamTrunkEncoder(nn.Module):
    """ZIM's encoder interface on transformers' SAM vision trunk (`SamVisionConfig` keywords): the
    embeddings, then feat_D2–D0 by transposed convolutions. At SAM ViT-L's size it stands in for the
    published encoder in the GPU benchmark (bench/gpu.py); shrunk, it tests the ONNX → torch path
    on the same operators."""

    def __init__(self, **sam_config: object) -> None:
        from transformers import SamVisionConfig
        from transformers.models.sam.modeling_sam import SamVisionEncoder

        super().__init__()
        self.trunk = SamVisionEncoder(SamVisionConfig(**sam_config))
        self.d2 = nn.ConvTranspose2d(256, 256, 2, stride=2)
        self.d1 = nn.ConvTranspose2d(256, 128, 2, stride=2)
        self.d0 = nn.ConvTranspose2d(128, 64, 2, stride=2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embeddings = self.trunk(image).last_hidden_state
        d2 = self.d2(embeddings)
        d1 = self.d1(d2)
        return embeddings, self.d0(d1), d1, d2


class TinyDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.from_embedding = nn.Conv2d(256, 4, 1)
        self.iou = nn.Linear(4, 4)

    def forward(self, feat_d0, feat_d1, feat_d2, embeddings, attn_mask, point_coords, point_labels):
        batch = attn_mask.shape[0]
        context = feat_d0.mean() + feat_d1.mean() + feat_d2.mean() + point_coords.mean() + point_labels.mean()
        texture = self.from_embedding(embeddings).expand(batch, -1, -1, -1)  # (B, 4, 64, 64)
        prompt = (attn_mask.unsqueeze(1) - 0.5) * 8.0  # the box (or point neighbourhood) is foreground
        logits = F.interpolate(prompt + 0.5 * texture, scale_factor=8.0, mode="bilinear", align_corners=False)
        logits = logits + 1e-6 * context
        iou = torch.sigmoid(self.iou(logits.mean(dim=(2, 3))))
        return logits, iou


def write_zim(folder: Path, generator: torch.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    encoder, decoder = TinyEncoder().eval(), TinyDecoder().eval()
    with torch.no_grad():
        for module in (encoder, decoder):
            for _, param in sorted(module.named_parameters()):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    image = torch.zeros(1, 3, 1024, 1024)
    torch.onnx.export(
        encoder,
        (image,),
        str(folder / "encoder.onnx"),
        input_names=["image"],
        output_names=list(ENCODER_OUTPUTS),
        opset_version=17,
        dynamo=False,
    )
    with torch.no_grad():
        features = encoder(image)
    example = (
        features[1],
        features[2],
        features[3],
        features[0],
        torch.zeros(2, 64, 64),
        torch.zeros(2, 2, 2),
        torch.zeros(2, 2),
    )
    torch.onnx.export(
        decoder,
        example,
        str(folder / "decoder.onnx"),
        input_names=list(DECODER_INPUTS),
        output_names=["masks", "iou_predictions"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={
            "attn_mask": {0: "batch"},
            "point_coords": {0: "batch", 1: "points"},
            "point_labels": {0: "batch", 1: "points"},
            "masks": {0: "batch"},
            "iou_predictions": {0: "batch"},
        },
    )
