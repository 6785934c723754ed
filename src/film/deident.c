/*
 * deident.c - the Basic Application Level Confidentiality Profile (PS3.15
 * Annex E, table E.1-1, "Basic Profile" column) applied to one Part 10 file
 * as it is copied to a sink.
 *
 * The file is read into a tree with its large values kept as references
 * (dataset.h), then written element by element in its own transfer syntax:
 * each element gets the action the table gives its tag, at every level of
 * nesting. Values copied as they are come from memory or are streamed from
 * the file in pieces (pixel data, fragments), so memory stays bounded by
 * the header, whatever the size of the pixels. Sequences and items are all
 * written with undefined lengths, which needs no first pass to size them
 * after elements went away.
 *
 * Where the table offers a choice (X/Z, X/D, Z/D, X/Z/D), the one taken
 * keeps the data set usable and says least: X/Z, Z/D and X/Z/D become Z
 * (the attribute stays, empty), X/D becomes X. X/Z/U* sequences (Referenced
 * Image, Source Image) are kept with their UIDs replaced. D on a sequence
 * keeps it with its items processed; D on a binary value empties it (an
 * Encapsulated Document would carry the patient's name in its PDF).
 * Patient's Name and Patient ID take the link's pseudonym rather than
 * nothing, so that a viewer has something to show. Private elements, group
 * lengths, curves (50xx) and whole overlay groups (60xx: Overlay Data and
 * Comments go, and the rest of the plane means nothing without them) are
 * removed. Specific Character Set is kept: the values written in its place
 * are ASCII, which every character set keeps.
 *
 * A replaced UID is "2.25." and the decimal of the first 128 bits of a
 * keyed BLAKE2b (crypto_generichash) of the UID's text (PS3.5 B.2).
 */
#include "film/deident.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "dicom/dataset.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom/uid.h"
#include "dicom/vr.h"
#include "dicom/writer.h"

/* Pieces in which referenced values go from the file to the sink. */
#define DEIDENT_CHUNK (64u * 1024)

/* A pseudonym is written as a PN and an LO: at most 64 characters. */
#define DEIDENT_PSEUDONYM_MAX 64

#define TAG_SOP_CLASS_UID      DCM_TAG(0x0008, 0x0016)
#define TAG_SOP_INSTANCE_UID   DCM_TAG(0x0008, 0x0018)
#define TAG_MEDIA_SOP_CLASS    DCM_TAG(0x0002, 0x0002)
#define TAG_MEDIA_SOP_INSTANCE DCM_TAG(0x0002, 0x0003)
#define TAG_CODE_VALUE         DCM_TAG(0x0008, 0x0100)
#define TAG_CODING_SCHEME      DCM_TAG(0x0008, 0x0102)
#define TAG_CODE_MEANING       DCM_TAG(0x0008, 0x0104)
#define TAG_PATIENT_NAME       DCM_TAG(0x0010, 0x0010)
#define TAG_PATIENT_ID         DCM_TAG(0x0010, 0x0020)
#define TAG_IDENTITY_REMOVED   DCM_TAG(0x0012, 0x0062)
#define TAG_DEID_METHOD        DCM_TAG(0x0012, 0x0063)
#define TAG_DEID_METHOD_CODES  DCM_TAG(0x0012, 0x0064)
#define TAG_LONGITUDINAL       DCM_TAG(0x0028, 0x0303)

/* The text of (0012,0063) and the meaning of code 113100 (PS3.16 CID 7050). */
#define DEID_METHOD_TEXT "PS3.15 E.1 Basic Application Level Confidentiality Profile"
#define DEID_CODE_MEANING "Basic Application Confidentiality Profile"

struct film_deident {
    uint8_t key[FILM_DEIDENT_KEY_BYTES];
    char pseudonym[DEIDENT_PSEUDONYM_MAX + 1];
};

/*
 * What becomes of an attribute (PS3.15 E.3.1): removed, emptied, given a
 * dummy, given a new UID, kept, or (added here) given the pseudonym.
 */
enum {
    ACT_X = 'X',
    ACT_Z = 'Z',
    ACT_D = 'D',
    ACT_U = 'U',
    ACT_K = 'K',
    ACT_P = 'P',
};

typedef struct rule {
    uint32_t tag;
    char action;
} rule;

/*
 * Table E.1-1, Basic Profile column, every single-tag row (the repeating
 * groups and private elements are handled in action_for), with the choices
 * made as the file comment says. Sorted by tag for bsearch.
 */
