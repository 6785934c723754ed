#!/usr/bin/python3
"""gen_studies.py - synthetic CT, MR and CR studies for the cloudpacs benchmarks.

Writes Part 10 files (PS3.10 section 7: preamble, "DICM", File Meta
Information) whose data sets look like what modalities send (PS3.3 A.3 CT
Image, A.4 MR Image, A.2 CR Image IODs): the patient, study, series,
equipment and image attributes, a few private blocks with their Private
Creator (PS3.5 7.8), small sequences, and pixel data with plausible content
(a smooth phantom plus noise). Chinese patients get Person Names with three
component groups (PS3.5 6.2.1.2, Annex J) in GB18030 or ISO_IR 192; the rest
get Latin names, some in ISO_IR 100.

The layout is OUT/<patient id>/<accession>/<series number>/<instance>.dcm.
Everything is derived from --seed, so two runs with the same options write
the same bytes. Needs Debian's python3-pydicom and python3-numpy: run it
with /usr/bin/python3.
"""

import argparse
import datetime
import os
import random
import sys
import time
import uuid

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
# Detached Study Management, what ReferencedStudySequence items name.
STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"

IMPLEMENTATION_UID = "2.25.%d" % uuid.uuid5(
    uuid.NAMESPACE_URL, "https://cloudpacs.invalid/bench/gen_studies").int
IMPLEMENTATION_VERSION = "CPBENCH_GEN_1"

# Pixel matrices (rows, columns) per size and modality; MR and CR pick one.
SIZES = {
    "tiny": {"CT": [(64, 64)], "MR": [(64, 64)], "CR": [(64, 64)]},
    "small": {"CT": [(128, 128)], "MR": [(128, 128)], "CR": [(256, 208)]},
    "real": {
        "CT": [(512, 512)],
        "MR": [(256, 256), (512, 512)],
        "CR": [(2500, 2048), (2140, 1760), (2336, 2836)],
    },
}
TINY_PIXELS = (64, 64)

# (pinyin, hanzi) pairs; given names carry a sex for Patient's Sex.
SURNAMES = [
    ("Wang", "王"), ("Li", "李"), ("Zhang", "张"), ("Liu", "刘"), ("Chen", "陈"),
    ("Yang", "杨"), ("Huang", "黄"), ("Zhao", "赵"), ("Wu", "吴"), ("Zhou", "周"),
    ("Xu", "徐"), ("Sun", "孙"), ("Ma", "马"), ("Zhu", "朱"), ("Hu", "胡"),
    ("Guo", "郭"), ("He", "何"), ("Lin", "林"), ("Gao", "高"), ("Luo", "罗"),
]
GIVEN_NAMES = [
    ("Wei", "伟", "M"), ("Fang", "芳", "F"), ("Na", "娜", "F"), ("Min", "敏", "F"),
    ("Jing", "静", "F"), ("Qiang", "强", "M"), ("Lei", "磊", "M"), ("Jun", "军", "M"),
    ("Yong", "勇", "M"), ("Yan", "艳", "F"), ("Jie", "杰", "M"), ("Tao", "涛", "M"),
    ("XiuYing", "秀英", "F"), ("XiaoDong", "小东", "M"), ("JianHua", "建华", "M"),
    ("YuLan", "玉兰", "F"), ("ZhiQiang", "志强", "M"), ("HaiYan", "海燕", "F"),
    ("GuoQing", "国庆", "M"), ("Hui", "慧", "F"), ("Peng", "鹏", "M"), ("Li", "丽", "F"),
]
LATIN_FAMILY = [
    "SMITH", "JOHNSON", "BROWN", "TAYLOR", "MARTIN", "BERNARD", "ROSSI",
    "NGUYEN", "KOWALSKI", "MÜLLER", "GARCÍA", "LÓPEZ", "SCHRÖDER", "DUBOIS",
    "JANSSEN", "O'BRIEN", "FERREIRA", "HÄKKINEN", "NOVÁK", "SØRENSEN",
]
LATIN_GIVEN = [
    ("JOHN", "M"), ("MARY", "F"), ("JOSÉ", "M"), ("ANNA", "F"), ("JÖRG", "M"),
    ("CHLOÉ", "F"), ("PETER", "M"), ("LUCIA", "F"), ("FRANÇOIS", "M"),
    ("INGRID", "F"), ("MARCO", "M"), ("SARAH", "F"), ("AHMED", "M"), ("EMMA", "F"),
]
CN_DOCTORS = [("Li^Ming", "李^明"), ("Chen^Jing", "陈^静"), ("Zhao^Lei", "赵^磊"),
              ("Wang^Fang", "王^芳")]
