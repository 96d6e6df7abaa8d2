"""click2call: one HTTP request places a two-leg phone call."""

__version__ = "0.1.0"
