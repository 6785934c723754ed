/*
 * dicomdir.h - the DICOMDIR of the patient's download (PS3.10 8, PS3.3
 * F.5, the Basic Directory IOD): a Media Storage Directory (SOP class
 * 1.2.840.10008.1.3.10) in Explicit VR Little Endian that lists one
 * patient, one study, its series and their instances, so that a viewer
 * opening the unpacked archive (or a disc burnt from it) finds them.
 *
 * Records are collected as the files stream: film_dicomdir_add gives each
 * instance its file ID (DICOM\PAT00001\STU00001\SERnnnnn\IMGnnnnn, each
 * component at most 8 uppercase characters or digits, PS3.10 8.5) and
 * keeps a few hundred bytes of it. film_dicomdir_write then writes the
 * whole DICOMDIR, record by record; the offsets in it (of the first and
 * last root records, of each next and lower-level record) count bytes of
 * the DICOMDIR file itself, so it can be the last entry of the archive.
 *
 * Record types by SOP class: ENCAP DOC for encapsulated documents
 * (1.2.840.10008.5.1.4.1.1.104.*), SR DOCUMENT for structured reports
 * (1.2.840.10008.5.1.4.1.1.88.*), IMAGE for everything else, with the keys
 * PS3.3 F.5 requires of each (Table F.5-3 ff.): values the caller does not
 * give are written empty, except the Series and Instance Numbers (type 1
 * there), which then get the series' or file's place.
 */
#ifndef CP_FILM_DICOMDIR_H
#define CP_FILM_DICOMDIR_H

#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"
#include "core/status.h"
#include "dicom/io.h"
#include "index/index.h"

/* A file ID as a ZIP name ("DICOM/PAT00001/STU00001/SER00001/IMG00001") with its NUL. */
#define FILM_DICOMDIR_PATH_MAX 48

/* Series and instances per series the file IDs can number (5 digits). */
#define FILM_DICOMDIR_SERIES_MAX 99999
#define FILM_DICOMDIR_FILES_MAX 99999

/* The Media Storage Directory Storage SOP class. */
#define FILM_DICOMDIR_SOP_CLASS "1.2.840.10008.1.3.10"

typedef struct film_dicomdir film_dicomdir;

/* The PATIENT and STUDY records' keys (copied; NULL or "" writes an empty value). */
typedef struct film_dicomdir_study {
    const char *patient_name;           /* PN, as it is stored (UTF-8) */
    const char *patient_id;
    const char *study_uid;              /* required */
    const char *study_date;
    const char *study_time;
    const char *study_description;
    const char *study_id;
    const char *accession;
} film_dicomdir_study;

/* One instance as it goes into the archive (strings copied; NULL or "" is empty). */
typedef struct film_dicomdir_file {
    const char *series_uid;             /* required */
    const char *modality;
    int64_t series_number;              /* INDEX_NUMBER_NONE: none */
    const char *sop_class_uid;          /* required */
    const char *sop_uid;                /* required */
    const char *transfer_syntax;        /* required */
    int64_t instance_number;            /* INDEX_NUMBER_NONE: none */
    /* For SR DOCUMENT and ENCAP DOC records, from the file when the caller reads it. */
    const char *content_date;
    const char *content_time;
    const char *completion_flag;        /* SR */
    const char *verification_flag;      /* SR */
    const char *verification_datetime;  /* SR, when VERIFIED: the latest verifier's */
    const char *concept_value;          /* the first Concept Name Code Sequence item */
    const char *concept_scheme;
    const char *concept_meaning;
    const char *document_title;         /* ENCAP DOC */
    const char *mime_type;              /* ENCAP DOC; "" means application/pdf */
} film_dicomdir_file;

/* An empty directory for one study; *out is freed by film_dicomdir_free. */
cp_status film_dicomdir_new(const film_dicomdir_study *study, film_dicomdir **out,
                            cp_error *err);

void film_dicomdir_free(film_dicomdir *d);

/*
 * Records f and gives its place: path (FILM_DICOMDIR_PATH_MAX) gets the
 * file ID with '/' separators, the name of its ZIP entry. Series are
 * numbered in the order first seen. CP_ERR_LIMIT past
 * FILM_DICOMDIR_SERIES_MAX series or FILM_DICOMDIR_FILES_MAX files in a
 * series; CP_ERR_INVALID for a missing required value or a UID longer than
 * 64 bytes.
 */
cp_status film_dicomdir_add(film_dicomdir *d, const film_dicomdir_file *f, char *path,
                            cp_error *err);

/* Files added so far. */
size_t film_dicomdir_count(const film_dicomdir *d);

/*
 * Writes the DICOMDIR (preamble, meta group, data set) to sink, File-set
 * ID fileset_id (at most 16 characters of A-Z, 0-9, '_' and space; NULL:
 * none). The SOP Instance UID of the DICOMDIR is a new "2.25." UID.
 */
cp_status film_dicomdir_write(const film_dicomdir *d, const char *fileset_id,
                              const dcm_sink *sink, cp_error *err);

#endif
