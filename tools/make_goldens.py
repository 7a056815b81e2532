#!/usr/bin/python3
"""Golden tensors for VptSharp's parity tests, made by the reference implementation (PyTorch + torchvision).

Run with Debian's interpreter (it has python3-torch / python3-torchvision):
    /usr/bin/python3 tools/make_goldens.py tests/VptSharp.Tests/Golden

It builds a small torchvision VisionTransformer with seeded random weights (every tensor perturbed, so no zero
head or CLS token hides a mapping bug), saves it in three layouts (torchvision .pth, timm safetensors, Google .npz),
and records inputs and outputs: final-LayerNorm CLS features, logits, features at a resized image size, and
VPT-shallow / VPT-deep logits from a from-the-paper reference implementation of VPT written below.
"""
import json
import os
import sys

import golden_io
from golden_io import save_safetensors
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/VptSharp.Tests/Golden"
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)
torch.set_num_threads(2)

IMAGE, PATCH, LAYERS, HEADS, WIDTH, MLP, CLASSES = 32, 8, 2, 2, 32, 64, 5


def save_npy(name, t):
    golden_io.save_npy(OUT, name, t)




def make_model(image_size):
    return VisionTransformer(image_size=image_size, patch_size=PATCH, num_layers=LAYERS, num_heads=HEADS,
                             hidden_dim=WIDTH, mlp_dim=MLP, num_classes=CLASSES).eval()


model = make_model(IMAGE)
with torch.no_grad():
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.05)
sd = model.state_dict()
torch.save(sd, os.path.join(OUT, "vit_torchvision.pth"))

# timm / Hugging Face names.
timm = {"cls_token": sd["class_token"], "pos_embed": sd["encoder.pos_embedding"],
        "patch_embed.proj.weight": sd["conv_proj.weight"], "patch_embed.proj.bias": sd["conv_proj.bias"],
        "norm.weight": sd["encoder.ln.weight"], "norm.bias": sd["encoder.ln.bias"],
        "head.weight": sd["heads.head.weight"], "head.bias": sd["heads.head.bias"]}
for i in range(LAYERS):
    p = f"encoder.layers.encoder_layer_{i}."
    b = f"blocks.{i}."
    for src, dst in [("ln_1", "norm1"), ("ln_2", "norm2"), ("self_attention.out_proj", "attn.proj"),
                     ("mlp.0", "mlp.fc1"), ("mlp.3", "mlp.fc2")]:
        timm[b + dst + ".weight"] = sd[p + src + ".weight"]
        timm[b + dst + ".bias"] = sd[p + src + ".bias"]
    timm[b + "attn.qkv.weight"] = sd[p + "self_attention.in_proj_weight"]
    timm[b + "attn.qkv.bias"] = sd[p + "self_attention.in_proj_bias"]
os.makedirs(os.path.join(OUT, "timm_vit"), exist_ok=True)
save_safetensors(os.path.join(OUT, "timm_vit", "model.safetensors"), timm)
with open(os.path.join(OUT, "timm_vit", "config.json"), "w") as f:
    json.dump({"architecture": "vit_tiny_patch8_32", "num_classes": CLASSES,
               "model_args": {"img_size": IMAGE, "patch_size": PATCH, "embed_dim": WIDTH, "depth": LAYERS,
                              "num_heads": HEADS, "mlp_ratio": MLP / WIDTH}}, f)

# Google (vit_jax) .npz layout.
npz = {"embedding/kernel": timm["patch_embed.proj.weight"].permute(2, 3, 1, 0),
       "embedding/bias": timm["patch_embed.proj.bias"], "cls": timm["cls_token"],
       "Transformer/posembed_input/pos_embedding": timm["pos_embed"],
       "Transformer/encoder_norm/scale": timm["norm.weight"], "Transformer/encoder_norm/bias": timm["norm.bias"],
       "head/kernel": timm["head.weight"].t(), "head/bias": timm["head.bias"]}
