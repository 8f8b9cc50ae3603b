"""Real data set adapters on tiny fixtures written in exactly each data set's format."""

import numpy as np
import pytest
from PIL import Image

from inference.preprocess import PreprocessParams
from training.data import FINDINGS, DatasetError, generate_phantom, load_dataset, write_study

PARAMS = PreprocessParams(input_size=64)


def _gray(seed: int, shape=(80, 70)) -> np.ndarray:
    image = generate_phantom(np.random.default_rng(seed), findings={}, size_range=(96, 100)).image
    return (np.asarray(Image.fromarray(image).resize((shape[1], shape[0]))) * 255).astype(np.uint8)


def _y(*codes: str) -> list[float]:
    return [float(k in codes) for k in FINDINGS]


def test_nih_chestxray14_labels_views_and_nested_image_folders(tmp_path):
    (tmp_path / "images_001" / "images").mkdir(parents=True)
    (tmp_path / "images_002").mkdir()
    names = ["00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png"]
    folders = ["images_001/images", "images_001/images", "images_002", "images_002"]
    for i, (name, folder) in enumerate(zip(names, folders, strict=True)):
        Image.fromarray(_gray(i)).save(tmp_path / folder / name)
    (tmp_path / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
        "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,\n"
        "00000001_001.png,Nodule|Effusion,1,1,58,M,PA,2894,2729,0.143,0.143,\n"
        "00000002_000.png,No Finding,0,2,81,M,AP,2500,2048,0.171,0.171,\n"
        "00000003_000.png,Hernia|Pneumothorax|Consolidation,0,3,81,F,PA,2582,2991,0.143,0.143,\n"
        "00000004_000.png,Mass,0,4,40,F,PA,2500,2048,0.171,0.171,\n"
    )
    (tmp_path / "test_list.txt").write_text("00000002_000.png\n")
    (tmp_path / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n00000003_000.png\n")
    data = load_dataset("nih", tmp_path, PARAMS)
    # The row whose PNG is missing (00000004_000.png) is skipped.
    assert [f.split("/")[-1] for f in data.files] == names
    assert data.y.tolist() == [
        _y("cardiomegaly"),
        _y("nodule", "pleural_effusion"),
        _y(),
        _y("pneumothorax", "consolidation"),
    ]
    assert data.views == ["PA", "PA", "AP", "PA"]
    assert data.splits == ["train", "train", "test", "train"]
    assert data.x.shape == (4, 1, 64, 64) and data.masks is None
    # The PNG went through the shared preprocessing: letterboxed, normalised, dense areas bright.
    assert np.isfinite(data.x).all() and data.x.std() > 0.3
    assert len(load_dataset("nih", tmp_path, PARAMS, split="test")) == 1


@pytest.fixture()
def chexpert(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    header = (
        "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
        "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
        "Fracture,Support Devices\n"
    )
    rows = [
        (
            "train/patient00001/study1/view1_frontal.jpg",
            "Frontal",
            "AP",
            {"Cardiomegaly": "1.0", "Pleural Effusion": "-1.0"},
        ),
        (
            "train/patient00002/study1/view1_frontal.jpg",
            "Frontal",
            "PA",
            {"Lung Lesion": "1.0", "Pneumothorax": "0.0"},
        ),
        ("train/patient00002/study1/view2_lateral.jpg", "Lateral", "", {"Lung Lesion": "1.0"}),
        (
            "train/patient00003/study1/view1_frontal.jpg",
            "Frontal",
            "AP",
            {"Consolidation": "", "Pneumothorax": "1.0"},
        ),
    ]
    order = ["Cardiomegaly", "Lung Lesion", "Consolidation", "Pneumothorax", "Pleural Effusion"]
    lines = []
    for i, (rel, fl, appa, labels) in enumerate(rows):
        path = root / rel.replace("train/", "train/", 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_gray(10 + i, (90, 75))).save(path, quality=95)
        cells = {c: labels.get(c, "") for c in order}
        lines.append(
            f"CheXpert-v1.0-small/{rel},Female,68,{fl},{appa},,,{cells['Cardiomegaly']},,"
            f"{cells['Lung Lesion']},,"
            f"{cells['Consolidation']},,,{cells['Pneumothorax']},{cells['Pleural Effusion']},,,\n"
        )
    (root / "train.csv").write_text(header + "".join(lines))
    valid = root / "valid" / "patient64541" / "study1" / "view1_frontal.jpg"
    valid.parent.mkdir(parents=True)
    Image.fromarray(_gray(20)).save(valid)
    (root / "valid.csv").write_text(
        header + "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,AP,"
        ",,1.0,,0.0,,0.0,,,0.0,0.0,,,\n"
    )
    return root


def test_chexpert_uncertainty_policies_and_frontal_only(chexpert):
    zeros = load_dataset("chexpert", chexpert, PARAMS, uncertain="zeros")
    assert len(zeros) == 4  # the lateral view is dropped
    assert zeros.y.tolist() == [_y("cardiomegaly"), _y("nodule"), _y("pneumothorax"), _y("cardiomegaly")]
    assert zeros.splits == ["train", "train", "train", "val"]
    assert zeros.views == ["AP", "PA", "AP", "AP"]
    ones = load_dataset("chexpert", chexpert, PARAMS, uncertain="ones")
    assert ones.y[0].tolist() == _y("cardiomegaly", "pleural_effusion")
    ignore = load_dataset("chexpert", chexpert, PARAMS, uncertain="ignore")
    assert (
        len(ignore) == 3 and "view1_frontal.jpg" in ignore.files[0] and "patient00001" not in ignore.files[0]
    )
    assert ignore.x.shape == (3, 1, 64, 64)
    with pytest.raises(DatasetError, match="uncertain must be"):
        load_dataset("chexpert", chexpert, PARAMS, uncertain="maybe")


def test_dicom_folder_with_missing_finding_columns_counts_them_absent(tmp_path):
    for i, findings in enumerate(({"nodule": True}, {}, {"pneumothorax": True})):
        phantom = generate_phantom(np.random.default_rng(i), findings=findings, size_range=(128, 140))
        write_study(phantom, tmp_path / "dcm" / f"case{i}.dcm", index=i, seed=0)
    # Only two finding columns, no split or view: the others count as 0.
    (tmp_path / "labels.csv").write_text(
        "file,nodule,pneumothorax\ndcm/case0.dcm,1,0\ndcm/case1.dcm,0,0\ndcm/case2.dcm,0,1\n"
    )
    data = load_dataset("dicom-folder", tmp_path, PARAMS)
    assert data.y.tolist() == [_y("nodule"), _y(), _y("pneumothorax")]
    assert data.masks is None and data.x.shape == (3, 1, 64, 64)
    assert data.files == ["dcm/case0.dcm", "dcm/case1.dcm", "dcm/case2.dcm"]


def test_dicom_folder_refuses_bad_labels_and_paths(tmp_path):
    (tmp_path / "labels.csv").write_text("file,nodule\n../outside.dcm,1\n")
    with pytest.raises(DatasetError, match="outside the data set folder"):
        load_dataset("dicom-folder", tmp_path, PARAMS)
    (tmp_path / "labels.csv").write_text("file,nodule\na.dcm,yes\n")
    with pytest.raises(DatasetError, match="is not 0 or 1"):
        load_dataset("dicom-folder", tmp_path, PARAMS)
    with pytest.raises(DatasetError, match="Unknown data set"):
        load_dataset("mimic-cxr", tmp_path, PARAMS)