static const rule rules[] = {
    { 0x00001000, 'X' }, /* AffectedSOPInstanceUID */
    { 0x00001001, 'U' }, /* RequestedSOPInstanceUID */
    { 0x00020003, 'U' }, /* MediaStorageSOPInstanceUID */
    { 0x00041511, 'U' }, /* ReferencedSOPInstanceUIDInFile */
    { 0x00080012, 'X' }, /* InstanceCreationDate */
    { 0x00080013, 'Z' }, /* InstanceCreationTime */
    { 0x00080014, 'U' }, /* InstanceCreatorUID */
    { 0x00080015, 'X' }, /* InstanceCoercionDateTime */
    { 0x00080017, 'U' }, /* AcquisitionUID */
    { 0x00080018, 'U' }, /* SOPInstanceUID */
    { 0x00080019, 'U' }, /* PyramidUID */
    { 0x00080020, 'Z' }, /* StudyDate */
    { 0x00080021, 'X' }, /* SeriesDate */
    { 0x00080022, 'Z' }, /* AcquisitionDate */
    { 0x00080023, 'Z' }, /* ContentDate */
    { 0x00080024, 'X' }, /* OverlayDate */
    { 0x00080025, 'X' }, /* CurveDate */
    { 0x0008002A, 'Z' }, /* AcquisitionDateTime */
    { 0x00080030, 'Z' }, /* StudyTime */
    { 0x00080031, 'X' }, /* SeriesTime */
    { 0x00080032, 'Z' }, /* AcquisitionTime */
    { 0x00080033, 'Z' }, /* ContentTime */
    { 0x00080034, 'X' }, /* OverlayTime */
    { 0x00080035, 'X' }, /* CurveTime */
    { 0x00080050, 'Z' }, /* AccessionNumber */
    { 0x00080054, 'X' }, /* RetrieveAETitle */
    { 0x00080055, 'X' }, /* StationAETitle */
    { 0x00080058, 'U' }, /* FailedSOPInstanceUIDList */
    { 0x00080080, 'Z' }, /* InstitutionName */
    { 0x00080081, 'X' }, /* InstitutionAddress */
    { 0x00080082, 'Z' }, /* InstitutionCodeSequence */
    { 0x00080090, 'Z' }, /* ReferringPhysicianName */
    { 0x00080092, 'X' }, /* ReferringPhysicianAddress */
    { 0x00080094, 'X' }, /* ReferringPhysicianTelephoneNumbers */
    { 0x00080096, 'X' }, /* ReferringPhysicianIdentificationSequence */
    { 0x0008009C, 'Z' }, /* ConsultingPhysicianName */
    { 0x0008009D, 'X' }, /* ConsultingPhysicianIdentificationSequence */
    { 0x00080106, 'D' }, /* ContextGroupVersion */
    { 0x00080107, 'D' }, /* ContextGroupLocalVersion */
    { 0x00080201, 'X' }, /* TimezoneOffsetFromUTC */
    { 0x00081000, 'X' }, /* NetworkID */
    { 0x00081010, 'Z' }, /* StationName */
    { 0x00081030, 'X' }, /* StudyDescription */
    { 0x0008103E, 'X' }, /* SeriesDescription */
    { 0x00081040, 'X' }, /* InstitutionalDepartmentName */
    { 0x00081041, 'X' }, /* InstitutionalDepartmentTypeCodeSequence */
    { 0x00081048, 'X' }, /* PhysiciansOfRecord */
    { 0x00081049, 'X' }, /* PhysiciansOfRecordIdentificationSequence */
    { 0x00081050, 'X' }, /* PerformingPhysicianName */
    { 0x00081052, 'X' }, /* PerformingPhysicianIdentificationSequence */
    { 0x00081060, 'X' }, /* NameOfPhysiciansReadingStudy */
    { 0x00081062, 'X' }, /* PhysiciansReadingStudyIdentificationSequence */
    { 0x00081070, 'Z' }, /* OperatorsName */
    { 0x00081072, 'X' }, /* OperatorIdentificationSequence */
    { 0x00081080, 'X' }, /* AdmittingDiagnosesDescription */
    { 0x00081084, 'X' }, /* AdmittingDiagnosesCodeSequence */
    { 0x00081088, 'X' }, /* PyramidDescription */
    { 0x00081110, 'Z' }, /* ReferencedStudySequence */
    { 0x00081111, 'Z' }, /* ReferencedPerformedProcedureStepSequence */
    { 0x00081120, 'X' }, /* ReferencedPatientSequence */
    { 0x00081140, 'K' }, /* ReferencedImageSequence */
    { 0x00081155, 'U' }, /* ReferencedSOPInstanceUID */
    { 0x00081195, 'U' }, /* TransactionUID */
    { 0x00081301, 'X' },
    { 0x00081302, 'X' },
    { 0x00081303, 'X' },
    { 0x00081304, 'X' },
    { 0x00082111, 'X' }, /* DerivationDescription */
    { 0x00082112, 'K' }, /* SourceImageSequence */
    { 0x00083010, 'U' }, /* IrradiationEventUID */
    { 0x00084000, 'X' }, /* IdentifyingComments */
    { 0x00100010, 'P' }, /* PatientName */
    { 0x00100011, 'X' },
    { 0x00100012, 'X' },
    { 0x00100013, 'X' },
    { 0x00100014, 'X' },
    { 0x00100015, 'X' },
    { 0x00100016, 'X' },
    { 0x00100020, 'P' }, /* PatientID */
    { 0x00100021, 'X' }, /* IssuerOfPatientID */
    { 0x00100030, 'Z' }, /* PatientBirthDate */
    { 0x00100032, 'X' }, /* PatientBirthTime */
    { 0x00100040, 'Z' }, /* PatientSex */
    { 0x00100041, 'X' },
    { 0x00100042, 'X' },
    { 0x00100043, 'X' },
    { 0x00100044, 'X' },
    { 0x00100045, 'X' },
    { 0x00100046, 'X' },
    { 0x00100047, 'X' },
    { 0x00100050, 'X' }, /* PatientInsurancePlanCodeSequence */
    { 0x00100101, 'X' }, /* PatientPrimaryLanguageCodeSequence */
    { 0x00100102, 'X' }, /* PatientPrimaryLanguageModifierCodeSequence */
    { 0x00101000, 'X' }, /* OtherPatientIDs */
    { 0x00101001, 'X' }, /* OtherPatientNames */
    { 0x00101002, 'X' }, /* OtherPatientIDsSequence */
    { 0x00101005, 'X' }, /* PatientBirthName */
    { 0x00101010, 'X' }, /* PatientAge */
    { 0x00101020, 'X' }, /* PatientSize */
    { 0x00101030, 'X' }, /* PatientWeight */
    { 0x00101040, 'X' }, /* PatientAddress */
    { 0x00101050, 'X' }, /* InsurancePlanIdentification */
    { 0x00101060, 'X' }, /* PatientMotherBirthName */
    { 0x00101080, 'X' }, /* MilitaryRank */
    { 0x00101081, 'X' }, /* BranchOfService */
    { 0x00101090, 'X' }, /* MedicalRecordLocator */
    { 0x00101100, 'X' }, /* ReferencedPatientPhotoSequence */
    { 0x00102000, 'X' }, /* MedicalAlerts */
    { 0x00102110, 'X' }, /* Allergies */
    { 0x00102150, 'X' }, /* CountryOfResidence */
    { 0x00102152, 'X' }, /* RegionOfResidence */
    { 0x00102154, 'X' }, /* PatientTelephoneNumbers */
    { 0x00102155, 'X' }, /* PatientTelecomInformation */
    { 0x00102160, 'X' }, /* EthnicGroup */
    { 0x00102161, 'X' },
    { 0x00102162, 'X' },
    { 0x00102180, 'X' }, /* Occupation */
    { 0x001021A0, 'X' }, /* SmokingStatus */
    { 0x001021B0, 'X' }, /* AdditionalPatientHistory */
    { 0x001021C0, 'X' }, /* PregnancyStatus */
    { 0x001021D0, 'X' }, /* LastMenstrualDate */
    { 0x001021F0, 'X' }, /* PatientReligiousPreference */
    { 0x00102203, 'Z' }, /* PatientSexNeutered */
    { 0x00102297, 'X' }, /* ResponsiblePerson */
    { 0x00102299, 'X' }, /* ResponsibleOrganization */
    { 0x00104000, 'X' }, /* PatientComments */
    { 0x00120010, 'D' }, /* ClinicalTrialSponsorName */
    { 0x00120020, 'D' }, /* ClinicalTrialProtocolID */
    { 0x00120021, 'Z' }, /* ClinicalTrialProtocolName */
    { 0x00120022, 'X' },
    { 0x00120023, 'X' },
    { 0x00120030, 'Z' }, /* ClinicalTrialSiteID */
    { 0x00120031, 'Z' }, /* ClinicalTrialSiteName */
    { 0x00120032, 'X' },
    { 0x00120040, 'D' }, /* ClinicalTrialSubjectID */
    { 0x00120041, 'X' },
    { 0x00120042, 'D' }, /* ClinicalTrialSubjectReadingID */
    { 0x00120043, 'X' },
    { 0x00120050, 'Z' }, /* ClinicalTrialTimePointID */
    { 0x00120051, 'X' }, /* ClinicalTrialTimePointDescription */
    { 0x00120055, 'X' },
    { 0x00120060, 'Z' }, /* ClinicalTrialCoordinatingCenterName */
    { 0x00120071, 'X' }, /* ClinicalTrialSeriesID */
    { 0x00120072, 'X' }, /* ClinicalTrialSeriesDescription */
    { 0x00120073, 'X' },
    { 0x00120081, 'D' }, /* ClinicalTrialProtocolEthicsCommitteeName */
    { 0x00120082, 'X' }, /* ClinicalTrialProtocolEthicsCommitteeApprovalNumber */
    { 0x00120086, 'X' }, /* EthicsCommitteeApprovalEffectivenessStartDate */
    { 0x00120087, 'X' }, /* EthicsCommitteeApprovalEffectivenessEndDate */
    { 0x0014407C, 'X' }, /* CalibrationTime */
    { 0x0014407E, 'X' }, /* CalibrationDate */
    { 0x0016002B, 'X' }, /* MakerNote */
    { 0x0016004B, 'X' }, /* DeviceSettingDescription */
    { 0x0016004D, 'X' }, /* CameraOwnerName */
    { 0x0016004E, 'X' }, /* LensSpecification */
    { 0x0016004F, 'X' }, /* LensMake */
    { 0x00160050, 'X' }, /* LensModel */
    { 0x00160051, 'X' }, /* LensSerialNumber */
    { 0x00160070, 'X' }, /* GPSVersionID */
    { 0x00160071, 'X' }, /* GPSLatitudeRef */
    { 0x00160072, 'X' }, /* GPSLatitude */
    { 0x00160073, 'X' }, /* GPSLongitudeRef */
    { 0x00160074, 'X' }, /* GPSLongitude */
    { 0x00160075, 'X' }, /* GPSAltitudeRef */
    { 0x00160076, 'X' }, /* GPSAltitude */
    { 0x00160077, 'X' }, /* GPSTimeStamp */
    { 0x00160078, 'X' }, /* GPSSatellites */
    { 0x00160079, 'X' }, /* GPSStatus */
    { 0x0016007A, 'X' }, /* GPSMeasureMode */
    { 0x0016007B, 'X' }, /* GPSDOP */
    { 0x0016007C, 'X' }, /* GPSSpeedRef */
    { 0x0016007D, 'X' }, /* GPSSpeed */
    { 0x0016007E, 'X' }, /* GPSTrackRef */
    { 0x0016007F, 'X' }, /* GPSTrack */
    { 0x00160080, 'X' }, /* GPSImgDirectionRef */
    { 0x00160081, 'X' }, /* GPSImgDirection */
    { 0x00160082, 'X' }, /* GPSMapDatum */
    { 0x00160083, 'X' }, /* GPSDestLatitudeRef */
    { 0x00160084, 'X' }, /* GPSDestLatitude */
    { 0x00160085, 'X' }, /* GPSDestLongitudeRef */
    { 0x00160086, 'X' }, /* GPSDestLongitude */
    { 0x00160087, 'X' }, /* GPSDestBearingRef */
    { 0x00160088, 'X' }, /* GPSDestBearing */
    { 0x00160089, 'X' }, /* GPSDestDistanceRef */
    { 0x0016008A, 'X' }, /* GPSDestDistance */
    { 0x0016008B, 'X' }, /* GPSProcessingMethod */
    { 0x0016008C, 'X' }, /* GPSAreaInformation */
    { 0x0016008D, 'X' }, /* GPSDateStamp */
    { 0x0016008E, 'X' }, /* GPSDifferential */
    { 0x00180010, 'Z' }, /* ContrastBolusAgent */
    { 0x00180027, 'X' }, /* InterventionDrugStopTime */
    { 0x00180035, 'X' }, /* InterventionDrugStartTime */
    { 0x00181000, 'Z' }, /* DeviceSerialNumber */
    { 0x00181002, 'U' }, /* DeviceUID */
    { 0x00181004, 'X' }, /* PlateID */
    { 0x00181005, 'X' }, /* GeneratorID */
    { 0x00181007, 'X' }, /* CassetteID */
    { 0x00181008, 'X' }, /* GantryID */
    { 0x00181009, 'X' }, /* UniqueDeviceIdentifier */
    { 0x0018100A, 'X' }, /* UDISequence */
    { 0x0018100B, 'U' }, /* ManufacturerDeviceClassUID */
    { 0x00181012, 'X' }, /* DateOfSecondaryCapture */
    { 0x00181014, 'X' }, /* TimeOfSecondaryCapture */
    { 0x00181030, 'X' }, /* ProtocolName */
    { 0x00181042, 'X' }, /* ContrastBolusStartTime */
    { 0x00181043, 'X' }, /* ContrastBolusStopTime */
    { 0x00181072, 'X' }, /* RadiopharmaceuticalStartTime */
    { 0x00181073, 'X' }, /* RadiopharmaceuticalStopTime */
    { 0x00181078, 'X' }, /* RadiopharmaceuticalStartDateTime */
    { 0x00181079, 'X' }, /* RadiopharmaceuticalStopDateTime */
    { 0x001811BB, 'D' }, /* AcquisitionFieldOfViewLabel */
    { 0x00181200, 'X' }, /* DateOfLastCalibration */
    { 0x00181201, 'X' }, /* TimeOfLastCalibration */
    { 0x00181202, 'X' }, /* DateTimeOfLastCalibration */
    { 0x00181203, 'Z' }, /* CalibrationDateTime */
    { 0x00181204, 'X' },
    { 0x00181205, 'X' },
    { 0x00181400, 'X' }, /* AcquisitionDeviceProcessingDescription */
    { 0x00182042, 'U' }, /* TargetUID */
    { 0x00184000, 'X' }, /* AcquisitionComments */
    { 0x00185011, 'X' }, /* TransducerIdentificationSequence */
    { 0x0018700A, 'X' }, /* DetectorID */
    { 0x0018700C, 'X' }, /* DateOfLastDetectorCalibration */
    { 0x0018700E, 'X' }, /* TimeOfLastDetectorCalibration */
    { 0x00189074, 'D' }, /* FrameAcquisitionDateTime */
    { 0x00189151, 'D' }, /* FrameReferenceDateTime */
    { 0x00189185, 'X' }, /* RespiratoryMotionCompensationTechniqueDescription */
    { 0x00189367, 'D' }, /* XRaySourceID */
    { 0x00189369, 'D' }, /* SourceStartDateTime */
    { 0x0018936A, 'D' }, /* SourceEndDateTime */
    { 0x00189371, 'D' }, /* XRayDetectorID */
    { 0x00189373, 'X' }, /* XRayDetectorLabel */
    { 0x0018937B, 'X' }, /* MultienergyAcquisitionDescription */
    { 0x0018937F, 'X' }, /* DecompositionDescription */
    { 0x00189424, 'X' }, /* AcquisitionProtocolDescription */
    { 0x00189516, 'X' }, /* StartAcquisitionDateTime */
    { 0x00189517, 'X' }, /* EndAcquisitionDateTime */
    { 0x00189623, 'D' }, /* FunctionalSyncPulse */
    { 0x00189701, 'D' }, /* DecayCorrectionDateTime */
    { 0x00189804, 'D' }, /* ExclusionStartDateTime */
    { 0x00189919, 'Z' }, /* InstructionPerformedDateTime */
    { 0x00189937, 'X' }, /* RequestedSeriesDescription */
    { 0x0018A002, 'X' }, /* ContributionDateTime */
    { 0x0018A003, 'X' }, /* ContributionDescription */
    { 0x0020000D, 'U' }, /* StudyInstanceUID */
    { 0x0020000E, 'U' }, /* SeriesInstanceUID */
    { 0x00200010, 'Z' }, /* StudyID */
    { 0x00200027, 'X' }, /* PyramidLabel */
    { 0x00200052, 'U' }, /* FrameOfReferenceUID */
    { 0x00200200, 'U' }, /* SynchronizationFrameOfReferenceUID */
    { 0x00203401, 'X' }, /* ModifyingDeviceID */
    { 0x00203403, 'X' }, /* ModifiedImageDate */
    { 0x00203405, 'X' }, /* ModifiedImageTime */
    { 0x00203406, 'X' }, /* ModifiedImageDescription */
    { 0x00204000, 'X' }, /* ImageComments */
    { 0x00209158, 'X' }, /* FrameComments */
    { 0x00209161, 'U' }, /* ConcatenationUID */
    { 0x00209164, 'U' }, /* DimensionOrganizationUID */
    { 0x00281199, 'U' }, /* PaletteColorLookupTableUID */
    { 0x00281214, 'U' }, /* LargePaletteColorLookupTableUID */
    { 0x00284000, 'X' }, /* ImagePresentationComments */
    { 0x00320012, 'X' }, /* StudyIDIssuer */
    { 0x00320032, 'X' }, /* StudyVerifiedDate */
    { 0x00320033, 'X' }, /* StudyVerifiedTime */
    { 0x00320034, 'X' }, /* StudyReadDate */
    { 0x00320035, 'X' }, /* StudyReadTime */
    { 0x00321000, 'X' }, /* ScheduledStudyStartDate */
    { 0x00321001, 'X' }, /* ScheduledStudyStartTime */
    { 0x00321010, 'X' }, /* ScheduledStudyStopDate */
    { 0x00321011, 'X' }, /* ScheduledStudyStopTime */
    { 0x00321020, 'X' }, /* ScheduledStudyLocation */
    { 0x00321021, 'X' }, /* ScheduledStudyLocationAETitle */
    { 0x00321030, 'X' }, /* ReasonForStudy */
    { 0x00321032, 'X' }, /* RequestingPhysician */
    { 0x00321033, 'X' }, /* RequestingService */
    { 0x00321040, 'X' }, /* StudyArrivalDate */
    { 0x00321041, 'X' }, /* StudyArrivalTime */
    { 0x00321050, 'X' }, /* StudyCompletionDate */
    { 0x00321051, 'X' }, /* StudyCompletionTime */
    { 0x00321060, 'Z' }, /* RequestedProcedureDescription */
    { 0x00321066, 'X' }, /* ReasonForVisit */
    { 0x00321067, 'X' }, /* ReasonForVisitCodeSequence */
    { 0x00321070, 'X' }, /* RequestedContrastAgent */
    { 0x00324000, 'X' }, /* StudyComments */
    { 0x00340001, 'D' }, /* FlowIdentifierSequence */
    { 0x00340002, 'D' }, /* FlowIdentifier */
    { 0x00340005, 'D' }, /* SourceIdentifier */
    { 0x00340007, 'D' }, /* FrameOriginTimestamp */
    { 0x00380004, 'X' }, /* ReferencedPatientAliasSequence */
    { 0x00380010, 'X' }, /* AdmissionID */
    { 0x00380011, 'X' }, /* IssuerOfAdmissionID */
    { 0x00380014, 'X' }, /* IssuerOfAdmissionIDSequence */
    { 0x0038001A, 'X' }, /* ScheduledAdmissionDate */
    { 0x0038001B, 'X' }, /* ScheduledAdmissionTime */
    { 0x0038001C, 'X' }, /* ScheduledDischargeDate */
    { 0x0038001D, 'X' }, /* ScheduledDischargeTime */
    { 0x0038001E, 'X' }, /* ScheduledPatientInstitutionResidence */
    { 0x00380020, 'X' }, /* AdmittingDate */
    { 0x00380021, 'X' }, /* AdmittingTime */
    { 0x00380030, 'X' }, /* DischargeDate */
    { 0x00380032, 'X' }, /* DischargeTime */
    { 0x00380040, 'X' }, /* DischargeDiagnosisDescription */
    { 0x00380050, 'X' }, /* SpecialNeeds */
    { 0x00380060, 'X' }, /* ServiceEpisodeID */
    { 0x00380061, 'X' }, /* IssuerOfServiceEpisodeID */
    { 0x00380062, 'X' }, /* ServiceEpisodeDescription */
    { 0x00380064, 'X' }, /* IssuerOfServiceEpisodeIDSequence */
    { 0x00380300, 'X' }, /* CurrentPatientLocation */
    { 0x00380400, 'X' }, /* PatientInstitutionResidence */
    { 0x00380500, 'X' }, /* PatientState */
    { 0x00384000, 'X' }, /* VisitComments */
    { 0x003A0310, 'U' }, /* MultiplexGroupUID */
    { 0x003A0314, 'D' }, /* ImpedanceMeasurementDateTime */
    { 0x003A0329, 'X' }, /* WaveformFilterDescription */
    { 0x003A032B, 'X' }, /* FilterLookupTableDescription */
    { 0x00400001, 'X' }, /* ScheduledStationAETitle */
    { 0x00400002, 'X' }, /* ScheduledProcedureStepStartDate */
    { 0x00400003, 'X' }, /* ScheduledProcedureStepStartTime */
    { 0x00400004, 'X' }, /* ScheduledProcedureStepEndDate */
    { 0x00400005, 'X' }, /* ScheduledProcedureStepEndTime */
    { 0x00400006, 'X' }, /* ScheduledPerformingPhysicianName */
    { 0x00400007, 'X' }, /* ScheduledProcedureStepDescription */
    { 0x00400009, 'X' }, /* ScheduledProcedureStepID */
    { 0x0040000B, 'X' }, /* ScheduledPerformingPhysicianIdentificationSequence */
    { 0x00400010, 'X' }, /* ScheduledStationName */
    { 0x00400011, 'X' }, /* ScheduledProcedureStepLocation */
    { 0x00400012, 'X' }, /* PreMedication */
    { 0x00400241, 'X' }, /* PerformedStationAETitle */
    { 0x00400242, 'X' }, /* PerformedStationName */
    { 0x00400243, 'X' }, /* PerformedLocation */
    { 0x00400244, 'X' }, /* PerformedProcedureStepStartDate */
    { 0x00400245, 'X' }, /* PerformedProcedureStepStartTime */
    { 0x00400250, 'X' }, /* PerformedProcedureStepEndDate */
    { 0x00400251, 'X' }, /* PerformedProcedureStepEndTime */
    { 0x00400253, 'X' }, /* PerformedProcedureStepID */
    { 0x00400254, 'X' }, /* PerformedProcedureStepDescription */
    { 0x00400275, 'X' }, /* RequestAttributesSequence */
    { 0x00400280, 'X' }, /* CommentsOnThePerformedProcedureStep */
    { 0x00400310, 'X' }, /* CommentsOnRadiationDose */
    { 0x0040050A, 'X' }, /* SpecimenAccessionNumber */
    { 0x00400512, 'D' }, /* ContainerIdentifier */
    { 0x00400513, 'Z' }, /* IssuerOfTheContainerIdentifierSequence */
    { 0x0040051A, 'X' }, /* ContainerDescription */
    { 0x00400551, 'D' }, /* SpecimenIdentifier */
    { 0x00400554, 'U' }, /* SpecimenUID */
    { 0x00400555, 'Z' }, /* AcquisitionContextSequence */
    { 0x00400562, 'Z' }, /* IssuerOfTheSpecimenIdentifierSequence */
    { 0x00400600, 'X' }, /* SpecimenShortDescription */
    { 0x00400602, 'X' }, /* SpecimenDetailedDescription */
    { 0x00400610, 'Z' }, /* SpecimenPreparationSequence */
    { 0x004006FA, 'X' }, /* SlideIdentifier */
    { 0x00401001, 'X' }, /* RequestedProcedureID */
    { 0x00401002, 'X' }, /* ReasonForTheRequestedProcedure */
    { 0x00401004, 'X' }, /* PatientTransportArrangements */
    { 0x00401005, 'X' }, /* RequestedProcedureLocation */
    { 0x0040100A, 'X' }, /* ReasonForRequestedProcedureCodeSequence */
    { 0x00401010, 'X' }, /* NamesOfIntendedRecipientsOfResults */
    { 0x00401011, 'X' }, /* IntendedRecipientsOfResultsIdentificationSequence */
    { 0x00401101, 'D' }, /* PersonIdentificationCodeSequence */
    { 0x00401102, 'X' }, /* PersonAddress */
    { 0x00401103, 'X' }, /* PersonTelephoneNumbers */
    { 0x00401104, 'X' }, /* PersonTelecomInformation */
    { 0x00401400, 'X' }, /* RequestedProcedureComments */
    { 0x00402001, 'X' }, /* ReasonForTheImagingServiceRequest */
    { 0x00402004, 'X' }, /* IssueDateOfImagingServiceRequest */
    { 0x00402005, 'X' }, /* IssueTimeOfImagingServiceRequest */
    { 0x00402008, 'X' }, /* OrderEnteredBy */
    { 0x00402009, 'X' }, /* OrderEntererLocation */
    { 0x00402010, 'X' }, /* OrderCallbackPhoneNumber */
    { 0x00402011, 'X' }, /* OrderCallbackTelecomInformation */
    { 0x00402016, 'Z' }, /* PlacerOrderNumberImagingServiceRequest */
    { 0x00402017, 'Z' }, /* FillerOrderNumberImagingServiceRequest */
    { 0x00402400, 'X' }, /* ImagingServiceRequestComments */
    { 0x00403001, 'X' }, /* ConfidentialityConstraintOnPatientDataDescription */
    { 0x00404005, 'X' }, /* ScheduledProcedureStepStartDateTime */
    { 0x00404008, 'X' }, /* ScheduledProcedureStepExpirationDateTime */
    { 0x00404010, 'X' }, /* ScheduledProcedureStepModificationDateTime */
    { 0x00404011, 'X' }, /* ExpectedCompletionDateTime */
    { 0x00404023, 'U' }, /* ReferencedGeneralPurposeScheduledProcedureStepTransactionUID */
    { 0x00404025, 'X' }, /* ScheduledStationNameCodeSequence */
    { 0x00404027, 'X' }, /* ScheduledStationGeographicLocationCodeSequence */
    { 0x00404028, 'X' }, /* PerformedStationNameCodeSequence */
    { 0x00404030, 'X' }, /* PerformedStationGeographicLocationCodeSequence */
    { 0x00404034, 'X' }, /* ScheduledHumanPerformersSequence */
    { 0x00404035, 'X' }, /* ActualHumanPerformersSequence */
    { 0x00404036, 'X' }, /* HumanPerformerOrganization */
    { 0x00404037, 'X' }, /* HumanPerformerName */
    { 0x00404050, 'X' }, /* PerformedProcedureStepStartDateTime */
    { 0x00404051, 'X' }, /* PerformedProcedureStepEndDateTime */
    { 0x00404052, 'X' }, /* ProcedureStepCancellationDateTime */
    { 0x0040A023, 'X' }, /* FindingsGroupRecordingDateTrial */
    { 0x0040A024, 'X' }, /* FindingsGroupRecordingTimeTrial */
    { 0x0040A027, 'D' }, /* VerifyingOrganization */
    { 0x0040A030, 'D' }, /* VerificationDateTime */
    { 0x0040A032, 'X' }, /* ObservationDateTime */
    { 0x0040A033, 'X' }, /* ObservationStartDateTime */
    { 0x0040A034, 'X' },
    { 0x0040A035, 'X' },
    { 0x0040A073, 'D' }, /* VerifyingObserverSequence */
    { 0x0040A075, 'D' }, /* VerifyingObserverName */
    { 0x0040A078, 'X' }, /* AuthorObserverSequence */
    { 0x0040A07A, 'X' }, /* ParticipantSequence */
    { 0x0040A07C, 'X' }, /* CustodialOrganizationSequence */
    { 0x0040A082, 'Z' }, /* ParticipationDateTime */
    { 0x0040A088, 'Z' }, /* VerifyingObserverIdentificationCodeSequence */
    { 0x0040A110, 'X' }, /* DateOfDocumentOrVerbalTransactionTrial */
    { 0x0040A112, 'X' }, /* TimeOfDocumentCreationOrVerbalTransactionTrial */
    { 0x0040A120, 'D' }, /* DateTime */
    { 0x0040A121, 'D' }, /* Date */
    { 0x0040A122, 'D' }, /* Time */
    { 0x0040A123, 'D' }, /* PersonName */
    { 0x0040A124, 'U' }, /* UID */
    { 0x0040A13A, 'D' }, /* ReferencedDateTime */
    { 0x0040A171, 'U' }, /* ObservationUID */
    { 0x0040A172, 'U' }, /* ReferencedObservationUIDTrial */
    { 0x0040A192, 'X' }, /* ObservationDateTrial */
    { 0x0040A193, 'X' }, /* ObservationTimeTrial */
    { 0x0040A307, 'X' }, /* CurrentObserverTrial */
    { 0x0040A352, 'X' }, /* VerbalSourceTrial */
    { 0x0040A353, 'X' }, /* AddressTrial */
    { 0x0040A354, 'X' }, /* TelephoneNumberTrial */
    { 0x0040A358, 'X' }, /* VerbalSourceIdentifierCodeSequenceTrial */
    { 0x0040A402, 'U' }, /* ObservationSubjectUIDTrial */
    { 0x0040A730, 'D' }, /* ContentSequence */
    { 0x0040B034, 'X' },
    { 0x0040B036, 'X' },
    { 0x0040B03B, 'X' },
    { 0x0040B03F, 'X' },
    { 0x0040DB06, 'X' }, /* TemplateVersion */
    { 0x0040DB07, 'X' }, /* TemplateLocalVersion */
    { 0x0040DB0C, 'U' }, /* TemplateExtensionOrganizationUID */
    { 0x0040DB0D, 'U' }, /* TemplateExtensionCreatorUID */
    { 0x0040E004, 'X' }, /* HL7DocumentEffectiveTime */
    { 0x00420011, 'D' }, /* EncapsulatedDocument */
    { 0x00440004, 'X' }, /* ApprovalStatusDateTime */
    { 0x0044000B, 'X' }, /* ProductExpirationDateTime */
    { 0x00440010, 'X' }, /* SubstanceAdministrationDateTime */
    { 0x00440104, 'D' }, /* AssertionDateTime */
    { 0x00440105, 'X' }, /* AssertionExpirationDateTime */
    { 0x0050001B, 'X' }, /* ContainerComponentID */
    { 0x00500020, 'X' }, /* DeviceDescription */
    { 0x00500021, 'X' }, /* LongDeviceDescription */
    { 0x00620021, 'U' }, /* TrackingUID */
    { 0x00640003, 'U' }, /* SourceFrameOfReferenceUID */
    { 0x00686226, 'D' }, /* EffectiveDateTime */
    { 0x00686270, 'D' }, /* InformationIssueDateTime */
    { 0x006A0003, 'D' }, /* AnnotationGroupUID */
    { 0x006A0005, 'D' }, /* AnnotationGroupLabel */
    { 0x006A0006, 'X' }, /* AnnotationGroupDescription */
    { 0x00700001, 'D' }, /* GraphicAnnotationSequence */
    { 0x00700082, 'X' }, /* PresentationCreationDate */
    { 0x00700083, 'X' }, /* PresentationCreationTime */
    { 0x00700084, 'Z' }, /* ContentCreatorName */
    { 0x00700086, 'X' }, /* ContentCreatorIdentificationCodeSequence */
    { 0x0070031A, 'U' }, /* FiducialUID */
    { 0x00701101, 'U' }, /* PresentationDisplayCollectionUID */
    { 0x00701102, 'U' }, /* PresentationSequenceCollectionUID */
    { 0x0072000A, 'D' }, /* HangingProtocolCreationDateTime */
    { 0x0072005E, 'D' }, /* SelectorAEValue */
    { 0x0072005F, 'D' }, /* SelectorASValue */
    { 0x00720061, 'D' }, /* SelectorDAValue */
    { 0x00720063, 'D' }, /* SelectorDTValue */
    { 0x00720065, 'D' }, /* SelectorOBValue */
    { 0x00720066, 'D' }, /* SelectorLOValue */
    { 0x00720068, 'D' }, /* SelectorLTValue */
    { 0x0072006A, 'D' }, /* SelectorPNValue */
    { 0x0072006B, 'D' }, /* SelectorTMValue */
    { 0x0072006C, 'D' }, /* SelectorSHValue */
    { 0x0072006D, 'D' }, /* SelectorUNValue */
    { 0x0072006E, 'D' }, /* SelectorSTValue */
    { 0x00720070, 'D' }, /* SelectorUTValue */
    { 0x00720071, 'D' }, /* SelectorURValue */
    { 0x00741234, 'X' }, /* ReceivingAE */
    { 0x00741236, 'X' }, /* RequestingAE */
    { 0x00880140, 'U' }, /* StorageMediaFileSetUID */
    { 0x00880200, 'X' }, /* IconImageSequence */
    { 0x00880904, 'X' }, /* TopicTitle */
    { 0x00880906, 'X' }, /* TopicSubject */
    { 0x00880910, 'X' }, /* TopicAuthor */
    { 0x00880912, 'X' }, /* TopicKeywords */
    { 0x01000420, 'X' }, /* SOPAuthorizationDateTime */
    { 0x04000100, 'U' }, /* DigitalSignatureUID */
    { 0x04000105, 'D' }, /* DigitalSignatureDateTime */
    { 0x04000115, 'D' }, /* CertificateOfSigner */
    { 0x04000310, 'X' }, /* CertifiedTimestamp */
    { 0x04000402, 'X' }, /* ReferencedDigitalSignatureSequence */
    { 0x04000403, 'X' }, /* ReferencedSOPInstanceMACSequence */
    { 0x04000404, 'X' }, /* MAC */
    { 0x04000550, 'X' }, /* ModifiedAttributesSequence */
    { 0x04000551, 'X' }, /* NonconformingModifiedAttributesSequence */
    { 0x04000552, 'X' }, /* NonconformingDataElementValue */
    { 0x04000561, 'X' }, /* OriginalAttributesSequence */
    { 0x04000562, 'D' }, /* AttributeModificationDateTime */
    { 0x04000563, 'D' }, /* ModifyingSystem */
    { 0x04000564, 'Z' }, /* SourceOfPreviousValues */
    { 0x04000565, 'D' }, /* ReasonForTheAttributeModification */
    { 0x04000600, 'X' }, /* InstanceOriginStatus */
    { 0x20300020, 'X' }, /* TextString */
    { 0x21000040, 'X' }, /* CreationDate */
    { 0x21000050, 'X' }, /* CreationTime */
    { 0x21000070, 'X' }, /* Originator */
    { 0x21000140, 'D' }, /* DestinationAE */
    { 0x22000002, 'Z' }, /* LabelText */
    { 0x22000005, 'Z' }, /* BarcodeValue */
    { 0x30020121, 'X' }, /* PositionAcquisitionTemplateName */
    { 0x30020123, 'X' }, /* PositionAcquisitionTemplateDescription */
    { 0x30060002, 'D' }, /* StructureSetLabel */
    { 0x30060004, 'X' }, /* StructureSetName */
    { 0x30060006, 'X' }, /* StructureSetDescription */
    { 0x30060008, 'Z' }, /* StructureSetDate */
    { 0x30060009, 'Z' }, /* StructureSetTime */
    { 0x30060024, 'U' }, /* ReferencedFrameOfReferenceUID */
    { 0x30060026, 'Z' }, /* ROIName */
    { 0x30060028, 'X' }, /* ROIDescription */
    { 0x3006002D, 'X' },
    { 0x3006002E, 'X' },
    { 0x30060038, 'X' }, /* ROIGenerationDescription */
    { 0x3006004D, 'X' },
    { 0x3006004E, 'X' },
    { 0x30060085, 'X' }, /* ROIObservationLabel */
    { 0x30060088, 'X' }, /* ROIObservationDescription */
    { 0x300600A6, 'Z' }, /* ROIInterpreter */
    { 0x300600C2, 'U' }, /* RelatedFrameOfReferenceUID */
    { 0x30080024, 'D' }, /* TreatmentControlPointDate */
    { 0x30080025, 'D' }, /* TreatmentControlPointTime */
    { 0x30080054, 'X' }, /* FirstTreatmentDate */
    { 0x30080056, 'X' }, /* MostRecentTreatmentDate */
    { 0x30080105, 'Z' }, /* SourceSerialNumber */
    { 0x30080162, 'D' }, /* SafePositionExitDate */
    { 0x30080164, 'D' }, /* SafePositionExitTime */
    { 0x30080166, 'D' }, /* SafePositionReturnDate */
    { 0x30080168, 'D' }, /* SafePositionReturnTime */
    { 0x30080250, 'X' }, /* TreatmentDate */
    { 0x30080251, 'X' }, /* TreatmentTime */
    { 0x300A0002, 'D' }, /* RTPlanLabel */
    { 0x300A0003, 'X' }, /* RTPlanName */
    { 0x300A0004, 'X' }, /* RTPlanDescription */
    { 0x300A0006, 'X' }, /* RTPlanDate */
    { 0x300A0007, 'X' }, /* RTPlanTime */
    { 0x300A000B, 'X' }, /* TreatmentSites */
    { 0x300A000E, 'X' }, /* PrescriptionDescription */
    { 0x300A0013, 'U' }, /* DoseReferenceUID */
    { 0x300A0016, 'X' }, /* DoseReferenceDescription */
    { 0x300A0054, 'U' },
    { 0x300A0072, 'X' }, /* FractionGroupDescription */
    { 0x300A0083, 'U' }, /* ReferencedDoseReferenceUID */
    { 0x300A00B2, 'Z' }, /* TreatmentMachineName */
    { 0x300A00C3, 'X' }, /* BeamDescription */
    { 0x300A00DD, 'X' }, /* BolusDescription */
    { 0x300A0196, 'X' }, /* FixationDeviceDescription */
    { 0x300A01A6, 'X' }, /* ShieldingDeviceDescription */
    { 0x300A01B2, 'X' }, /* SetupTechniqueDescription */
    { 0x300A0216, 'X' }, /* SourceManufacturer */
    { 0x300A022C, 'D' }, /* SourceStrengthReferenceDate */
    { 0x300A022E, 'D' }, /* SourceStrengthReferenceTime */
    { 0x300A02EB, 'X' }, /* CompensatorDescription */
    { 0x300A0608, 'D' }, /* TreatmentPositionGroupLabel */
    { 0x300A0609, 'U' }, /* TreatmentPositionGroupUID */
    { 0x300A0611, 'Z' }, /* RTAccessoryHolderSlotID */
    { 0x300A0615, 'Z' }, /* RTAccessoryDeviceSlotID */
    { 0x300A0619, 'D' }, /* RadiationDoseIdentificationLabel */
    { 0x300A0623, 'D' }, /* RadiationDoseInVivoMeasurementLabel */
    { 0x300A062A, 'D' }, /* RTToleranceSetLabel */
    { 0x300A0650, 'U' }, /* PatientSetupUID */
    { 0x300A0676, 'X' }, /* EquipmentFrameOfReferenceDescription */
    { 0x300A067C, 'D' }, /* RadiationGenerationModeLabel */
    { 0x300A067D, 'Z' }, /* RadiationGenerationModeDescription */
    { 0x300A0700, 'U' }, /* TreatmentSessionUID */
    { 0x300A0734, 'D' }, /* TreatmentToleranceViolationDescription */
    { 0x300A0736, 'D' }, /* TreatmentToleranceViolationDateTime */
    { 0x300A073A, 'D' }, /* RecordedRTControlPointDateTime */
    { 0x300A0741, 'D' }, /* InterlockDateTime */
    { 0x300A0742, 'D' }, /* InterlockDescription */
    { 0x300A0760, 'D' }, /* OverrideDateTime */
    { 0x300A0783, 'D' }, /* InterlockOriginDescription */
    { 0x300A0785, 'U' }, /* ReferencedTreatmentPositionGroupUID */
    { 0x300A078E, 'X' }, /* PatientTreatmentPreparationProcedureParameterDescription */
    { 0x300A0792, 'X' }, /* PatientTreatmentPreparationMethodDescription */
    { 0x300A0794, 'X' }, /* PatientSetupPhotoDescription */
    { 0x300A079A, 'X' }, /* DisplacementReferenceLabel */
    { 0x300C0113, 'X' }, /* ReasonForOmissionDescription */
    { 0x300C0127, 'D' }, /* BeamHoldTransitionDateTime */
    { 0x300E0004, 'Z' }, /* ReviewDate */
    { 0x300E0005, 'Z' }, /* ReviewTime */
    { 0x300E0008, 'Z' }, /* ReviewerName */
    { 0x30100006, 'U' }, /* ConceptualVolumeUID */
    { 0x3010000B, 'U' }, /* ReferencedConceptualVolumeUID */
    { 0x3010000F, 'Z' }, /* ConceptualVolumeCombinationDescription */
    { 0x30100013, 'U' }, /* ConstituentConceptualVolumeUID */
    { 0x30100015, 'U' }, /* SourceConceptualVolumeUID */
    { 0x30100017, 'Z' }, /* ConceptualVolumeDescription */
    { 0x3010001B, 'Z' }, /* DeviceAlternateIdentifier */
    { 0x3010002D, 'D' }, /* DeviceLabel */
    { 0x30100031, 'U' }, /* ReferencedFiducialsUID */
    { 0x30100033, 'D' }, /* UserContentLabel */
    { 0x30100034, 'D' }, /* UserContentLongLabel */
    { 0x30100035, 'D' }, /* EntityLabel */
    { 0x30100036, 'X' }, /* EntityName */
    { 0x30100037, 'X' }, /* EntityDescription */
    { 0x30100038, 'D' }, /* EntityLongLabel */
    { 0x3010003B, 'U' }, /* RTTreatmentPhaseUID */
    { 0x30100043, 'Z' }, /* ManufacturerDeviceIdentifier */
    { 0x3010004C, 'X' }, /* IntendedPhaseStartDate */
    { 0x3010004D, 'X' }, /* IntendedPhaseEndDate */
    { 0x30100054, 'D' }, /* RTPrescriptionLabel */
    { 0x30100056, 'X' }, /* RTTreatmentApproachLabel */
    { 0x3010005A, 'Z' }, /* RTPhysicianIntentNarrative */
    { 0x3010005C, 'Z' }, /* ReasonForSuperseding */
    { 0x30100061, 'X' }, /* PriorTreatmentDoseDescription */
    { 0x3010006E, 'U' }, /* DosimetricObjectiveUID */
    { 0x3010006F, 'U' }, /* ReferencedDosimetricObjectiveUID */
    { 0x30100077, 'X' }, /* TreatmentSite */
    { 0x3010007A, 'Z' }, /* TreatmentTechniqueNotes */
    { 0x3010007B, 'Z' }, /* PrescriptionNotes */
    { 0x3010007F, 'Z' }, /* FractionationNotes */
    { 0x30100081, 'Z' }, /* PrescriptionNotesSequence */
    { 0x30100085, 'X' }, /* IntendedFractionStartTime */
    { 0x40000010, 'X' }, /* Arbitrary */
    { 0x40004000, 'X' }, /* TextComments */
    { 0x40080040, 'X' }, /* ResultsID */
    { 0x40080042, 'X' }, /* ResultsIDIssuer */
    { 0x40080100, 'X' }, /* InterpretationRecordedDate */
    { 0x40080101, 'X' }, /* InterpretationRecordedTime */
    { 0x40080102, 'X' }, /* InterpretationRecorder */
    { 0x40080108, 'X' }, /* InterpretationTranscriptionDate */
    { 0x40080109, 'X' }, /* InterpretationTranscriptionTime */
    { 0x4008010A, 'X' }, /* InterpretationTranscriber */
    { 0x4008010B, 'X' }, /* InterpretationText */
    { 0x4008010C, 'X' }, /* InterpretationAuthor */
    { 0x40080111, 'X' }, /* InterpretationApproverSequence */
    { 0x40080112, 'X' }, /* InterpretationApprovalDate */
    { 0x40080113, 'X' }, /* InterpretationApprovalTime */
    { 0x40080114, 'X' }, /* PhysicianApprovingInterpretation */
    { 0x40080115, 'X' }, /* InterpretationDiagnosisDescription */
    { 0x40080118, 'X' }, /* ResultsDistributionListSequence */
    { 0x40080119, 'X' }, /* DistributionName */
    { 0x4008011A, 'X' }, /* DistributionAddress */
    { 0x40080200, 'X' }, /* InterpretationID */
    { 0x40080202, 'X' }, /* InterpretationIDIssuer */
    { 0x40080300, 'X' }, /* Impressions */
    { 0x40084000, 'X' }, /* ResultsComments */
    { 0xFFFAFFFA, 'X' }, /* DigitalSignaturesSequence */
    { 0xFFFCFFFC, 'X' }, /* DataSetTrailingPadding */
};