hd = WIDTH // HEADS
for i in range(LAYERS):
    b, p = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
    a = p + "MultiHeadDotProductAttention_1/"
    npz[p + "LayerNorm_0/scale"], npz[p + "LayerNorm_0/bias"] = timm[b + "norm1.weight"], timm[b + "norm1.bias"]
    npz[p + "LayerNorm_2/scale"], npz[p + "LayerNorm_2/bias"] = timm[b + "norm2.weight"], timm[b + "norm2.bias"]
    w, bias = timm[b + "attn.qkv.weight"], timm[b + "attn.qkv.bias"]
    for j, n in enumerate(["query", "key", "value"]):
        npz[a + n + "/kernel"] = w[j * WIDTH:(j + 1) * WIDTH].t().reshape(WIDTH, HEADS, hd)
        npz[a + n + "/bias"] = bias[j * WIDTH:(j + 1) * WIDTH].reshape(HEADS, hd)
    npz[a + "out/kernel"] = timm[b + "attn.proj.weight"].t().reshape(HEADS, hd, WIDTH)
    npz[a + "out/bias"] = timm[b + "attn.proj.bias"]
    npz[p + "MlpBlock_3/Dense_0/kernel"], npz[p + "MlpBlock_3/Dense_0/bias"] = timm[b + "mlp.fc1.weight"].t(), timm[b + "mlp.fc1.bias"]
    npz[p + "MlpBlock_3/Dense_1/kernel"], npz[p + "MlpBlock_3/Dense_1/bias"] = timm[b + "mlp.fc2.weight"].t(), timm[b + "mlp.fc2.bias"]
np.savez(os.path.join(OUT, "vit_google.npz"), **{k: v.detach().numpy().astype(np.float32) for k, v in npz.items()})

# Reference outputs.
x = torch.randn(3, 3, IMAGE, IMAGE)
save_npy("input.npy", x)
with torch.no_grad():
    tokens = model.encoder(torch.cat([model.class_token.expand(3, -1, -1), model._process_input(x)], 1))
    cls = tokens[:, 0]
    save_npy("cls.npy", cls)
    save_npy("logits.npy", model.heads(cls))

# Position-embedding resize to 48 px (grid 4 → 6): bicubic, align_corners=False, CLS position kept.
BIG = 48
with torch.no_grad():
    pos = sd["encoder.pos_embedding"]
    g = IMAGE // PATCH
    grid = pos[:, 1:].reshape(1, g, g, WIDTH).permute(0, 3, 1, 2)
    ng = BIG // PATCH
    grid = F.interpolate(grid, size=(ng, ng), mode="bicubic", align_corners=False)
    big = make_model(BIG)
    sd_big = dict(sd)
    sd_big["encoder.pos_embedding"] = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, ng * ng, WIDTH)], 1)
    big.load_state_dict(sd_big)
    xb = torch.randn(2, 3, BIG, BIG)
    save_npy("input48.npy", xb)
    tb = big.encoder(torch.cat([big.class_token.expand(2, -1, -1), big._process_input(xb)], 1))
    save_npy("cls48.npy", tb[:, 0])


# VPT reference, written from the paper (Jia et al. 2022, §3.2): prompts after CLS, after the position embedding;
# shallow: inserted before layer 1 only; deep: each layer's prompts replace the previous layer's prompt outputs.
P = 3
prompts = (torch.rand(LAYERS, P, WIDTH) * 2 - 1) * 0.5
head_w, head_b = torch.randn(CLASSES, WIDTH) * 0.1, torch.randn(CLASSES) * 0.1
save_npy("vpt_prompts.npy", prompts)
save_npy("vpt_head_w.npy", head_w)
save_npy("vpt_head_b.npy", head_b)


def vpt_forward(images, deep, pool="cls", blocks=None):
    """blocks: the 0-based layers that get prompts (deep); the first of them inserts, the others replace."""
    n = images.shape[0]
    blocks = blocks if blocks is not None else (list(range(LAYERS)) if deep else [0])
    h = torch.cat([model.class_token.expand(n, -1, -1), model._process_input(images)], 1) + model.encoder.pos_embedding
    for i, layer in enumerate(model.encoder.layers):
        if i == blocks[0]:
            h = torch.cat([h[:, :1], prompts[i].expand(n, -1, -1), h[:, 1:]], 1)
        elif i in blocks:
            h = torch.cat([h[:, :1], prompts[i].expand(n, -1, -1), h[:, 1 + P:]], 1)
        h = layer(h)
    h = model.encoder.ln(h)
    feature = h[:, 1 + P:].mean(1) if pool == "image" else h[:, 0]
    return F.linear(feature, head_w, head_b)


