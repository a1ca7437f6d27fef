"""The diffusion sampler: the DDIM noise schedule and step, the sampling loop over a denoiser, the start noise."""
