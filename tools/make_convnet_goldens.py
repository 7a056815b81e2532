#!/usr/bin/python3
"""Golden tensors for VptSharp's ConvNet parity tests (ResNet, ConvNeXt, VPT pad prompts), made by torchvision.

Run with Debian's interpreter (python3-torch / python3-torchvision 0.14):
    /usr/bin/python3 tools/make_convnet_goldens.py tests/VptSharp.Tests/Golden/convnets

For each small random config — torchvision's own blocks (BasicBlock, Bottleneck, CNBlock) at tiny widths — it perturbs
every tensor (BatchNorm running statistics and ConvNeXt's layer scale included, so no identity hides a mapping bug),
saves the weights as a torchvision .pth and as a timm-layout safetensors, and records an input with the pooled
features and logits. It also writes the key + shape list of the full-size torchvision resnet18/resnet50/convnext_tiny/
convnext_base (built from the architecture alone, no weights), and logits of a ResNet on a pad-prompted input (the
paper's VPT for ConvNets, §4.4: p learnable pixels around the image) from the reference written below, in both forms:
xavier-uniform values in normalised space, and the reference code's U(0, 1) pixels normalised like the image.
"""
import json
import os
import sys

import golden_io
from golden_io import save_safetensors
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import convnext_base, convnext_tiny, resnet18, resnet50
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/VptSharp.Tests/Golden/convnets"
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)
torch.set_num_threads(2)
CLASSES = 5


def save_npy(name, t):
    golden_io.save_npy(OUT, name, t)




class TinyResNet(ResNet):
    """torchvision's ResNet with its stem/stage widths as arguments (torchvision fixes 64/64-128-256-512); the blocks,
    _make_layer and forward are torchvision's own."""

    def __init__(self, block, layers, widths, stem, num_classes):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = stem, 1, 1, 64
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (w, n) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, n, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)


def perturb(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("layer_scale"):
                p.copy_(0.5 + 0.3 * torch.randn_like(p))  # 1e-6 would make every block an identity
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))
    return model.eval()


