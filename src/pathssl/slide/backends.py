"""The slide backends, in the order they are tried on a file's content: DeepZoom pyramids,
OpenSlide (whole-slide formats), Pillow (plain images), SimpleITK (.mha and other ITK formats).
One module each."""

from pathssl.slide.deepzoom import DeepZoomSlide
from pathssl.slide.openslide_backend import OpenSlideSlide
from pathssl.slide.pillow_backend import PillowSlide
from pathssl.slide.simpleitk_backend import SimpleITKSlide

BACKENDS = (DeepZoomSlide, OpenSlideSlide, PillowSlide, SimpleITKSlide)
