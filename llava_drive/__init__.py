"""llava_drive: learn to drive from camera images with LLaVA features."""

__version__ = '0.1.0'