LATIN_DOCTORS = ["JONES^ROBERT^^DR", "WEBER^KLAUS^^DR", "MOREAU^ALICE^^DR",
                 "PATEL^ANIL^^DR"]

# Body part -> (English study description, Chinese study description, code).
CT_EXAMS = {
    "CHEST": ("CT CHEST W/O CONTRAST", "胸部CT平扫", "CTCH"),
    "HEAD": ("CT HEAD W/O CONTRAST", "头颅CT平扫", "CTHD"),
    "ABDOMEN": ("CT ABDOMEN W/ CONTRAST", "腹部CT增强", "CTAB"),
    "PELVIS": ("CT PELVIS W/O CONTRAST", "盆腔CT平扫", "CTPV"),
}
MR_EXAMS = {
    "HEAD": ("MR BRAIN W/O CONTRAST", "头颅MR平扫", "MRBR"),
    "KNEE": ("MR KNEE LEFT", "左膝关节MR平扫", "MRKN"),
    "LSPINE": ("MR LUMBAR SPINE", "腰椎MR平扫", "MRLS"),
}
CR_EXAMS = {
    "CHEST": ("CR CHEST PA AND LATERAL", "胸部正侧位", "CRCH"),
}
# Protocol name, series description, orientation, scanning sequence.
MR_PROTOCOLS = {
    "HEAD": [("t1_se_sag", "T1 SE SAG", "SAG", "SE"),
             ("t2_tse_tra", "T2 TSE AX", "TRA", "SE"),
             ("t2_flair_tra", "T2 FLAIR AX", "TRA", "IR"),
             ("ep2d_diff_tra", "DWI AX b1000", "TRA", "EP")],
    "KNEE": [("pd_tse_fs_cor", "PD FS COR", "COR", "SE"),
             ("pd_tse_fs_sag", "PD FS SAG", "SAG", "SE"),
             ("t1_tse_cor", "T1 TSE COR", "COR", "SE")],
    "LSPINE": [("t1_tse_sag", "T1 TSE SAG", "SAG", "SE"),
               ("t2_tse_sag", "T2 TSE SAG", "SAG", "SE"),
               ("t2_tse_tra", "T2 TSE AX", "TRA", "SE")],
}
ORIENTATIONS = {
    "TRA": ["1", "0", "0", "0", "1", "0"],
    "SAG": ["0", "1", "0", "0", "0", "-1"],
    "COR": ["1", "0", "0", "0", "0", "-1"],
}


def ds_str(value):
    """A Decimal String value that fits in 16 characters (PS3.5 6.2)."""
    text = "%.6g" % value
    if len(text) > 16:
        text = "%.4e" % value
    return text


class Uids:
    """UIDs under 2.25 (PS3.5 B.2), drawn from the seeded generator."""

    def __init__(self, rng):
        self.rng = rng

    def new(self):
        bits = self.rng.getrandbits(128)
        return "2.25.%d" % uuid.UUID(int=bits, version=4).int


