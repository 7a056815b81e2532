#!/usr/bin/python3
"""Golden tensors for VptSharp's Swin tests, made by torchvision 0.14's SwinTransformer (v1).

Run with Debian's interpreter (python3-torch / python3-torchvision 0.14):
    /usr/bin/python3 tools/make_swin_goldens.py tests/VptSharp.Tests/Golden/swin

1. A tiny random Swin (patch 4, embed 32, depths [2, 2], heads [2, 4], window 4, 5 classes) with every tensor
   perturbed (the relative-position bias tables strongly, so a wrong index or a missing shift mask shows), saved as a
   torchvision .pth and in timm's two Swin layouts (timm >= 0.9: layers.s.downsample opens stage s, head.fc; the
   official Microsoft / older timm layout: layers.s.downsample closes stage s, head, attn_mask buffers). Inputs at 32 px
   (8x8 tokens: four windows, shifted masks in stage 1) and 48 px (12x12, then 6x6 padded to 8x8 in stage 2: padding
   and masks together), with pooled features and logits.
2. VPT on that Swin, written here from the paper's text (Jia et al. 2022, sec. 4.2 "VPT on hierarchical
   Transformers"): the p prompts of a block join every local window of that block (the same p in each window), they
   attend and are attended with no relative-position bias and are never masked (they are not image tokens of the
   shifted layout), and patch merging ignores (drops) them. VPT-deep gives every block its own p prompts at its
   stage's width; VPT-shallow inserts p prompts before block 1 and they travel through stage 1 only. A prompt's output
   of a block is the mean of its per-window outputs (as the reference code, KMnP/vpt, averages them), then its own
   residual + MLP. Pooled features (mean of the final-norm image tokens) for deep and shallow at p = 3 and p = 1.
3. Keys and shapes of the full-size swin_t and swin_b (built from the architecture alone, no weights) in torchvision's
   layout and both timm layouts, for the key-mapping check.
"""
import json
import os
import sys

import golden_io
from golden_io import save_safetensors
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import swin_b, swin_t
from torchvision.models.swin_transformer import SwinTransformer

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/VptSharp.Tests/Golden/swin"
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)
torch.set_num_threads(2)
CLASSES = 5


def save_npy(name, t):
    golden_io.save_npy(OUT, name, t)




def timm_swin(sd, depths, official=False):
    """torchvision Swin names -> timm's (official=False: timm >= 0.9) or the official / older timm layout."""
    out, n = {}, len(depths)
    for k, v in sd.items():
        p = k.split(".")
        if p[0] == "head":
            out[("head." if official else "head.fc.") + p[1]] = v
        elif p[0] == "norm":
            out[k] = v
        elif p[1] == "0":
            out["patch_embed." + {"0": "proj", "2": "norm"}[p[2]] + "." + p[3]] = v
        elif int(p[1]) % 2 == 0:  # merging between stage s-1 and s, features.2s
            s = int(p[1]) // 2
            out[f"layers.{s - 1 if official else s}.downsample.{p[2]}.{p[3]}"] = v
        else:
            s = (int(p[1]) - 1) // 2
            rest = ".".join(p[3:]).replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
            out[f"layers.{s}.blocks.{p[2]}.{rest}"] = v
    return out


