"""``dxassist listen``: the DICOM DIMSE entry point (C-ECHO and C-STORE SCP), beside :mod:`inference.api`.

Instances are validated and decoded on arrival by :mod:`inference.dicom` (the pure DICOM library), grouped
by study after a quiet period, then analysed by the same service as an HTTP upload
(:func:`inference.services.analyse_decoded`). Like the HTTP API it is a thin client of
:mod:`inference.services`; no package below it imports it.
"""

from inference.dimse._association import CannotListen
from inference.dimse._listener import listen, run_listener
from inference.dimse._receive import dimse_status

__all__ = ["CannotListen", "dimse_status", "listen", "run_listener"]
