"""The networks of the method and their weights: the motion encoder and warp decoder (stage 1), the
conformer motion generator with its variance adapter (stage 2), the released variants and checkpoint loading."""
