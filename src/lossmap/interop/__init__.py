"""Other tools' files in and out of lossmap.

* :mod:`.li2018` — the HDF5 surface and direction files of Li et al.'s
  reference code (``loss-landscape``, 2018): :func:`load_li_surface` (also
  what ``lm.load("surface.h5")`` does), :func:`load_li_directions`, and
  :func:`import_li_surface` (``lossmap import``), which writes one into a
  lossmap store. Their layout: :mod:`.li2018_layout`.

Optional libraries (``h5py``: the ``li`` extra) are imported only when a file
is read or written, never by ``import lossmap``.
"""

from .li2018 import import_li_surface, load_li_directions, load_li_surface

__all__ = ["import_li_surface", "load_li_directions", "load_li_surface"]