static int rule_cmp(const void *key, const void *elem)
{
    uint32_t tag = *(const uint32_t *)key;
    const rule *r = elem;

    return tag < r->tag ? -1 : tag > r->tag;
}

/* The action for tag, at any level of nesting. */
static char action_for(uint32_t tag)
{
    uint16_t group = DCM_TAG_GROUP(tag);
    uint16_t element = DCM_TAG_ELEMENT(tag);
    const rule *r;

    /* Private elements and their creators (and the odd groups PS3.5 7.1 forbids). */
    if (group & 1)
        return ACT_X;
    /* Group lengths would be wrong once elements go; the meta group is rebuilt. */
    if (element == 0 || group == 0x0002)
        return ACT_X;
    if ((group & 0xFF00) == 0x5000 || (group & 0xFF00) == 0x6000)
        return ACT_X;
    r = bsearch(&tag, rules, sizeof rules / sizeof rules[0], sizeof rules[0], rule_cmp);
    return r != NULL ? r->action : ACT_K;
}

/* --- the context --------------------------------------------------------------- */

/* A pseudonym fit for a PN and an LO: printable ASCII without delimiters. */
static bool pseudonym_ok(const char *p)
{
    size_t n = p != NULL ? strlen(p) : 0;

    if (n == 0 || n > DEIDENT_PSEUDONYM_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c < 0x20 || c > 0x7E || c == '\\' || c == '^' || c == '=')
            return false;
    }
    return true;
}

