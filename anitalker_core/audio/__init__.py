"""Speech in: any recording to a 16 kHz mono waveform, its HuBERT or MFCC features, and where its pauses are."""
