"""Training data: synthetic chest radiograph phantoms written as DICOM, vitals generator, dataset adapters.

Synthetic data is synthetic: a model trained on phantoms has learned phantoms, and says so.
"""

# --- imaging ---
from training.data._adapters_imaging import DATASETS as DATASETS
from training.data._adapters_imaging import load_chexpert as load_chexpert
from training.data._adapters_imaging import load_dataset as load_dataset
from training.data._adapters_imaging import load_nih as load_nih
from training.data._dicom_writer import DicomStyle as DicomStyle
from training.data._dicom_writer import DicomWriteError as DicomWriteError
from training.data._dicom_writer import random_style as random_style
from training.data._dicom_writer import study_bytes as study_bytes
from training.data._dicom_writer import write_study as write_study
from training.data._imaging import DatasetError as DatasetError
from training.data._imaging import ImagingArrays as ImagingArrays
from training.data._imaging import Splits as Splits
from training.data._imaging import build_synthetic_imaging as build_synthetic_imaging
from training.data._imaging import load_imaging_dataset as load_imaging_dataset
from training.data._imaging import load_masks as load_masks
from training.data._imaging import split_indices as split_indices

# --- vitals (owned by the triage data helper: edit only inside this block) ---
from training.data._mimic import MimicFormatError as MimicFormatError
from training.data._mimic import load_mimic_ed as load_mimic_ed
from training.data._mimic import load_mimic_ed_dir as load_mimic_ed_dir
from training.data._phantom import FINDINGS as FINDINGS
from training.data._phantom import Phantom as Phantom
from training.data._phantom import PhantomError as PhantomError
from training.data._phantom import generate_phantom as generate_phantom
from training.data._phantom import sample_findings as sample_findings
from training.data._vitals import VitalsTable as VitalsTable
from training.data._vitals import generate_vitals as generate_vitals
from training.data._vitals import to_vital_signs as to_vital_signs

# --- end vitals ---

# --- out-of-distribution evaluation set ---
# isort: split
from training.data._ood import OOD_KINDS as OOD_KINDS
from training.data._ood import build_ood_set as build_ood_set
from training.data._ood import ood_image as ood_image
from training.data._ood import ood_phantom as ood_phantom
from training.data._ood import read_ood_kinds as read_ood_kinds

# --- acquisition variation ---
# isort: split
from training.data._acquisition import vary_acquisition as vary_acquisition
