"""Seed loops: the img2img init images that give generated frames their rhythm.

A seed is one frame (5.12 s) holding a whole number of beats, imaged with the circular STFT so it
tiles seamlessly. The library ships with the package; any audio file can become a seed.
"""

from streamer.seeds.library import SeedLoop, frame_samples, list_seed_loops, load_seed_loop

__all__ = ["SeedLoop", "frame_samples", "list_seed_loops", "load_seed_loop"]
