"""DICOM objects sent back to a PACS: the AI result as an SR, and heatmap secondary captures.

One imaging result becomes

- a Comprehensive SR (TID 1500 Measurement Report, after IHE AI Results) holding one measurement
  group per finding: finding, Present/Absent, probability, operating threshold, the algorithm,
  and the source image (with the hottest-region box as an image region when there is one);
- one RGB Secondary Capture per finding with a heatmap: the radiograph with the heatmap and box
  burned in, in a series of its own.

Both join the source's study and patient, name the model version in the Contributing Equipment
Sequence (its Device UID changes with every model version), take every UID from the org root and
the result id (a re-send replaces, never duplicates), and every timestamp from the result's creation
time (the same result gives byte-identical files). See ``docs/dicom-outputs.md``.
"""

from ._errors import InvalidFinding, InvalidUID, WriterError
from ._inputs import AlgorithmInfo, FindingOutput, OodRefusal, PriorReport
from ._part10 import write_part10
from ._sc import MAX_SIDE, build_heatmap_sc, build_heatmap_scs
from ._sr import build_sr
from ._uids import check_uid, device_uid

__all__ = [
    "PriorReport",
    "MAX_SIDE",
    "AlgorithmInfo",
    "FindingOutput",
    "OodRefusal",
    "InvalidFinding",
    "InvalidUID",
    "WriterError",
    "build_heatmap_sc",
    "build_heatmap_scs",
    "build_sr",
    "check_uid",
    "device_uid",
    "write_part10",
]
