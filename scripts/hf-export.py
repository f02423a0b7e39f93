#!/usr/bin/env python3
"""hf-export.py: export Hugging Face Dinov2Model graphs to ONNX, the way a
hospital would export facebook/dinov2-small: torch.onnx.export(dynamo=True).

The weights are random (no network on the GPU machine; the graph and the
initializer layout are what the GPU embedder's loader must map, not the
values), the configuration is dinov2-small's (D=384, 12 layers, 6 heads,
patch 14, 518 px). LayerNorm and LayerScale parameters are randomised too, so
a wrongly mapped weight cannot hide behind ones and zeros.

Usage: hf-export.py OUTDIR [--tiny]   (writes hf-dinov2-small.onnx and
hf-dinov2-small-reg4.onnx, each with its .onnx.data)
"""
import os
import sys
import time

import torch
from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel


def randomise(m, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, t in m.named_parameters():
            if name.endswith(("norm1.weight", "norm2.weight")) or name == "layernorm.weight":
                t.copy_(1 + 0.2 * torch.randn_like(t))
            elif "lambda1" in name:
                t.copy_(0.1 + 0.05 * torch.randn_like(t))
            else:
                t.copy_(0.02 * torch.randn_like(t) if t.dim() > 1 else 0.05 * torch.randn_like(t))
    return m.eval()


def main():
    out = sys.argv[1]
    tiny = "--tiny" in sys.argv
    os.makedirs(out, exist_ok=True)
    kw = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4,
              image_size=518, patch_size=14, layerscale_value=1.0)
    if tiny:
        kw.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4)
    x = torch.randn(2, 3, 448, 448)
    for name, model in [
        ("hf-dinov2-small", lambda: Dinov2Model(Dinov2Config(**kw))),
        ("hf-dinov2-small-reg4", lambda: Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=4, **kw))),
    ]:
        m = randomise(model(), 11 if "reg" in name else 7)
        path = os.path.join(out, name + ".onnx")
        t0 = time.time()
        batch = torch.export.Dim("batch", min=1, max=1024)
        gh = torch.export.Dim("gh", min=1, max=100)
        gw = torch.export.Dim("gw", min=1, max=100)
        torch.onnx.export(m, (x,), path, dynamo=True, input_names=["pixel_values"],
                          output_names=["last_hidden_state", "pooler_output"],
                          dynamic_shapes={"pixel_values": {0: batch, 2: 14 * gh, 3: 14 * gw}})
        print(f"hf-export: {path} in {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