cp_status film_deident_open(const uint8_t key[FILM_DEIDENT_KEY_BYTES], const char *pseudonym,
                            film_deident **out, cp_error *err)
{
    film_deident *d;

    *out = NULL;
    if (key == NULL || !pseudonym_ok(pseudonym))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "deident: a key and a pseudonym of 1 to %d printable "
                            "characters are needed", DEIDENT_PSEUDONYM_MAX);
    if (sodium_init() < 0)
        return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "deident: libsodium did not start");
    d = cp_calloc(1, sizeof *d);
    if (d == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "deident: no memory");
    memcpy(d->key, key, sizeof d->key);
    memcpy(d->pseudonym, pseudonym, strlen(pseudonym) + 1);
    *out = d;
    return CP_OK;
}

void film_deident_close(film_deident *d)
{
    if (d == NULL)
        return;
    sodium_memzero(d, sizeof *d);
    cp_free(d);
}

const char *film_deident_pseudonym(const film_deident *d)
{
    return d->pseudonym;
}

/* --- UIDs ----------------------------------------------------------------------- */

/* The decimal of a 128-bit big-endian number into out (at least 40 bytes). */
static void decimal128(const uint8_t value[16], char *out)
{
    uint8_t n[16];
    char digits[40];
    size_t count = 0;
    bool zero;

    memcpy(n, value, sizeof n);
    do {
        unsigned rem = 0;

        zero = true;
        for (size_t i = 0; i < sizeof n; i++) {
            unsigned cur = rem * 256 + n[i];

            n[i] = (uint8_t)(cur / 10);
            rem = cur % 10;
            if (n[i] != 0)
                zero = false;
        }
        digits[count++] = (char)('0' + rem);
    } while (!zero);
    for (size_t i = 0; i < count; i++)
        out[i] = digits[count - 1 - i];
    out[count] = '\0';
}