class Pixels:
    """Plausible images, cheap to make.

    Each matrix gets a few phantom variants (computed once) and one noise
    field a little larger than the image; instance n takes the phantom of
    its part of the series plus the noise window shifted by n, so that no
    two slices are identical and generation costs one add per image.
    """

    PAD = 48
    VARIANTS = 8

    def __init__(self, nprng):
        self.nprng = nprng
        self.phantoms = {}
        self.noise = {}

    def image(self, kind, rows, cols, index, count):
        variant = min(self.VARIANTS - 1, index * self.VARIANTS // max(count, 1))
        key = (kind, rows, cols, variant)
        if key not in self.phantoms:
            self.phantoms[key] = self._phantom(kind, rows, cols, variant)
        nkey = (kind, rows, cols)
        if nkey not in self.noise:
            sigma = {"CT": 12, "MR": 15, "CR": 20}[kind]
            field = self.nprng.normal(0, sigma, (rows + self.PAD, cols + self.PAD))
            self.noise[nkey] = field.clip(-3 * sigma, 3 * sigma).astype("<i2")
        dy = (index * 7) % self.PAD
        dx = (index * 13) % self.PAD
        window = self.noise[nkey][dy:dy + rows, dx:dx + cols]
        # Phantom values keep 3 sigma above zero, so the sum is never negative
        # and int16 bytes read as the unsigned pixels the header declares.
        return (self.phantoms[key] + window).tobytes()

    @staticmethod
    def _phantom(kind, rows, cols, variant):
        y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
        y = (y - rows / 2) / (rows / 2)
        x = (x - cols / 2) / (cols / 2)
        r2 = x * x + y * y
        if kind == "CT":
            # Stored value = HU + 1024 (RescaleIntercept -1024).
            img = np.full((rows, cols), 24 + 40, np.float32)
            body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1
            img[body] = 924
            img[(x / 0.78) ** 2 + (y / 0.58) ** 2 < 1] = 1064
            lung = 0.18 + 0.02 * variant
            for cx in (-0.38, 0.38):
                img[((x - cx) / 0.28) ** 2 + (y / (lung + 0.2)) ** 2 < 1] = 174
            img[(x ** 2 + (y - 0.42) ** 2) < 0.012] = 1724
        elif kind == "MR":
            img = np.full((rows, cols), 60, np.float32)
            img[r2 < 0.7] = 650
            img[r2 < 0.55] = 900 + 10 * variant
            img[(x / 0.12) ** 2 + ((y + 0.05) / 0.25) ** 2 < 1] = 220
        else:
            img = 1200 + 1600 * np.exp(-r2 * 1.5)
            for cx in (-0.35, 0.35):
                img -= 900 * np.exp(-(((x - cx) / 0.25) ** 2 + (y / 0.45) ** 2))
            img = np.maximum(img, 200)
        return img.astype("<i2")


def pick_chinese_patient(rng):
    family, family_cn = rng.choice(SURNAMES)
    given, given_cn, sex = rng.choice(GIVEN_NAMES)
    alpha = "%s^%s" % (family, given)
    if rng.random() < 0.5:
        alpha = alpha.upper()
    name = "%s=%s^%s=" % (alpha, family_cn, given_cn)
    charset = "GB18030" if rng.random() < 0.75 else "ISO_IR 192"
    if rng.random() < 0.5:
        # Bytes are written as given; pydicom would drop the trailing `=`
        # (empty phonetic group) that many Chinese modalities send.
        name = name.encode("gb18030" if charset == "GB18030" else "utf-8")
    return name, sex, charset


def pick_latin_patient(rng):
    family = rng.choice(LATIN_FAMILY)
    given, sex = rng.choice(LATIN_GIVEN)
    name = "%s^%s" % (family, given)
    if rng.random() < 0.3:
        name += "^" + rng.choice("ABCDEFGHJKLMNPRSTW")
    if any(ord(c) > 127 for c in name) or rng.random() < 0.5:
        charset = "ISO_IR 100"
    else:
        charset = None
    return name, sex, charset


class Patient:
    def __init__(self, rng, index, chinese_fraction):
        self.chinese = rng.random() < chinese_fraction
        if self.chinese:
            self.name, self.sex, self.charset = pick_chinese_patient(rng)
        else:
            self.name, self.sex, self.charset = pick_latin_patient(rng)
        self.id = "%08d" % (10000000 + index * 7919 % 89999999)
        self.issuer = "HOSP_A" if rng.random() < 0.8 else "HOSP_B"
        self.age_years = rng.randint(1, 94)
        self.weight = "%.1f" % (rng.uniform(45, 95) if self.age_years > 15 else 25)
        self.size = "%.2f" % (rng.uniform(1.5, 1.9) if self.age_years > 15 else 1.2)


class Study:
    def __init__(self, rng, uids, patient, modality, body_part, index):
        exams = {"CT": CT_EXAMS, "MR": MR_EXAMS, "CR": CR_EXAMS}[modality]
        english, chinese, code = exams[body_part]
        self.modality = modality
        self.body_part = body_part
        self.uid = uids.new()
        self.accession = "A%09d" % (300000000 + index * 104729 % 699999999)
        self.study_id = "%d" % rng.randint(1, 99999)
        base = datetime.datetime(2025, 1, 1, 7, 0, 0)
        self.when = base + datetime.timedelta(days=rng.randint(0, 600),
                                              minutes=rng.randint(0, 12 * 60),
                                              seconds=rng.randint(0, 59))
        cn_text = patient.chinese and rng.random() < 0.7
        self.description = chinese if cn_text else english
        self.code = code
        self.code_meaning = self.description
        if patient.chinese and cn_text:
            doctor = rng.choice(CN_DOCTORS)
            self.referring = "%s=%s=" % doctor
            self.institution = "示例市第一人民医院"
        else:
            self.referring = rng.choice(LATIN_DOCTORS)
            self.institution = "EXAMPLE GENERAL HOSPITAL"
        birth = self.when.date() - datetime.timedelta(
            days=365 * patient.age_years + rng.randint(0, 364))
        self.birth = birth.strftime("%Y%m%d")
        self.age = "%03dY" % patient.age_years
        self.requested_id = "RP%07d" % rng.randint(0, 9999999)
        self.step_id = "SPS%07d" % rng.randint(0, 9999999)


def code_item(value, scheme, meaning):
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def base_dataset(patient, study, series_number, series_desc, when):
    """The patient, study, series and equipment modules shared by all three."""
    ds = Dataset()
    date = study.when.strftime("%Y%m%d")
    if patient.charset:
        ds.SpecificCharacterSet = patient.charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = when.strftime("%H%M%S")
    ds.StudyDate = date
    ds.SeriesDate = date
    ds.AcquisitionDate = date
    ds.ContentDate = date
    ds.StudyTime = study.when.strftime("%H%M%S.%f")[:13]
    ds.SeriesTime = when.strftime("%H%M%S")
    ds.AcquisitionTime = when.strftime("%H%M%S")
    ds.ContentTime = when.strftime("%H%M%S")
    ds.AccessionNumber = study.accession
    ds.Modality = study.modality
    ds.Manufacturer = "SYNTHETIC MEDICAL"
    ds.InstitutionName = study.institution
    ds.InstitutionAddress = "1 EXAMPLE ROAD"
    ds.ReferringPhysicianName = study.referring
    ds.StationName = "%s%02d" % (study.modality, 1 + series_number % 3)
    ds.StudyDescription = study.description
    ds.ProcedureCodeSequence = Sequence(
        [code_item(study.code, "99SYNTH", study.code_meaning)])
    ds.SeriesDescription = series_desc
    ds.InstitutionalDepartmentName = "RADIOLOGY"
    ds.OperatorsName = "TECH^ONE"
    ds.ManufacturerModelName = "SYNTH %s 1" % study.modality
    ref = Dataset()
    ref.ReferencedSOPClassUID = STUDY_MANAGEMENT
    ref.ReferencedSOPInstanceUID = study.uid
    ds.ReferencedStudySequence = Sequence([ref])
    # Modalities write both forms; readers must handle both (PS3.5 7.5).
    ds["ReferencedStudySequence"].is_undefined_length = True
    ds.PatientName = patient.name
    ds.PatientID = patient.id
    ds.IssuerOfPatientID = patient.issuer
    ds.PatientBirthDate = study.birth
    ds.PatientSex = patient.sex
    ds.PatientAge = study.age
    ds.PatientSize = patient.size
    ds.PatientWeight = patient.weight
    ds.BodyPartExamined = study.body_part
    ds.SoftwareVersions = "VA10B"
    ds.DeviceSerialNumber = "90210"
    ds.StudyInstanceUID = study.uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = str(series_number)
    ds.AcquisitionNumber = "1"
    ds.PositionReferenceIndicator = ""
    ds.PerformedProcedureStepStartDate = date
    ds.PerformedProcedureStepStartTime = study.when.strftime("%H%M%S")
    ds.PerformedProcedureStepID = study.step_id
    ds.PerformedProcedureStepDescription = study.description
    req = Dataset()
    req.AccessionNumber = study.accession
    req.RequestedProcedureID = study.requested_id
    req.ScheduledProcedureStepID = study.step_id
    req.ScheduledProcedureStepDescription = study.description
    ds.RequestAttributesSequence = Sequence([req])
    return ds


def add_image_pixel_module(ds, rows, cols, bits_stored, photometric):
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"


def ct_series(rng, uids, patient, study, size, when):
    rows, cols = rng.choice(SIZES[size]["CT"])
    ds = base_dataset(patient, study, 2, "AXIAL 1.25mm STD", when)
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ProtocolName = "%s ROUTINE" % study.body_part
    ds.ReconstructionDiameter = "350"
    ds.DistanceSourceToDetector = "949.075012"
    ds.DistanceSourceToPatient = "541"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "162.5"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = str(rng.randint(120, 350))
    ds.Exposure = str(rng.randint(60, 175))
    ds.FilterType = "BODY FILTER"
    ds.GeneratorPower = "42000"
    ds.FocalSpots = "0.7"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "FFS"
    ds.RevolutionTime = 0.5
    ds.SingleCollimationWidth = 0.625
    ds.TotalCollimationWidth = 40.0
    ds.SpiralPitchFactor = 0.984375
    ds.CTDIvol = round(rng.uniform(5, 15), 2)
    ds.CTDIPhantomTypeCodeSequence = Sequence(
        [code_item("113691", "DCM", "IEC Body Dosimetry Phantom")])
    ds.SeriesInstanceUID = uids.new()
    ds.FrameOfReferenceUID = uids.new()
    ds.ImageOrientationPatient = ORIENTATIONS["TRA"]
    spacing = 350.0 / cols
    ds.PixelSpacing = [ds_str(spacing), ds_str(spacing)]
    add_image_pixel_module(ds, rows, cols, 12, "MONOCHROME2")
    centers, widths = {
        "CHEST": (["40", "-600"], ["400", "1500"]),
        "HEAD": (["40"], ["80"]),
    }.get(study.body_part, (["40"], ["400"]))
    ds.WindowCenter = centers
    ds.WindowWidth = widths
    ds.WindowCenterWidthExplanation = ["WINDOW1", "WINDOW2"][:len(centers)]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    # A vendor's private blocks, as real CTs carry them (PS3.5 7.8.1).
    ds.add_new(0x00090010, "LO", "SYNTH_CT_IDEN_01")
    ds.add_new(0x00091001, "LO", "CT_LIGHTSPEED")
    ds.add_new(0x00091002, "SH", "CT01")
    ds.add_new(0x00091027, "SL", 1700000000 + rng.randint(0, 10**7))
    ds.add_new(0x00430010, "LO", "SYNTH_CT_PARM_01")
    ds.add_new(0x00431010, "US", 400)
    ds.add_new(0x00431028, "OB", bytes(rng.getrandbits(8) for _ in range(1024)))
    ds.add_new(0x0043102C, "SS", 0)

    z0 = 100.0

    def instance(ds, n):
        z = z0 - 1.25 * n
        ds.ImagePositionPatient = [ds_str(-175.0 + spacing / 2),
                                   ds_str(-175.0 + spacing / 2), ds_str(z)]
        ds.SliceLocation = ds_str(z)

    return ds, rows, cols, CT_IMAGE_STORAGE, instance


def mr_series(rng, uids, patient, study, number, protocol, size, when):
    name, desc, orient, scanning = protocol
    rows, cols = rng.choice(SIZES[size]["MR"])
    ds = base_dataset(patient, study, number, desc, when)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"]
    ds.ScanningSequence = scanning
    ds.SequenceVariant = ["SK", "SP"]
    ds.ScanOptions = "FS" if "fs" in name else ""
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = "*tse2d1_%d" % rng.randint(3, 25)
    ds.SliceThickness = "4"
    ds.RepetitionTime = ds_str(rng.uniform(450, 9000))
    ds.EchoTime = ds_str(rng.uniform(9, 110))
    if scanning == "IR":
        ds.InversionTime = "2500"
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "123.25"
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = "3"
    ds.SpacingBetweenSlices = "4.4"
    ds.NumberOfPhaseEncodingSteps = str(int(rows * 0.8))
    ds.EchoTrainLength = "15"
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "81.25"
    ds.PixelBandwidth = "190"
    ds.ProtocolName = name
    ds.TransmitCoilName = "Body"
    ds.AcquisitionMatrix = [0, cols, int(rows * 0.8), 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = "150"
    ds.SAR = ds_str(rng.uniform(0.5, 2.5))
    ds.PatientPosition = "HFS"
    ds.SeriesInstanceUID = uids.new()
    ds.FrameOfReferenceUID = uids.new()
    ds.ImageOrientationPatient = ORIENTATIONS[orient]
    spacing = 230.0 / cols
    ds.PixelSpacing = [ds_str(spacing), ds_str(spacing)]
    add_image_pixel_module(ds, rows, cols, 12, "MONOCHROME2")
    ds.WindowCenter = "600"
    ds.WindowWidth = "1200"
    # A CSA-like private header: kilobytes of opaque OB, as MR vendors send.
    ds.add_new(0x00290010, "LO", "SYNTH MR HEADER")
    ds.add_new(0x00291008, "CS", "IMAGE NUM 4")
    ds.add_new(0x00291009, "LO", "20250101")
    blob = bytes(rng.getrandbits(8) for _ in range(256))
    ds.add_new(0x00291010, "OB", blob * 32)
    ds.add_new(0x00291020, "OB", blob * 16)

    def instance(ds, n):
        offset = -40.0 + 4.4 * n
        pos = {"TRA": [-115.0, -115.0, offset], "SAG": [offset, -115.0, 115.0],
               "COR": [-115.0, offset, 115.0]}[orient]
        ds.ImagePositionPatient = [ds_str(v) for v in pos]
        ds.SliceLocation = ds_str(offset)

    return ds, rows, cols, MR_IMAGE_STORAGE, instance


def cr_series(rng, uids, patient, study, number, view, size, when):
    rows, cols = rng.choice(SIZES[size]["CR"])
    desc = "CHEST PA" if view == "PA" else "CHEST LAT"
    ds = base_dataset(patient, study, number, desc, when)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.KVP = "125" if view == "PA" else "110"
    ds.DistanceSourceToDetector = "1800"
    ds.ExposureTime = str(rng.randint(8, 40))
    ds.XRayTubeCurrent = str(rng.randint(200, 400))
    ds.Exposure = str(rng.randint(2, 12))
    ds.ImagerPixelSpacing = ["0.175", "0.175"]
    ds.ProtocolName = "CHEST %s" % view
    ds.ViewPosition = view
    ds.PlateType = "ST-VI"
    ds.Sensitivity = str(rng.randint(100, 400))
    ds.SeriesInstanceUID = uids.new()
    ds.PatientOrientation = ["P", "F"] if view == "PA" else ["A", "F"]
    ds.PixelSpacing = ["0.175", "0.175"]
    add_image_pixel_module(ds, rows, cols, 12, "MONOCHROME1")
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.add_new(0x00190010, "LO", "SYNTH_CR_01")
    ds.add_new(0x00191010, "LO", "S%d" % rng.randint(100, 999))
    ds.add_new(0x00191011, "DS", "2.0")
    ds.add_new(0x00191015, "LO", "EDR MODE A")

    def instance(ds, n):
        pass

    return ds, rows, cols, CR_IMAGE_STORAGE, instance


class Writer:
    def __init__(self, opts):
        self.opts = opts
        self.files = 0
        self.bytes = 0
        self.series = 0

    def write_series(self, pixels, kind, study_dir, built, count, implicit):
        ds, rows, cols, sop_class, instance = built
        series_dir = os.path.join(study_dir, str(ds.SeriesNumber))
        os.makedirs(series_dir, exist_ok=True)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        meta.ImplementationClassUID = IMPLEMENTATION_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        meta.SourceApplicationEntityTitle = "SYNTH_%s" % kind
        ds.file_meta = meta
        ds.is_little_endian = True
        ds.is_implicit_VR = implicit
        ds.SOPClassUID = sop_class
        prows, pcols = (rows, cols) if self.opts.pixels == "full" else TINY_PIXELS
        uids = self.opts.uids
        for n in range(count):
            uid = uids.new()
            meta.MediaStorageSOPInstanceUID = uid
            ds.SOPInstanceUID = uid
            ds.InstanceNumber = str(n + 1)
            instance(ds, n)
            ds.PixelData = pixels.image(kind, prows, pcols, n, count)
            ds["PixelData"].VR = "OW"
            path = os.path.join(series_dir, "%d.dcm" % (n + 1))
            dcmwrite(path, ds, write_like_original=False)
            self.files += 1
            self.bytes += os.path.getsize(path)
        self.series += 1


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Write synthetic CT, MR and CR studies as DICOM Part 10 files.")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--ct", type=int, default=1, help="CT studies (default 1)")
    p.add_argument("--mr", type=int, default=0, help="MR studies (default 0)")
    p.add_argument("--cr", type=int, default=0, help="CR studies (default 0)")
    p.add_argument("--slices", type=int, default=200,
                   help="images per CT series (default 200)")
    p.add_argument("--mr-slices", type=int, default=24,
                   help="images per MR series; 3-4 series per study (default 24)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--chinese-fraction", type=float, default=0.5,
                   help="share of patients with Chinese names (default 0.5)")
    p.add_argument("--transfer-syntax", choices=["implicit", "explicit", "mixed"],
                   default="implicit",
                   help="implicit VR LE (as modalities send, default), explicit VR "
                        "LE, or mixed (a third of the studies explicit)")
    p.add_argument("--size", choices=sorted(SIZES), default="tiny",
                   help="tiny: 64x64; small; real: CT 512x512, MR 256/512, "
                        "CR ~2500x2000 (default tiny)")
    p.add_argument("--pixels", choices=["full", "tiny"], default="full",
                   help="tiny: headers of --size but 64x64 pixel data (files for "
                        "header benchmarks only: pixel data does not match Rows/Columns)")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    opts = p.parse_args(argv)
    if min(opts.ct, opts.mr, opts.cr) < 0 or opts.slices < 1 or opts.mr_slices < 1:
        p.error("counts must be positive")
    if not 0.0 <= opts.chinese_fraction <= 1.0:
        p.error("--chinese-fraction must be between 0 and 1")
    return opts


def main(argv):
    opts = parse_args(argv)
    rng = random.Random(opts.seed)
    opts.uids = Uids(rng)
    pixels = Pixels(np.random.default_rng(opts.seed))
    writer = Writer(opts)
    started = time.monotonic()
    plan = ["CT"] * opts.ct + ["MR"] * opts.mr + ["CR"] * opts.cr
    for index, modality in enumerate(plan):
        patient = Patient(rng, index, opts.chinese_fraction)
        exams = {"CT": CT_EXAMS, "MR": MR_EXAMS, "CR": CR_EXAMS}[modality]
        study = Study(rng, opts.uids, patient, modality, rng.choice(sorted(exams)), index)
        study_dir = os.path.join(opts.out, patient.id, study.accession)
        implicit = opts.transfer_syntax == "implicit" or (
            opts.transfer_syntax == "mixed" and rng.random() < 2 / 3)
        when = study.when
        if modality == "CT":
            built = ct_series(rng, opts.uids, patient, study, opts.size, when)
            writer.write_series(pixels, "CT", study_dir, built, opts.slices, implicit)
        elif modality == "MR":
            for number, protocol in enumerate(MR_PROTOCOLS[study.body_part], 1):
                when += datetime.timedelta(minutes=4)
                built = mr_series(rng, opts.uids, patient, study, number, protocol,
                                  opts.size, when)
                writer.write_series(pixels, "MR", study_dir, built, opts.mr_slices,
                                    implicit)
        else:
            views = ["PA", "LL"] if rng.random() < 0.7 else ["PA"]
            for number, view in enumerate(views, 1):
                built = cr_series(rng, opts.uids, patient, study, number, view,
                                  opts.size, when)
                writer.write_series(pixels, "CR", study_dir, built, 1, implicit)
    elapsed = time.monotonic() - started
    if not opts.quiet:
        print("gen_studies: %d files, %d bytes, %d studies, %d series in %.1f s under %s"
              % (writer.files, writer.bytes, len(plan), writer.series, elapsed, opts.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
