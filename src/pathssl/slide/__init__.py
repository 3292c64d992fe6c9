"""Reading whole-slide images and resolving their physical resolution."""

from pathssl.slide.opening import find_slides, open_slide
from pathssl.slide.reader import Slide, SlideLevel
from pathssl.slide.resolution import Resolution, resolve_mpp

__all__ = ["Resolution", "Slide", "SlideLevel", "find_slides", "open_slide", "resolve_mpp"]