/* Replaces len bytes of uid (already without padding) into out. */
static cp_status map_uid(const film_deident *d, const char *uid, size_t len,
                         char out[FILM_DEIDENT_UID_MAX + 1], cp_error *err)
{
    uint8_t digest[16];

    if (len == 0)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "deident: an empty UID has no replacement");
    crypto_generichash(digest, sizeof digest, (const uint8_t *)uid, len, d->key,
                       sizeof d->key);
    memcpy(out, "2.25.", 5);
    decimal128(digest, out + 5);
    return CP_OK;
}

static size_t trim_padding(const char *s, size_t len)
{
    while (len > 0 && (s[len - 1] == '\0' || s[len - 1] == ' '))
        len--;
    return len;
}

cp_status film_deident_uid(const film_deident *d, const char *uid,
                           char out[FILM_DEIDENT_UID_MAX + 1], cp_error *err)
{
    size_t len = uid != NULL ? trim_padding(uid, strlen(uid)) : 0;

    return map_uid(d, uid, len, out, err);
}

/* --- output ----------------------------------------------------------------------- */

typedef struct enc {
    bool explicit_vr;
    bool big_endian;
} enc;

static const enc enc_implicit_le = { false, false };

typedef struct out {
    const film_deident *d;
    dcm_sink sink;          /* the caller's, or the deflater in front of it */
    dcm_source *src;        /* for values kept as references */
    uint8_t *chunk;         /* DEIDENT_CHUNK bytes, allocated when first needed */
    cp_error *err;
} writer_out;

