"""Frames out: the renderer over motion latents, clips rendered batch by batch, and the writers that encode them."""
