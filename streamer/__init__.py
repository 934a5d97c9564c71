"""streamer: an endless, real-time music stream made by spectrogram diffusion.

The data flows prompts -> frames -> audio -> sinks:

- ``streamer.spectrogram``: the Riffusion-compatible codec between audio, mel amplitudes and images.
- ``streamer.seeds``: rhythm seed loops, the img2img init images that give frames their beat.
"""

__version__ = "0.1.0"