static cp_status emit(writer_out *o, const void *data, size_t len)
{
    cp_status st = dcm_sink_write(&o->sink, data, len);

    if (st != CP_OK)
        return cp_error_set(o->err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "deident: the sink refused %zu bytes", len);
    return CP_OK;
}

static cp_status emit_header(writer_out *o, uint32_t tag, dcm_vr vr, uint32_t length, enc e)
{
    uint8_t header[DCM_WRITE_HEADER_MAX];
    size_t n = dcm_write_header(header, tag, vr, length, e.explicit_vr, e.big_endian);

    return emit(o, header, n);
}

/* len bytes of a value: from memory when data is set, else read from the file in pieces. */
static cp_status emit_ref(writer_out *o, uint32_t tag, const uint8_t *data, uint64_t offset,
                          uint64_t len)
{
    if (data != NULL)
        return emit(o, data, (size_t)len);
    if (o->chunk == NULL) {
        o->chunk = cp_malloc(DEIDENT_CHUNK);
        if (o->chunk == NULL)
            return cp_error_set(o->err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, tag,
                                "deident: no memory for the copy buffer");
    }
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < DEIDENT_CHUNK ? (size_t)(len - done) : DEIDENT_CHUNK;
        size_t got = 0;
        cp_status st = dcm_source_pread(o->src, offset + done, o->chunk, n, &got);

        if (st == CP_OK && got < n)
            st = CP_ERR_TRUNCATED;
        if (st != CP_OK)
            return cp_error_set(o->err, CP_ERR_MALFORMED, (int64_t)(offset + done), tag,
                                "deident: reading %zu bytes of the value failed", n);
        st = emit(o, o->chunk, n);
        if (st != CP_OK)
            return st;
        done += n;
    }
    return CP_OK;
}