def official_masks(model, image, depths, window):
    """The official layout also stores each shifted block's attn_mask buffer [nW, N, N] (0 / -100)."""
    masks, res = {}, image // 4
    for s, d in enumerate(depths):
        for j in range(d):
            if j % 2 == 1 and window < res:
                masks[f"layers.{s}.blocks.{j}.attn_mask"] = shift_mask(res, res, window, window // 2)
        res //= 2
    return masks


def shift_mask(H, W, ws, shift):
    """torchvision's mask of a shifted window layer on an (already padded) H x W map: [nW, N, N] of 0 / -100."""
    m = torch.zeros(H, W)
    count = 0
    for h in ((0, -ws), (-ws, -shift), (-shift, None)):
        for w in ((0, -ws), (-ws, -shift), (-shift, None)):
            m[h[0]:h[1], w[0]:w[1]] = count
            count += 1
    m = m.view(H // ws, ws, W // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    m = m.unsqueeze(1) - m.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def pooled(model, x):
    return model.flatten(model.avgpool(model.permute(model.norm(model.features(x)))))


# ---------------------------------------------------------------- VPT on Swin (reference, from the paper's text)

def prompted_block(blk, x, prompts):
    """One torchvision SwinTransformerBlock on image tokens x [B, H, W, C] with prompts [B, p, C] in every window."""
    attn = blk.attn
    B, H, W, C = x.shape
    p = prompts.shape[1]
    ws = attn.window_size
    heads = attn.num_heads
    xn, pn = blk.norm1(x), blk.norm1(prompts)
    pad_r, pad_b = (ws[1] - W % ws[1]) % ws[1], (ws[0] - H % ws[0]) % ws[0]
    t = F.pad(xn, (0, 0, 0, pad_r, 0, pad_b))
    _, pH, pW, _ = t.shape
    shift = list(attn.shift_size)
    if ws[0] >= pH:
        shift[0] = 0
    if ws[1] >= pW:
        shift[1] = 0
    if sum(shift) > 0:
        t = torch.roll(t, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    nW = (pH // ws[0]) * (pW // ws[1])
    N = ws[0] * ws[1]
    t = t.view(B, pH // ws[0], ws[0], pW // ws[1], ws[1], C).permute(0, 1, 3, 2, 4, 5).reshape(B * nW, N, C)
    # the same p prompts (of the same sample) open every window of that sample
    seq = torch.cat([pn.repeat_interleave(nW, dim=0), t], 1)  # [B*nW, p+N, C]
    qkv = F.linear(seq, attn.qkv.weight, attn.qkv.bias).reshape(B * nW, p + N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (C // heads) ** -0.5, qkv[1], qkv[2]
    logits = q @ k.transpose(-2, -1)  # [B*nW, heads, p+N, p+N]
    bias = attn.get_relative_position_bias()[0]  # [heads, N, N]
    full_bias = torch.zeros(heads, p + N, p + N)
    full_bias[:, p:, p:] = bias  # prompts: no relative position
    logits = logits + full_bias
    if sum(shift) > 0:
        m = torch.zeros(nW, p + N, p + N)
        m[:, p:, p:] = shift_mask(pH, pW, ws[0], shift[0])  # square windows and images
        logits = (logits.view(B, nW, heads, p + N, p + N) + m.unsqueeze(1).unsqueeze(0)).view(B * nW, heads, p + N, p + N)
    o = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B * nW, p + N, C)
    o = F.linear(o, attn.proj.weight, attn.proj.bias)
    prompt_out = o[:, :p].reshape(B, nW, p, C).mean(1)
    img = o[:, p:].reshape(B, pH // ws[0], pW // ws[1], ws[0], ws[1], C).permute(0, 1, 3, 2, 4, 5).reshape(B, pH, pW, C)
    if sum(shift) > 0:
        img = torch.roll(img, shifts=(shift[0], shift[1]), dims=(1, 2))
    img = img[:, :H, :W, :]
    x = x + img
    prompts = prompts + prompt_out
    return x + blk.mlp(blk.norm2(x)), prompts + blk.mlp(blk.norm2(prompts))


def vpt_pooled(model, x, block_prompts):
    """block_prompts[i]: the new prompts [p, C] of block i, or None (the block carries its stage's prompts, if any)."""
    f = model.features
    x = f[0](x)
    i, stages = 0, (len(f) + 1) // 2
    for s in range(stages):
        if s > 0:
            x = f[2 * s](x)  # patch merging sees image tokens only: the prompts are dropped here
        carried = None
        for blk in f[2 * s + 1]:
            new = block_prompts[i]
            P = new.unsqueeze(0).expand(x.shape[0], -1, -1) if new is not None else carried
            if P is None:
                x = blk(x)
            else:
                x, carried = prompted_block(blk, x, P)
            i += 1
    return model.flatten(model.avgpool(model.permute(model.norm(x))))


def xavier_prompts(rows, p, width, patch=4):
    bound = (6.0 / (3 * patch * patch + width)) ** 0.5
    return torch.empty(rows, p, width).uniform_(-bound, bound)


# ---------------------------------------------------------------- tiny Swin

depths, heads, embed, window = [2, 2], [2, 4], 32, 4
model = SwinTransformer(patch_size=[4, 4], embed_dim=embed, depths=depths, num_heads=heads, window_size=[window, window],
                        stochastic_depth_prob=0.1, num_classes=CLASSES)
with torch.no_grad():
    for name, prm in model.named_parameters():
        if name.endswith("relative_position_bias_table"):
            prm.copy_(torch.randn_like(prm))  # strong biases: a wrong index shows
        else:
            prm.add_(torch.randn_like(prm) * 0.1)
model.eval()
sd = model.state_dict()
torch.save(sd, os.path.join(OUT, "swin_tiny.pth"))
save_safetensors(os.path.join(OUT, "swin_tiny_timm.safetensors"), timm_swin(sd, depths))
official = timm_swin(sd, depths, official=True)
official.update(official_masks(model, 32, depths, window))
save_safetensors(os.path.join(OUT, "swin_tiny_official.safetensors"), official)

with torch.no_grad():
    for image in (32, 48):
        x = torch.randn(2, 3, image, image)
        save_npy(f"swin_tiny_input{image}.npy", x)
        save_npy(f"swin_tiny_features{image}.npy", pooled(model, x))
        save_npy(f"swin_tiny_logits{image}.npy", model(x))

    # the reference's own check: with no prompts anywhere, the prompted forward is torchvision's
    x = torch.randn(2, 3, 32, 32)
    assert (vpt_pooled(model, x, [None] * sum(depths)) - pooled(model, x)).abs().max() < 1e-5

    widths = [embed * 2 ** s for s in range(len(depths))]
    for p in (3, 1):
        for image in (32, 48):
            x = torch.from_numpy(np.load(os.path.join(OUT, f"swin_tiny_input{image}.npy")))
            deep = [xavier_prompts(d, p, w) for d, w in zip(depths, widths)]
            if image == 32:
                for s, t in enumerate(deep):
                    save_npy(f"vpt_deep_p{p}_stage{s}.npy", t)
            else:
                deep = [torch.from_numpy(np.load(os.path.join(OUT, f"vpt_deep_p{p}_stage{s}.npy"))) for s in range(len(depths))]
            per_block = [t[j] for t in deep for j in range(t.shape[0])]
            save_npy(f"vpt_deep_p{p}_features{image}.npy", vpt_pooled(model, x, per_block))
            if image == 32:
                shallow = xavier_prompts(1, p, widths[0])
                save_npy(f"vpt_shallow_p{p}_prompts.npy", shallow)
            else:
                shallow = torch.from_numpy(np.load(os.path.join(OUT, f"vpt_shallow_p{p}_prompts.npy")))
            save_npy(f"vpt_shallow_p{p}_features{image}.npy", vpt_pooled(model, x, [shallow[0]] + [None] * (sum(depths) - 1)))

# ---------------------------------------------------------------- full-size key layouts

for name, ctor, d in [("swin_t", swin_t, [2, 2, 6, 2]), ("swin_b", swin_b, [2, 2, 18, 2])]:
    full = ctor().state_dict()
    for suffix, keys in [("", full), ("_timm", timm_swin(full, d)), ("_official", timm_swin(full, d, official=True))]:
        with open(os.path.join(OUT, f"{name}{suffix}_keys.txt"), "w") as f:
            for k, v in keys.items():
                f.write(f"{k} {','.join(str(s) for s in v.shape)}\n")
print("wrote", sorted(os.listdir(OUT)))
