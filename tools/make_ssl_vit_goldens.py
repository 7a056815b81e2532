#!/usr/bin/python3
"""Golden checkpoints of the self-supervised ViTs of the paper's Table 4 (MAE, MoCo v3) in their published key layouts,
made from torchvision 0.14's VisionTransformer (the same math as timm's ViT: pre-norm, LayerNorm eps 1e-6, exact GELU,
packed [q; k; v] projection).

Run with Debian's interpreter (python3-torch / python3-torchvision 0.14):
    /usr/bin/python3 tools/make_ssl_vit_goldens.py tests/VptSharp.Tests/Golden/ssl

A tiny random ViT (32 px, patch 8, width 32, depth 2, 2 heads, MLP 64), every tensor perturbed, written as:
- mocov3_vit_tiny.pth.tar: MoCo v3's pretraining checkpoint ({"epoch", "arch", "state_dict"}): the encoder under
  "module.base_encoder." with its projection MLP as "head.*" (Linear, BatchNorm1d, ReLU, Linear), the momentum encoder
  under "module.momentum_encoder." and the predictor under "module.predictor.". The classifier input is the final-norm
  CLS token (MoCo v3's ViT is timm's with global_pool="token").
- mae_pretrain_vit_tiny.pth: MAE's pretraining checkpoint ({"model"}): encoder keys (cls_token, pos_embed, patch_embed,
  blocks, norm), mask_token and the decoder (decoder_embed, decoder_pos_embed, decoder_blocks, decoder_norm,
  decoder_pred). The reference (MAE's models_vit.py with global_pool=True, used by KMnP/vpt) deletes the encoder norm,
  and loads this file with strict=False: fc_norm stays at its init (weight 1, bias 0) and the head input is
  fc_norm(mean of the tokens after CLS).
- mae_finetuned_vit_tiny.pth: an MAE fine-tuned checkpoint ({"model"}): encoder keys, fc_norm and head, no norm.
- VPT-deep (p = 3) on the fine-tuned MAE as the reference does it (vit_prompt/vit_mae.py, pool type "original"):
  prompts after CLS, replaced before every block, head input fc_norm(mean of every token after CLS, prompts included).
Each with an input and the pooled features.
"""
import os
import sys

import golden_io
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/VptSharp.Tests/Golden/ssl"
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)
torch.set_num_threads(2)
IMAGE, PATCH, WIDTH, DEPTH, HEADS, MLP = 32, 8, 32, 2, 2, 64


def save_npy(name, t):
    golden_io.save_npy(OUT, name, t)


def tiny_vit():
    m = VisionTransformer(image_size=IMAGE, patch_size=PATCH, num_layers=DEPTH, num_heads=HEADS, hidden_dim=WIDTH, mlp_dim=MLP, num_classes=5)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m.eval()


