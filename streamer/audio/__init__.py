"""Audio: frames of spectrogram become one continuous stream of samples, at a steady loudness
(``loudness``: each frame levelled; ``limiter``: the mix's look-ahead true-peak limiter)."""
