#!/usr/bin/python3
"""Golden tensors for the segmentation parity tests (SETR-PUP decoder + sliding-window inference), PyTorch reference.

Run with Debian's interpreter after tools/make_goldens.py (it reads that script's tiny torchvision ViT and VPT prompts):
    /usr/bin/python3 tools/make_seg_goldens.py tests/VptSharp.Tests/Golden

The PUP head follows mmseg's SETRUPHead (SETR, Zheng et al., CVPR 2021): LayerNorm over the patch tokens, reshape to a
[d, h, w] map, stages of conv3x3 (no bias) + BatchNorm + ReLU + x2 bilinear (align_corners=False), conv1x1 classifier.
The sliding window follows mmseg's EncoderDecoder.slide_inference; images smaller than the crop are zero-padded at the
bottom/right first (a ViT takes one input size). Test-time augmentation averages softmax over scales x flips.
Written from those descriptions; nothing here is copied from mmseg.
"""
import os
import sys

import golden_io
from golden_io import save_safetensors
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer

GOLDEN = sys.argv[1] if len(sys.argv) > 1 else "tests/VptSharp.Tests/Golden"
OUT = os.path.join(GOLDEN, "seg")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(15)
torch.set_num_threads(2)

IMAGE, PATCH, LAYERS, HEADS, WIDTH, MLP = 32, 8, 2, 2, 32, 64  # as tools/make_goldens.py
CLASSES, CHANNELS, STAGES = 4, 16, 3  # 3 stages of x2: 4x4 grid -> 32x32
CROP, STRIDE = 32, 20

vit = VisionTransformer(image_size=IMAGE, patch_size=PATCH, num_layers=LAYERS, num_heads=HEADS,
                        hidden_dim=WIDTH, mlp_dim=MLP, num_classes=5).eval()
vit.load_state_dict(torch.load(os.path.join(GOLDEN, "vit_torchvision.pth")))
prompts = torch.from_numpy(np.load(os.path.join(GOLDEN, "vpt_prompts.npy")))  # [LAYERS, P, WIDTH]
P = prompts.shape[1]


def save_npy(name, t):
    golden_io.save_npy(OUT, name, t)




class Stage(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.interpolate(F.relu(self.bn(self.conv(x))), scale_factor=2, mode="bilinear", align_corners=False)


class Pup(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH, eps=1e-6)
        self.stages = nn.ModuleList([Stage(WIDTH if i == 0 else CHANNELS, CHANNELS) for i in range(STAGES)])
        self.cls = nn.Conv2d(CHANNELS, CLASSES, 1)

    def forward(self, tokens, g, out):
        b, n, d = tokens.shape
        x = self.norm(tokens).transpose(1, 2).reshape(b, d, g, g)
        for s in self.stages:
            x = s(x)
        x = self.cls(x)
        if x.shape[-2:] != out:
            x = F.interpolate(x, size=out, mode="bilinear", align_corners=False)
        return x


pup = Pup().eval()
with torch.no_grad():
    for name, t in pup.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if name.endswith("running_var"):
            t.copy_(torch.rand_like(t) * 0.5 + 0.75)
        else:
            t.add_(torch.randn_like(t) * 0.1)
save_safetensors(os.path.join(OUT, "pup.safetensors"),
                 {k: v for k, v in pup.state_dict().items() if not k.endswith("num_batches_tracked")})


def encode(crops, deep_prompts=None):
    """Final-norm image-patch tokens [B, N, d] of the torchvision ViT; with prompts, VPT-deep (paper §3.2)."""
    x = torch.cat([vit.class_token.expand(crops.shape[0], -1, -1), vit._process_input(crops)], 1)
    if deep_prompts is None:
        return vit.encoder(x)[:, 1:]
    x = x + vit.encoder.pos_embedding
    for i, layer in enumerate(vit.encoder.layers):
        rest = x[:, 1:] if i == 0 else x[:, 1 + P:]
        x = layer(torch.cat([x[:, :1], deep_prompts[i].expand(x.shape[0], -1, -1), rest], 1))
    return vit.encoder.ln(x)[:, 1 + P:]


def crop_logits(crops, deep_prompts=None):
    return pup(encode(crops, deep_prompts), IMAGE // PATCH, (CROP, CROP))


def slide(img, deep_prompts=None):
    b, _, h, w = img.shape
    ph, pw = max(h, CROP), max(w, CROP)
    x = F.pad(img, (0, pw - w, 0, ph - h))
    rows = max(ph - CROP + STRIDE - 1, 0) // STRIDE + 1
    cols = max(pw - CROP + STRIDE - 1, 0) // STRIDE + 1
    preds = x.new_zeros((b, CLASSES, ph, pw))
    count = x.new_zeros((b, 1, ph, pw))
    for r in range(rows):
        for c in range(cols):
            y1, x1 = r * STRIDE, c * STRIDE
            y2, x2 = min(y1 + CROP, ph), min(x1 + CROP, pw)
            y1, x1 = max(y2 - CROP, 0), max(x2 - CROP, 0)
            logit = crop_logits(x[:, :, y1:y2, x1:x2], deep_prompts)
            preds += F.pad(logit, (x1, pw - x2, y1, ph - y2))
            count[:, :, y1:y2, x1:x2] += 1
    return (preds / count)[:, :, :h, :w]


def tta(img, scales, flip):
    h, w = img.shape[-2:]
    total, n = 0, 0
    for s in scales:
        size = (max(1, int(round(h * s))), max(1, int(round(w * s))))
        scaled = img if size == (h, w) else F.interpolate(img, size=size, mode="bilinear", align_corners=False)
        for f in ([False, True] if flip else [False]):
            inp = scaled.flip(3) if f else scaled
            logit = slide(inp)
            if f:
                logit = logit.flip(3)
            if size != (h, w):
                logit = F.interpolate(logit, size=(h, w), mode="bilinear", align_corners=False)
            total = total + F.softmax(logit, 1)
            n += 1
    return total / n


with torch.no_grad():
    big = torch.randn(2, 3, 44, 40)     # 2x2 overlapping windows
    small = torch.randn(1, 3, 24, 40)   # shorter than the crop: padded rows
    save_npy("input_big.npy", big)
    save_npy("input_small.npy", small)
    save_npy("crop_logits.npy", crop_logits(big[:, :, :CROP, :CROP]))
    save_npy("slide_big.npy", slide(big))
    save_npy("slide_small.npy", slide(small))
    save_npy("slide_big_vpt_deep.npy", slide(big, prompts))
    save_npy("tta_big.npy", tta(big, [0.75, 1.25], True))
print("wrote", sorted(os.listdir(OUT)))
