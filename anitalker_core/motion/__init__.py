"""Motion latents between sampling and rendering: control and keyframes, edits, calm pauses, files, plots."""
