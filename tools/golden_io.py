"""Writers shared by the tools/make_*_goldens.py scripts: .npy arrays and safetensors files, from torch tensors."""
import json
import os

import numpy as np


def save_npy(out_dir, name, t):
    np.save(os.path.join(out_dir, name), t.detach().cpu().numpy().astype(np.float32))


def save_safetensors(path, tensors, metadata=None):
    """The safetensors format (8-byte little-endian header length, JSON header, raw data), from numpy: integer tensors
    as I64, everything else as F32; optional string metadata under __metadata__."""
    header, blobs, offset = {}, [], 0
    for k, v in tensors.items():
        a = v.detach().cpu().numpy()
        a = np.ascontiguousarray(a.astype("<i8") if a.dtype.kind in "iu" else a.astype("<f4"))
        header[k] = {"dtype": "I64" if a.dtype.kind == "i" else "F32", "shape": list(a.shape),
                     "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