/* A text value, padded to even length as its VR pads. */
static cp_status emit_text(writer_out *o, uint32_t tag, dcm_vr vr, const char *text, size_t len,
                           enc e)
{
    uint8_t pad = dcm_vr_padding(vr);
    cp_status st = emit_header(o, tag, vr, (uint32_t)(len + (len & 1)), e);

    if (st == CP_OK)
        st = emit(o, text, len);
    if (st == CP_OK && (len & 1))
        st = emit(o, &pad, 1);
    return st;
}

/* --- elements -------------------------------------------------------------------- */

/* As the writer decides it: items, or no value with SQ or an undefined length. */
static bool is_sequence(const dcm_element *el)
{
    if (el->flags & DCM_ELEMENT_ENCAPSULATED)
        return false;
    if (el->items != NULL || el->item_count > 0)
        return true;
    if (el->value != NULL || (el->flags & DCM_ELEMENT_NOT_LOADED))
        return false;
    return el->vr == DCM_VR_SQ || (el->flags & DCM_ELEMENT_UNDEFINED_LENGTH) != 0;
}

/* The VR of a value written anew: the element's, or UN when none is known. */
static dcm_vr new_vr(const dcm_element *el)
{
    return el->vr == DCM_VR_NONE || (unsigned)el->vr >= DCM_VR_COUNT ? DCM_VR_UN : el->vr;
}

static cp_status write_dataset(writer_out *o, const dcm_dataset *ds, enc e, bool top);

/*
 * A sequence with its items processed, every length undefined. One that
 * arrived as UN holds Implicit VR Little Endian items and stays so (PS3.5
 * 6.2.2); empty, it is written with no items.
 */
static cp_status write_sequence(writer_out *o, const dcm_element *el, enc e, bool empty)
{
    bool as_un = e.explicit_vr && (el->flags & DCM_ELEMENT_WAS_UN) != 0;
    enc items = as_un ? enc_implicit_le : e;
    dcm_vr vr = as_un ? DCM_VR_UN : DCM_VR_SQ;
    cp_status st;

    if (empty)
        return emit_header(o, el->tag, vr, 0, e);
    st = emit_header(o, el->tag, vr, DCM_UNDEFINED_LENGTH, e);
    for (uint32_t i = 0; st == CP_OK && i < el->item_count; i++) {
        st = emit_header(o, DCM_TAG_ITEM, DCM_VR_NONE, DCM_UNDEFINED_LENGTH, items);
        if (st == CP_OK)
            st = write_dataset(o, el->items[i], items, false);
        if (st == CP_OK)
            st = emit_header(o, DCM_TAG_ITEM_DELIMITATION, DCM_VR_NONE, 0, items);
    }
    if (st == CP_OK)
        st = emit_header(o, DCM_TAG_SEQUENCE_DELIMITATION, DCM_VR_NONE, 0, items);
    return st;
}

/* Encapsulated pixel data (PS3.5 A.4): every fragment as it was, streamed. */
static cp_status write_fragments(writer_out *o, const dcm_element *el, enc e)
{
    cp_status st = emit_header(o, el->tag, new_vr(el), DCM_UNDEFINED_LENGTH, e);

    for (uint32_t i = 0; st == CP_OK && i < el->fragment_count; i++) {
        const dcm_fragment *f = &el->fragments[i];

        st = emit_header(o, DCM_TAG_ITEM, DCM_VR_NONE, f->length, e);
        if (st == CP_OK)
            st = emit_ref(o, el->tag, f->data, f->offset, f->length);
    }
    if (st == CP_OK)
        st = emit_header(o, DCM_TAG_SEQUENCE_DELIMITATION, DCM_VR_NONE, 0, e);
    return st;
}

/* The element as it was (K). */
static cp_status write_copy(writer_out *o, const dcm_element *el, enc e)
{
    dcm_vr vr = (el->flags & DCM_ELEMENT_WAS_UN) ? DCM_VR_UN : new_vr(el);
    cp_status st;

    if (is_sequence(el))
        return write_sequence(o, el, e, false);
    if (el->flags & DCM_ELEMENT_ENCAPSULATED)
        return write_fragments(o, el, e);
    st = emit_header(o, el->tag, vr, (uint32_t)el->value_length, e);
    if (st == CP_OK)
        st = emit_ref(o, el->tag, el->value, el->offset, el->value_length);
    return st;
}

/* The value of a small element, loaded or read from the file, into buf. */
static cp_status small_value(writer_out *o, const dcm_element *el, cp_buf *buf)
{
    if (el->value != NULL)
        return cp_buf_append(buf, el->value, (size_t)el->value_length);
    if (dcm_element_read_value(el, o->src, buf, o->err) != CP_OK)
        return cp_error_set(o->err, CP_ERR_MALFORMED, (int64_t)el->offset, el->tag,
                            "deident: the value could not be read");
    return CP_OK;
}

/* Every UID of a (multi-valued) UID element replaced (U). */
static cp_status write_uids(writer_out *o, const dcm_element *el, enc e)
{
    cp_buf value = CP_BUF_INIT, mapped = CP_BUF_INIT;
    char uid[FILM_DEIDENT_UID_MAX + 1];
    cp_status st = small_value(o, el, &value);
    size_t at = 0;

    while (st == CP_OK && at < value.len) {
        const char *start = (const char *)value.data + at;
        const char *sep = memchr(start, '\\', value.len - at);
        size_t n = sep != NULL ? (size_t)(sep - start) : value.len - at;
        size_t begin = 0, len = trim_padding(start, n);

        while (begin < len && start[begin] == ' ')
            begin++;
        if (mapped.len > 0)
            st = cp_buf_append_byte(&mapped, '\\');
        if (st == CP_OK && len > begin) {
            st = map_uid(o->d, start + begin, len - begin, uid, o->err);
            if (st == CP_OK)
                st = cp_buf_append(&mapped, uid, strlen(uid));
        }
        at += n + (sep != NULL ? 1 : 0);
    }
    if (st == CP_OK && mapped.len > 0xFFFEu)
        st = cp_error_set(o->err, CP_ERR_LIMIT, (int64_t)el->offset, el->tag,
                          "deident: %zu bytes of replaced UIDs", mapped.len);
    if (st == CP_OK)
        st = emit_text(o, el->tag, DCM_VR_UI, (const char *)mapped.data, mapped.len, e);
    cp_buf_free(&value);
    cp_buf_free(&mapped);
    return st;
}

/* A dummy value (D) of the VR: NULL when the VR has none and the value goes empty. */
static const char *dummy_for(dcm_vr vr)
{
    switch (vr) {
    case DCM_VR_DA:
        return "19000101";
    case DCM_VR_TM:
        return "000000";
    case DCM_VR_DT:
        return "19000101000000";
    case DCM_VR_IS:
    case DCM_VR_DS:
        return "0";
    case DCM_VR_AS:
        return "000Y";
    case DCM_VR_AE:
    case DCM_VR_CS:
    case DCM_VR_LO:
    case DCM_VR_LT:
    case DCM_VR_PN:
    case DCM_VR_SH:
    case DCM_VR_ST:
    case DCM_VR_UC:
    case DCM_VR_UT:
        return "ANONYMOUS";
    default:
        return NULL;
    }
}

static cp_status write_element(writer_out *o, const dcm_element *el, enc e)
{
    char action = action_for(el->tag);
    dcm_vr vr = new_vr(el);
    const char *text;

    if (el->flags & DCM_ELEMENT_TRUNCATED)
        return cp_error_set(o->err, CP_ERR_MALFORMED, (int64_t)el->offset, el->tag,
                            "deident: the value was cut short");
    if (action == ACT_X)
        return CP_OK;
    if (is_sequence(el))
        return write_sequence(o, el, e, action == ACT_Z);
    if (action == ACT_D && vr == DCM_VR_UI)
        action = ACT_U;

    switch (action) {
    case ACT_Z:
        return emit_header(o, el->tag, vr, 0, e);
    case ACT_U:
        return write_uids(o, el, e);
    case ACT_P:
        text = o->d->pseudonym;
        return emit_text(o, el->tag, vr, text, strlen(text), e);
    case ACT_D:
        text = dummy_for(vr);
        if (text == NULL)
            return emit_header(o, el->tag, vr, 0, e);
        return emit_text(o, el->tag, vr, text, strlen(text), e);
    default:
        return write_copy(o, el, e);
    }
}

/* --- what the top level gains --------------------------------------------------- */

/* (0012,0064): one item, code 113100 of DCM (PS3.16 CID 7050). */
static cp_status write_method_codes(writer_out *o, enc e)
{
    cp_status st = emit_header(o, TAG_DEID_METHOD_CODES, DCM_VR_SQ, DCM_UNDEFINED_LENGTH, e);

    if (st == CP_OK)
        st = emit_header(o, DCM_TAG_ITEM, DCM_VR_NONE, DCM_UNDEFINED_LENGTH, e);
    if (st == CP_OK)
        st = emit_text(o, TAG_CODE_VALUE, DCM_VR_SH, "113100", 6, e);
    if (st == CP_OK)
        st = emit_text(o, TAG_CODING_SCHEME, DCM_VR_SH, "DCM", 3, e);
    if (st == CP_OK)
        st = emit_text(o, TAG_CODE_MEANING, DCM_VR_LO, DEID_CODE_MEANING,
                       strlen(DEID_CODE_MEANING), e);
    if (st == CP_OK)
        st = emit_header(o, DCM_TAG_ITEM_DELIMITATION, DCM_VR_NONE, 0, e);
    if (st == CP_OK)
        st = emit_header(o, DCM_TAG_SEQUENCE_DELIMITATION, DCM_VR_NONE, 0, e);
    return st;
}

