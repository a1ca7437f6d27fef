"""Pictures: finding and cropping the head, pasting rendered heads back, upscaling, side-by-side views."""