def features_resnet(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    for i in range(1, 5):
        x = getattr(m, f"layer{i}")(x)
    return torch.flatten(m.avgpool(x), 1)


def features_convnext(m, x):
    return m.classifier[1](m.classifier[0](m.avgpool(m.features(x))))


def timm_convnext(sd):
    """torchvision ConvNeXt names → timm's."""
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if p[0] == "classifier":
            out[("head.norm." if p[1] == "0" else "head.fc.") + p[2]] = v
        elif p[1] == "0":
            out[f"stem.{p[2]}.{p[3]}"] = v
        elif int(p[1]) % 2 == 0:
            out[f"stages.{int(p[1]) // 2}.downsample.{p[2]}.{p[3]}"] = v
        else:
            s, j = (int(p[1]) - 1) // 2, p[2]
            if p[3] == "layer_scale":
                out[f"stages.{s}.blocks.{j}.gamma"] = v.reshape(-1)
            else:
                out[f"stages.{s}.blocks.{j}." + {"0": "conv_dw", "2": "norm", "3": "mlp.fc1", "5": "mlp.fc2"}[p[4]] + "." + p[5]] = v
    return out


def write(name, model, image, timm_sd, feats):
    sd = model.state_dict()
    torch.save(sd, os.path.join(OUT, f"{name}.pth"))
    save_safetensors(os.path.join(OUT, f"{name}_timm.safetensors"), timm_sd)
    x = torch.randn(2, 3, image, image)
    save_npy(f"{name}_input.npy", x)
    with torch.no_grad():
        save_npy(f"{name}_features.npy", feats(model, x))
        save_npy(f"{name}_logits.npy", model(x))
    return x


# Channel counts are multiples of 8 or 16: libtorch 2.10's CPU float32 3×3 convolution gave wrong results for 24
# channels at batch 2 on the AVX-512 VM these goldens were checked on (float64 and batch 1 were right).
configs = {
    "resnet_basic": (TinyResNet(BasicBlock, [1, 2, 1, 1], [8, 16, 32, 64], 8, CLASSES), 64, features_resnet),
    "resnet_bottleneck": (TinyResNet(Bottleneck, [1, 1, 2, 1], [4, 8, 12, 16], 8, CLASSES), 64, features_resnet),
    "convnext": (ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, 24, 2), CNBlockConfig(24, 32, 1), CNBlockConfig(32, None, 1)],
                          stochastic_depth_prob=0.1, num_classes=CLASSES), 32, features_convnext),
}
for name, (model, image, feats) in configs.items():
    perturb(model)
    sd = model.state_dict()
    timm_sd = timm_convnext(sd) if name == "convnext" else {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    x = write(name, model, image, timm_sd, feats)
    if name == "resnet_basic":
        # VPT for ConvNets (paper §4.4): the image padded by p learnable pixels on each side: top/bottom strips
        # [1, 3, p, W + 2p] and left/right strips [1, 3, H, p], xavier-uniform initialised.
        p = 3
        strips = {"top": torch.empty(1, 3, p, image + 2 * p), "bottom": torch.empty(1, 3, p, image + 2 * p),
                  "left": torch.empty(1, 3, image, p), "right": torch.empty(1, 3, image, p)}
        for k, t in strips.items():
            nn.init.xavier_uniform_(t)
            save_npy(f"pad3_{k}.npy", t)
        b = x.shape[0]
        mid = torch.cat([strips["left"].expand(b, -1, -1, -1), x, strips["right"].expand(b, -1, -1, -1)], 3)
        padded = torch.cat([strips["top"].expand(b, -1, -1, -1), mid, strips["bottom"].expand(b, -1, -1, -1)], 2)
        with torch.no_grad():
            save_npy("pad3_logits.npy", model(padded))
        # The reference's own form (KMnP/vpt, ResNet "pad" prompts): two tensors in [0, 1] pixel space, top+bottom
        # [1, 3, 2p, W + 2p] and left+right [1, 3, H, 2p], drawn U(0, 1) and passed through ImageNet's Normalize before
        # the concatenation. A generator of its own, so the configs after this one draw what they drew before.
        gen = torch.Generator().manual_seed(3)
        tb, lr = torch.rand(1, 3, 2 * p, image + 2 * p, generator=gen), torch.rand(1, 3, image, 2 * p, generator=gen)
        save_npy("pad3px_tb.npy", tb)
        save_npy("pad3px_lr.npy", lr)
        mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        tb_n, lr_n = ((tb - mean) / std).expand(b, -1, -1, -1), ((lr - mean) / std).expand(b, -1, -1, -1)
        padded = torch.cat([lr_n[:, :, :, :p], x, lr_n[:, :, :, p:]], dim=-1)
        padded = torch.cat([tb_n[:, :, :p, :], padded, tb_n[:, :, p:, :]], dim=-2)
        with torch.no_grad():
            save_npy("pad3px_logits.npy", model(padded))

# Full-size architectures: every key and shape (no weights needed), for the key-mapping check.
for name, ctor in [("resnet18", resnet18), ("resnet50", resnet50), ("convnext_tiny", convnext_tiny), ("convnext_base", convnext_base)]:
    sd = ctor().state_dict()
    with open(os.path.join(OUT, f"{name}_keys.txt"), "w") as f:
        for k, v in sd.items():
            f.write(f"{k} {','.join(str(s) for s in v.shape)}\n")
    if name.startswith("convnext"):
        with open(os.path.join(OUT, f"{name}_timm_keys.txt"), "w") as f:
            for k, v in timm_convnext(sd).items():
                f.write(f"{k} {','.join(str(s) for s in v.shape)}\n")
print("wrote", sorted(os.listdir(OUT)))

# Real photographs for the ImageNet ResNet-18 parity test (ONNX Runtime in the test is the reference): SciPy's
# public-domain raccoon photo (scipy.misc.face), resized to 224 px whole and as a crop, stored as JPEG.
from PIL import Image
import scipy.misc

face = Image.fromarray(scipy.misc.face())
face.resize((224, 224), Image.BILINEAR).save(os.path.join(OUT, "photo_face.jpg"), quality=90)
face.crop((300, 100, 812, 612)).resize((224, 224), Image.BILINEAR).save(os.path.join(OUT, "photo_crop.jpg"), quality=90)
