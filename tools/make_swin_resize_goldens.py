#!/usr/bin/python3
"""Golden tensors for loading a Swin at another image size and window (the paper's Table 11: Swin-B at 384 px).

Run with Debian's interpreter (python3-torch / python3-torchvision 0.14), after tools/make_swin_goldens.py:
    /usr/bin/python3 tools/make_swin_resize_goldens.py tests/VptSharp.Tests/Golden/swin

Source checkpoint: swin_tiny.pth of make_swin_goldens.py (torchvision 0.14 SwinTransformer: patch 4, width 32, depths
[2, 2], heads [2, 4], window 4, made for 32 px). Written here:
1. Same window, larger image: the same model at 64 px (16x16 then 8x8 tokens: shifted windows in both stages).
2. Another window: a torchvision Swin built with window 6 (48 px: 12x12 tokens in 2x2 shifted windows, then 6x6 in one
   unshifted window, as Swin-B 384/window 12's last stage) and window 8 (64 px), loaded from swin_tiny.pth with every
   relative_position_bias_table [(2*4-1)^2, heads] resized as the official Swin's load_pretrained does
   (microsoft/Swin-Transformer utils.py): per head, the (2W-1)x(2W-1) grid -> F.interpolate(mode='bicubic',
   align_corners=False) -> (2W'-1)x(2W'-1); relative_position_index comes from the new model (torchvision recomputes it
   for its window). Pooled features (the mean of the final-norm tokens) of the resized models, and one resized table.
   (timm >= 0.9's swin checkpoint_filter_fn uses a different resampler - BEiT's geometric-progression grid - so its
   numbers differ from these; VptSharp follows the official rule.)
"""
import os
import sys

import golden_io
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.swin_transformer import SwinTransformer

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/VptSharp.Tests/Golden/swin"
torch.manual_seed(1)
torch.set_num_threads(2)
DEPTHS, HEADS, EMBED = [2, 2], [2, 4], 32


def build(window):
    m = SwinTransformer(patch_size=[4, 4], embed_dim=EMBED, depths=DEPTHS, num_heads=HEADS, window_size=[window, window],
                        stochastic_depth_prob=0.1, num_classes=5)
    return m.eval()


def resize_table(table, window):
    """[(2W-1)^2, heads] -> [(2W'-1)^2, heads]: bicubic per head (the official Swin's load_pretrained)."""
    rows, heads = table.shape
    s1, s2 = int(round(rows ** 0.5)), 2 * window - 1
    if s1 == s2:
        return table
    grid = table.permute(1, 0).reshape(1, heads, s1, s1)
    return F.interpolate(grid, size=(s2, s2), mode="bicubic", align_corners=False).reshape(heads, s2 * s2).permute(1, 0)


def pooled(model, x):
    return model.flatten(model.avgpool(model.permute(model.norm(model.features(x)))))


sd = torch.load(os.path.join(OUT, "swin_tiny.pth"))
with torch.no_grad():
    src = build(4)
    src.load_state_dict(sd)
    x64 = torch.randn(2, 3, 64, 64)
    golden_io.save_npy(OUT, "resize_input64.npy", x64)
    golden_io.save_npy(OUT, "resize_w4_features64.npy", pooled(src, x64))

    x48 = torch.from_numpy(np.load(os.path.join(OUT, "swin_tiny_input48.npy")))
    for window, x, image in ((6, x48, 48), (8, x64, 64)):
        model = build(window)
        new = model.state_dict()
        for k in new:
            if k.endswith("relative_position_index"):
                continue  # derived from the new window
            v = sd[k]
            if k.endswith("relative_position_bias_table"):
                v = resize_table(v, window)
                assert v.shape == new[k].shape, (k, v.shape, new[k].shape)
            new[k] = v
        model.load_state_dict(new)
        golden_io.save_npy(OUT, f"resize_w{window}_features{image}.npy", pooled(model, x))
        golden_io.save_npy(OUT, f"resize_w{window}_table_features.1.1.npy", new["features.1.1.attn.relative_position_bias_table"])
print("wrote", sorted(f for f in os.listdir(OUT) if f.startswith("resize_")))
