"""Top CUDA kernels of one batched render (for tuning): python -m bench.profile_gpu [fp16|bf16|fp32] [batch]."""

import sys

import torch

from bench.run import build

from anitalker_core.device_policy import PRECISIONS
from anitalker_core.video.renderer import encode_portrait, render_frames

precision = sys.argv[1] if len(sys.argv) > 1 else "fp16"
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
device = torch.device("cuda")
renderer, _ = build(device)
renderer.compute_dtype = PRECISIONS[precision]
portrait = encode_portrait(renderer, torch.rand(1, 3, 256, 256, device=device) * 2 - 1)
lat = torch.randn(batch * 4, 20, device=device) * 0.3
render_frames(renderer, portrait, lat, batch_size=batch)
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
    render_frames(renderer, portrait, lat, batch_size=batch)
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60))