with torch.no_grad():
    save_npy("vpt_deep_logits.npy", vpt_forward(x, deep=True))
    save_npy("vpt_shallow_logits.npy", vpt_forward(x, deep=False))
    save_npy("vpt_deep_imagepool_logits.npy", vpt_forward(x, deep=True, pool="image"))
    save_npy("vpt_deep_block2only_logits.npy", vpt_forward(x, deep=True, blocks=[1]))


# Adapter and Bias baselines (paper §4.1), written from their definitions. Forward with non-zero adapter weights, then
# one plain SGD step (lr 0.1) on cross-entropy, so the test checks gradients as well as the forward pass.
R = 4
BOTTLENECK = WIDTH // R
adapter = {"down_w": torch.randn(LAYERS, BOTTLENECK, WIDTH) * 0.2, "down_b": torch.randn(LAYERS, BOTTLENECK) * 0.1,
           "up_w": torch.randn(LAYERS, WIDTH, BOTTLENECK) * 0.2, "up_b": torch.randn(LAYERS, WIDTH) * 0.1}
for k, v in adapter.items():
    save_npy(f"adapter_{k}.npy", v)
labels = torch.tensor([0, 1, 2])
save_npy("step_labels.npy", labels.float())
LR = 0.1


def block_forward(layer, x, i, ad=None):
    """torchvision's pre-norm EncoderBlock, spelled out so the adapter can sit on the MLP output before the residual."""
    y = layer.ln_1(x)
    y, _ = layer.self_attention(y, y, y, need_weights=False)
    x = x + y
    z = layer.mlp(layer.ln_2(x))
    if ad is not None:  # Pfeiffer placement: z + up(gelu(down(z)))
        z = z + F.linear(F.gelu(F.linear(z, ad["down_w"][i], ad["down_b"][i])), ad["up_w"][i], ad["up_b"][i])
    return x + z


def baseline_forward(m, images, hw, hb, ad=None):
    h = torch.cat([m.class_token.expand(images.shape[0], -1, -1), m._process_input(images)], 1) + m.encoder.pos_embedding
    for i, layer in enumerate(m.encoder.layers):
        h = block_forward(layer, h, i, ad)
    return F.linear(m.encoder.ln(h)[:, 0], hw, hb)


with torch.no_grad():
    plain = baseline_forward(model, x, head_w, head_b)
    ref = F.linear(model.encoder(torch.cat([model.class_token.expand(3, -1, -1), model._process_input(x)], 1))[:, 0], head_w, head_b)
    assert (plain - ref).abs().max() < 1e-5, "spelled-out block differs from torchvision's"
    save_npy("adapter_logits.npy", baseline_forward(model, x, head_w, head_b, adapter))


def one_sgd_step(params, forward):
    loss = F.cross_entropy(forward(), labels)
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p_, g in zip(params, grads):
            p_.sub_(LR * g)


# Adapter: adapter tensors + head train.
ad = {k: v.clone().requires_grad_(True) for k, v in adapter.items()}
hw, hb = head_w.clone().requires_grad_(True), head_b.clone().requires_grad_(True)
one_sgd_step(list(ad.values()) + [hw, hb], lambda: baseline_forward(model, x, hw, hb, ad))
with torch.no_grad():
    save_npy("adapter_step_logits.npy", baseline_forward(model, x, hw, hb, ad))

# Bias: every bias of the backbone (patch embedding, LayerNorms, attention in/out, MLP, final norm) + head train.
bias_model = make_model(IMAGE)
bias_model.load_state_dict(sd)
for p_ in bias_model.parameters():
    p_.requires_grad_(False)
biases = [p_ for n, p_ in bias_model.named_parameters() if n.endswith("bias") and not n.startswith("heads")]
assert len(biases) == 1 + 6 * LAYERS + 1  # conv_proj; ln_1, in_proj, out_proj, ln_2, mlp.0, mlp.3; encoder.ln
for p_ in biases:
    p_.requires_grad_(True)
hw, hb = head_w.clone().requires_grad_(True), head_b.clone().requires_grad_(True)
one_sgd_step(biases + [hw, hb], lambda: baseline_forward(bias_model, x, hw, hb))
with torch.no_grad():
    save_npy("bias_step_logits.npy", baseline_forward(bias_model, x, hw, hb))
print("torch", torch.__version__, "goldens written to", OUT)