/* The elements the top level is given, in tag order; those of the file are dropped. */
static const uint32_t added_tags[] = {
    TAG_PATIENT_NAME, TAG_PATIENT_ID, TAG_IDENTITY_REMOVED, TAG_DEID_METHOD,
    TAG_DEID_METHOD_CODES, TAG_LONGITUDINAL,
};
#define ADDED_COUNT (sizeof added_tags / sizeof added_tags[0])

static bool is_added(uint32_t tag)
{
    for (size_t i = 0; i < ADDED_COUNT; i++)
        if (added_tags[i] == tag)
            return true;
    return false;
}

static cp_status write_added(writer_out *o, size_t i, enc e)
{
    const char *p = o->d->pseudonym;

    switch (added_tags[i]) {
    case TAG_PATIENT_NAME:
        return emit_text(o, TAG_PATIENT_NAME, DCM_VR_PN, p, strlen(p), e);
    case TAG_PATIENT_ID:
        return emit_text(o, TAG_PATIENT_ID, DCM_VR_LO, p, strlen(p), e);
    case TAG_IDENTITY_REMOVED:
        return emit_text(o, TAG_IDENTITY_REMOVED, DCM_VR_CS, "YES", 3, e);
    case TAG_DEID_METHOD:
        return emit_text(o, TAG_DEID_METHOD, DCM_VR_LO, DEID_METHOD_TEXT,
                         strlen(DEID_METHOD_TEXT), e);
    case TAG_DEID_METHOD_CODES:
        return write_method_codes(o, e);
    default:
        /* The dates the profile empties are gone: PS3.3 C.12.1.1.7. */
        return emit_text(o, TAG_LONGITUDINAL, DCM_VR_CS, "REMOVED", 7, e);
    }
}

static cp_status write_dataset(writer_out *o, const dcm_dataset *ds, enc e, bool top)
{
    size_t count = dcm_dataset_count(ds), next = 0;
    cp_status st = CP_OK;

    for (size_t i = 0; st == CP_OK && i < count; i++) {
        const dcm_element *el = dcm_dataset_at(ds, i);

        if (top) {
            while (st == CP_OK && next < ADDED_COUNT && added_tags[next] < el->tag)
                st = write_added(o, next++, e);
            if (is_added(el->tag))
                continue;
        }
        if (st == CP_OK)
            st = write_element(o, el, e);
    }
    while (top && st == CP_OK && next < ADDED_COUNT)
        st = write_added(o, next++, e);
    return st;
}

/* --- deflate (PS3.5 A.5) ----------------------------------------------------------- */

typedef struct deflater {
    z_stream zs;
    dcm_sink next;
    uint8_t *buf;           /* DCM_DEFLATE_CHUNK bytes */
    uint64_t total;         /* compressed bytes handed on */
    bool ready;
} deflater;

static cp_status deflater_run(deflater *d, int flush)
{
    int rc;

    do {
        size_t n;

        d->zs.next_out = d->buf;
        d->zs.avail_out = DCM_DEFLATE_CHUNK;
        rc = deflate(&d->zs, flush);
        if (rc == Z_STREAM_ERROR)
            return CP_ERR_INVALID;
        n = DCM_DEFLATE_CHUNK - d->zs.avail_out;
        if (n > 0) {
            cp_status st = dcm_sink_write(&d->next, d->buf, n);

            if (st != CP_OK)
                return st;
            d->total += n;
        }
    } while (d->zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    return CP_OK;
}

static cp_status deflater_write(void *ctx, const void *data, size_t len)
{
    deflater *d = ctx;
    const uint8_t *p = data;

    while (len > 0) {
        uInt n = len > 0x40000000u ? 0x40000000u : (uInt)len;
        cp_status st;

        d->zs.next_in = (Bytef *)(uintptr_t)p;
        d->zs.avail_in = n;
        st = deflater_run(d, Z_NO_FLUSH);
        if (st != CP_OK)
            return st;
        p += n;
        len -= n;
    }
    return CP_OK;
}

/* Raw deflate (RFC 1951) in front of next; an odd total gets a NUL after it. */
static cp_status deflater_start(deflater *d, const dcm_sink *next)
{
    memset(d, 0, sizeof *d);
    d->next = *next;
    d->buf = cp_malloc(DCM_DEFLATE_CHUNK);
    if (d->buf == NULL)
        return CP_ERR_NOMEM;
    if (deflateInit2(&d->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return CP_ERR_NOMEM;
    d->ready = true;
    return CP_OK;
}

static cp_status deflater_finish(deflater *d)
{
    static const uint8_t pad = 0;
    cp_status st;

    d->zs.next_in = NULL;
    d->zs.avail_in = 0;
    st = deflater_run(d, Z_FINISH);
    if (st == CP_OK && d->total % 2 != 0)
        st = dcm_sink_write(&d->next, &pad, 1);
    return st;
}

static void deflater_end(deflater *d)
{
    if (d->ready)
        deflateEnd(&d->zs);
    cp_free(d->buf);
}

/* --- files ------------------------------------------------------------------------- */

/* A UID of the data set, or failing that of the meta group, into out. */
static bool file_uid(const dcm_file *f, uint32_t tag, uint32_t meta_tag, char *out, size_t cap)
{
    if (dcm_dataset_get_string(f->dataset, tag, out, cap) == CP_OK && out[0] != '\0')
        return true;
    return f->meta != NULL && dcm_dataset_get_string(f->meta, meta_tag, out, cap) == CP_OK &&
           out[0] != '\0';
}

/* Preamble (zeros: the original may hold anything), "DICM" and a new meta group. */
static cp_status write_head(writer_out *o, const dcm_file *f)
{
    char sop_class[DCM_UID_MAX + 1], sop[DCM_UID_MAX + 1], mapped[FILM_DEIDENT_UID_MAX + 1];
    static const uint8_t preamble[128];
    cp_buf head = CP_BUF_INIT;
    cp_status st;

    if (!file_uid(f, TAG_SOP_CLASS_UID, TAG_MEDIA_SOP_CLASS, sop_class, sizeof sop_class) ||
        !file_uid(f, TAG_SOP_INSTANCE_UID, TAG_MEDIA_SOP_INSTANCE, sop, sizeof sop))
        return cp_error_set(o->err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "deident: the file has no SOP Class or Instance UID");
    st = film_deident_uid(o->d, sop, mapped, o->err);
    if (st != CP_OK)
        return st;
    st = cp_buf_append(&head, preamble, sizeof preamble);
    if (st == CP_OK)
        st = cp_buf_append(&head, "DICM", 4);
    if (st == CP_OK)
        st = dcm_write_meta_group(sop_class, strlen(sop_class), mapped, strlen(mapped),
                                  f->transfer_syntax, &head);
    if (st != CP_OK)
        st = cp_error_set(o->err, st == CP_ERR_NOMEM ? st : CP_ERR_MALFORMED,
                          CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "deident: the meta group could not be made");
    if (st == CP_OK)
        st = emit(o, head.data, head.len);
    cp_buf_free(&head);
    return st;
}

static cp_status write_file(writer_out *o, const dcm_file *f)
{
    const dcm_transfer_syntax *ts = f->transfer_syntax;
    enc e = { ts->explicit_vr, ts->big_endian };
    dcm_sink caller = o->sink;
    deflater d;
    cp_status st = write_head(o, f);

    memset(&d, 0, sizeof d);
    if (st != CP_OK || !ts->deflated)
        return st == CP_OK ? write_dataset(o, f->dataset, e, true) : st;

    st = deflater_start(&d, &caller);
    if (st != CP_OK) {
        st = cp_error_set(o->err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "deident: the deflater did not start");
        goto done;
    }
    o->sink.write = deflater_write;
    o->sink.ctx = &d;
    st = write_dataset(o, f->dataset, e, true);
    if (st == CP_OK) {
        st = deflater_finish(&d);
        if (st != CP_OK)
            st = cp_error_set(o->err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "deident: writing the deflated data set failed");
    }
done:
    o->sink = caller;
    deflater_end(&d);
    return st;
}

cp_status film_deident_file(const film_deident *d, const char *path, const dcm_sink *sink,
                            cp_error *err)
{
    /* Values above one copy piece stay in the file: small pictures are streamed too. */
    dcm_read_options ro = { .bulk_threshold = DEIDENT_CHUNK };
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    cp_error rerr;
    writer_out o;
    cp_status st;

    if (d == NULL || path == NULL || sink == NULL || sink->write == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "deident: no context, path or sink");
    cp_error_clear(&rerr);
    st = dcm_source_open_file(path, &src, &rerr);
    if (st == CP_OK)
        st = dcm_file_read(src, &ro, &file, &rerr);
    if (st == CP_OK && (file->flags & (DCM_FILE_PARTIAL | DCM_FILE_STOPPED)))
        st = CP_ERR_MALFORMED;
    if (st == CP_OK && file->transfer_syntax == NULL)
        st = CP_ERR_MALFORMED;
    if (st != CP_OK) {
        st = cp_error_set(err, CP_ERR_MALFORMED, rerr.offset, rerr.tag,
                          "deident: the file cannot be read: %s", rerr.detail);
        goto done;
    }

    memset(&o, 0, sizeof o);
    o.d = d;
    o.sink = *sink;
    o.src = src;
    o.err = err;
    st = write_file(&o, file);
    cp_free(o.chunk);

done:
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    return st;
}