def timm_names(m):
    """torchvision ViT state dict -> timm's names (what MAE and MoCo v3 save)."""
    out = {}
    for k, v in m.state_dict().items():
        if k.startswith("encoder.layers.encoder_layer_"):
            i, rest = k[len("encoder.layers.encoder_layer_"):].split(".", 1)
            rest = (rest.replace("ln_1.", "norm1.").replace("ln_2.", "norm2.")
                    .replace("self_attention.in_proj_weight", "attn.qkv.weight").replace("self_attention.in_proj_bias", "attn.qkv.bias")
                    .replace("self_attention.out_proj.", "attn.proj.").replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2."))
            out[f"blocks.{i}.{rest}"] = v
        else:
            out[{"class_token": "cls_token", "encoder.pos_embedding": "pos_embed", "conv_proj.weight": "patch_embed.proj.weight",
                 "conv_proj.bias": "patch_embed.proj.bias", "encoder.ln.weight": "norm.weight", "encoder.ln.bias": "norm.bias",
                 "heads.head.weight": "head.weight", "heads.head.bias": "head.bias"}[k]] = v
    return out


def tokens_after_blocks(m, x, deep_prompts=None):
    """Embedding + blocks, no final norm; deep_prompts [depth, p, d] are inserted after CLS before every block."""
    t = m._process_input(x)
    t = torch.cat([m.class_token.expand(x.shape[0], -1, -1), t], 1) + m.encoder.pos_embedding
    for i, layer in enumerate(m.encoder.layers):
        if deep_prompts is not None:
            p = deep_prompts[i].unsqueeze(0).expand(x.shape[0], -1, -1)
            rest = t[:, 1:] if i == 0 else t[:, 1 + p.shape[1]:]
            t = torch.cat([t[:, :1], p, rest], 1)
        t = layer(t)
    return t


def rand(*shape):
    return torch.randn(*shape) * 0.2


x = torch.randn(2, 3, IMAGE, IMAGE)
save_npy("input.npy", x)

# ---------------------------------------------------------------- MoCo v3 pretraining checkpoint
base, momentum = tiny_vit(), tiny_vit()
sd = {}
for prefix, m in (("module.base_encoder.", base), ("module.momentum_encoder.", momentum)):
    enc = {k: v for k, v in timm_names(m).items() if not k.startswith("head.")}
    # MoCo v3's projection MLP replaces the classifier: Linear(d, 64) BN ReLU Linear(64, 16)
    enc.update({"head.0.weight": rand(64, WIDTH), "head.1.weight": 1 + rand(64), "head.1.bias": rand(64),
                "head.1.running_mean": rand(64), "head.1.running_var": 1 + rand(64).abs(), "head.1.num_batches_tracked": torch.tensor(7),
                "head.3.weight": rand(16, 64)})
    sd.update({prefix + k: v for k, v in enc.items()})
sd.update({"module.predictor.0.weight": rand(64, 16), "module.predictor.1.weight": 1 + rand(64), "module.predictor.1.bias": rand(64),
           "module.predictor.1.running_mean": rand(64), "module.predictor.1.running_var": 1 + rand(64).abs(),
           "module.predictor.1.num_batches_tracked": torch.tensor(7), "module.predictor.3.weight": rand(16, 64)})
torch.save({"epoch": 300, "arch": "vit_tiny", "state_dict": sd}, os.path.join(OUT, "mocov3_vit_tiny.pth.tar"))
with torch.no_grad():
    save_npy("mocov3_features.npy", base.encoder.ln(tokens_after_blocks(base, x))[:, 0])

# ---------------------------------------------------------------- MAE pretraining checkpoint
mae = tiny_vit()
enc = {k: v for k, v in timm_names(mae).items() if not k.startswith("head.")}
dec = 16
enc.update({"mask_token": rand(1, 1, WIDTH), "decoder_embed.weight": rand(dec, WIDTH), "decoder_embed.bias": rand(dec),
            "decoder_pos_embed": rand(1, 1 + (IMAGE // PATCH) ** 2, dec),
            "decoder_blocks.0.norm1.weight": 1 + rand(dec), "decoder_blocks.0.norm1.bias": rand(dec),
            "decoder_blocks.0.attn.qkv.weight": rand(3 * dec, dec), "decoder_blocks.0.attn.qkv.bias": rand(3 * dec),
            "decoder_blocks.0.attn.proj.weight": rand(dec, dec), "decoder_blocks.0.attn.proj.bias": rand(dec),
            "decoder_blocks.0.norm2.weight": 1 + rand(dec), "decoder_blocks.0.norm2.bias": rand(dec),
            "decoder_blocks.0.mlp.fc1.weight": rand(4 * dec, dec), "decoder_blocks.0.mlp.fc1.bias": rand(4 * dec),
            "decoder_blocks.0.mlp.fc2.weight": rand(dec, 4 * dec), "decoder_blocks.0.mlp.fc2.bias": rand(dec),
            "decoder_norm.weight": 1 + rand(dec), "decoder_norm.bias": rand(dec),
            "decoder_pred.weight": rand(PATCH * PATCH * 3, dec), "decoder_pred.bias": rand(PATCH * PATCH * 3)})
torch.save({"model": enc}, os.path.join(OUT, "mae_pretrain_vit_tiny.pth"))
with torch.no_grad():
    t = tokens_after_blocks(mae, x)
    save_npy("mae_pretrain_features.npy", F.layer_norm(t[:, 1:].mean(1), (WIDTH,), eps=1e-6))  # fc_norm at its init

# ---------------------------------------------------------------- MAE fine-tuned checkpoint (fc_norm + head, no norm)
ft = {k: v for k, v in timm_names(mae).items() if not k.startswith("norm.")}
fc_w, fc_b = 1 + rand(WIDTH), rand(WIDTH)
ft.update({"fc_norm.weight": fc_w, "fc_norm.bias": fc_b})
torch.save({"model": ft}, os.path.join(OUT, "mae_finetuned_vit_tiny.pth"))
with torch.no_grad():
    save_npy("mae_finetuned_features.npy", F.layer_norm(t[:, 1:].mean(1), (WIDTH,), fc_w, fc_b, eps=1e-6))
    bound = (6.0 / (3 * PATCH * PATCH + WIDTH)) ** 0.5
    prompts = torch.empty(DEPTH, 3, WIDTH).uniform_(-bound, bound)
    save_npy("mae_vpt_deep_p3_prompts.npy", prompts)
    tp = tokens_after_blocks(mae, x, prompts)
    save_npy("mae_vpt_deep_p3_features.npy", F.layer_norm(tp[:, 1:].mean(1), (WIDTH,), fc_w, fc_b, eps=1e-6))
print("wrote", sorted(os.listdir(OUT)))
