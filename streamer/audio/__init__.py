"""Audio: frames of spectrogram become one continuous stream of samples."""
