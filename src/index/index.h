/*
 * index.h - the metadata index: patients, studies, series and instances, the
 * attributes C-FIND (PS3.4 C.6) and QIDO-RS (PS3.18 10.6) match on and
 * return, the change log and study completeness.
 *
 * The index knows nothing of data sets: the archive extracts the attributes
 * of each instance, decodes them to UTF-8 and hands them over as an
 * index_instance_record. Every text field is a NUL-terminated UTF-8 string
 * no longer than its array (the limits are in core/limits.h); an empty
 * string is an absent value. Dates are YYYYMMDD, times HHMMSS[.FFFFFF].
 *
 * Patient identity is kept per issuer: the patient key is (Issuer of Patient
 * ID, Patient ID), so the same Patient ID from two clinics is two patients.
 * When the sender gave no issuer, the caller fills it from the source (the
 * archive uses the institution); if it is still empty, the index uses the
 * record's source field.
 *
 * Higher-level attributes (patient, study, series) are taken from the first
 * instance that creates the entity; later instances only add to the counts.
 *
 * An index is a small table of functions (index_backend) over an
 * implementation: SQLite (index_sqlite.c) is the default; PostgreSQL is
 * another backend behind the same table. An index is safe to use from
 * several threads at once. Callbacks must not call back into the index.
 */
#ifndef CP_INDEX_H
#define CP_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"
#include "core/status.h"

typedef struct index_db index_db;

/* --- records ------------------------------------------------------------- */

/* Integer Strings (IS) that were absent in the instance. */
#define INDEX_NUMBER_NONE INT64_MIN

/* Length of the content hash the caller computes over the stored bytes. */
#define INDEX_HASH_SIZE 32

/* Bits of index_instance.charset_flags. */
enum {
    /* Some text value of the instance was not plain ASCII. */
    INDEX_CHARSET_NON_ASCII = 1u << 0,
    /* Decoding to UTF-8 replaced characters it could not map. */
    INDEX_CHARSET_LOSSY = 1u << 1,
    /* The instance used code extensions (ISO 2022 escapes, PS3.5 6.1.2.5). */
    INDEX_CHARSET_ISO2022 = 1u << 2,
};

/* A Person Name (PN) by component group (PS3.5 6.2.1.2). */
typedef struct index_person_name {
    char alphabetic[INDEX_PN_GROUP_MAX + 1];
    char ideographic[INDEX_PN_GROUP_MAX + 1];
    char phonetic[INDEX_PN_GROUP_MAX + 1];
} index_person_name;

typedef struct index_patient {
    char id[INDEX_LO_MAX + 1];                  /* PatientID (0010,0020) */
    char issuer[INDEX_LO_MAX + 1];              /* IssuerOfPatientID (0010,0021) */
    index_person_name name;                     /* PatientName (0010,0010) */
    char birth_date[INDEX_DA_MAX + 1];          /* PatientBirthDate (0010,0030) */
    char sex[INDEX_CS_MAX + 1];                 /* PatientSex (0010,0040) */
} index_patient;

typedef struct index_study {
    char uid[INDEX_UID_MAX + 1];                /* StudyInstanceUID, required */
    char date[INDEX_DA_MAX + 1];                /* StudyDate */
    char time[INDEX_TM_MAX + 1];                /* StudyTime */
    char accession[INDEX_SH_MAX + 1];           /* AccessionNumber */
    index_person_name referring;                /* ReferringPhysicianName */
    char description[INDEX_LO_MAX + 1];         /* StudyDescription */
    char id[INDEX_SH_MAX + 1];                  /* StudyID */
} index_study;

typedef struct index_series {
    char uid[INDEX_UID_MAX + 1];                /* SeriesInstanceUID, required */
    char modality[INDEX_CS_MAX + 1];            /* Modality */
    int64_t number;                             /* SeriesNumber or INDEX_NUMBER_NONE */
    char description[INDEX_LO_MAX + 1];         /* SeriesDescription */
    char body_part[INDEX_CS_MAX + 1];           /* BodyPartExamined */
    char date[INDEX_DA_MAX + 1];                /* SeriesDate */
    char time[INDEX_TM_MAX + 1];                /* SeriesTime */
} index_series;

typedef struct index_instance {
    char sop_uid[INDEX_UID_MAX + 1];            /* SOPInstanceUID, required */
    char sop_class_uid[INDEX_UID_MAX + 1];      /* SOPClassUID */
    int64_t number;                             /* InstanceNumber or INDEX_NUMBER_NONE */
    char transfer_syntax[INDEX_UID_MAX + 1];    /* as stored */
    uint32_t frames;                            /* NumberOfFrames, 0 when absent */
    uint32_t rows;
    uint32_t columns;
    char blob_key[INDEX_BLOB_KEY_MAX + 1];      /* where the blob store keeps it */
    uint64_t size;                              /* bytes of the stored blob */
    uint8_t hash[INDEX_HASH_SIZE];              /* over the stored bytes */
    char source[INDEX_SOURCE_MAX + 1];          /* calling AE title or import path */
    int64_t institution_id;                     /* the sending institution */
    int64_t received_us;                        /* µs since 1970 UTC; 0 = now */
    uint32_t charset_flags;                     /* INDEX_CHARSET_* */
} index_instance;

typedef struct index_instance_record {
    index_patient patient;
    index_study study;
    index_series series;
    index_instance instance;
} index_instance_record;

/* --- storing ------------------------------------------------------------- */

typedef enum {
    INDEX_STORED_NEW,   /* the instance was not in the index; now it is */
    INDEX_SAME,         /* already there with the same hash: an idempotent resend */
    INDEX_DIFFERENT,    /* already there with another hash; nothing changed */
    INDEX_REPLACED,     /* already there with another hash; replaced (INDEX_PUT_REPLACE) */
} index_outcome;

enum {
    /*
     * Replace an instance already indexed with a different hash. Without it
     * such a put reports INDEX_DIFFERENT and leaves the index as it was, so
     * that the caller can apply its keep/overwrite/reject policy.
     */
    INDEX_PUT_REPLACE = 1u << 0,
};

typedef struct index_put_result {
    index_outcome outcome;
    int64_t change_seq;                         /* the change logged, or 0 */
    /* For SAME, DIFFERENT and REPLACED: where the existing blob was. */
    char old_blob_key[INDEX_BLOB_KEY_MAX + 1];
} index_put_result;

/* --- the change log -------------------------------------------------------- */

typedef enum {
    INDEX_CHANGE_STORED = 1,
    INDEX_CHANGE_REPLACED = 2,
    INDEX_CHANGE_DELETED = 3,
    /* Added for study completion: index_mark_study_complete announced it. */
    INDEX_CHANGE_STUDY_COMPLETE = 4,
} index_change_kind;

typedef struct index_change {
    int64_t seq;                                /* increasing, never reused */
    index_change_kind kind;
    int64_t time_us;
    int64_t institution_id;
    char study_uid[INDEX_UID_MAX + 1];
    char series_uid[INDEX_UID_MAX + 1];
    char sop_uid[INDEX_UID_MAX + 1];
} index_change;

/* Called per change, in order; a status other than CP_OK stops the walk. */
typedef cp_status (*index_change_fn)(void *ctx, const index_change *change);

/* Called per instance removed by a delete, after the removal is committed. */
typedef void (*index_deleted_fn)(void *ctx, const char *sop_uid, const char *blob_key);

/* --- queries ------------------------------------------------------------- */

typedef enum {
    INDEX_LEVEL_STUDY,
    INDEX_LEVEL_SERIES,
    INDEX_LEVEL_INSTANCE,
} index_level;

/*
 * One matching key. `attribute` is a keyword from the list below or the
 * tag as 8 hexadecimal digits ("00100010"); `value` follows PS3.4 C.2.2.2:
 *
 *   ""                  universal match: no restriction
 *   "ABC"               single value (exact; PN case-insensitive)
 *   "1.2.3\1.2.4"       list of UIDs; also accepted, without wildcards,
 *                       for the text keys (Modality "CT\MR", as many
 *                       SCUs send it)
 *   "AB*", "A?C"        wildcards (not for UI, DA, TM and numbers)
 *   "20200101-20201231", "-20201231", "20200101-"
 *                       ranges (DA, TM); a partial bound ("2020-")
 *                       compares as a prefix
 *
 * Keys at the query level and above are accepted:
 *   study:    PatientID IssuerOfPatientID PatientName PatientBirthDate
 *             PatientSex StudyInstanceUID StudyDate StudyTime AccessionNumber
 *             ReferringPhysicianName StudyDescription StudyID
 *             ModalitiesInStudy (any of the listed modalities)
 *   series:   SeriesInstanceUID Modality SeriesNumber SeriesDescription
 *             BodyPartExamined SeriesDate SeriesTime
 *   instance: SOPInstanceUID SOPClassUID InstanceNumber
 * A StudyInstanceUID (or SeriesInstanceUID) key at a lower level is how a
 * query is restricted to one parent (QIDO-RS /studies/{uid}/series).
 *
 * Person names match case-insensitively. A value without '=' matches any
 * component group; "Yamada^Tarou=山田^太郎" matches group by group. With
 * INDEX_QUERY_FUZZY, each word of a PN value (split on '^' and spaces)
 * matches the start of some component of the name, in any group
 * (QIDO-RS fuzzymatching=true).
 */
typedef struct index_term {
    const char *attribute;
    const char *value;
} index_term;

enum {
    INDEX_QUERY_FUZZY = 1u << 0,
};

typedef struct index_query_spec {
    index_level level;
    const index_term *terms;
    size_t term_count;                          /* at most INDEX_QUERY_TERMS_MAX */
    unsigned flags;                             /* INDEX_QUERY_* */
    uint64_t limit;                             /* rows at most; 0 = no limit */
    uint64_t offset;                            /* rows skipped first */
    /*
     * Authorisation: NULL means every institution; otherwise only rows of
     * the listed institutions (none at all when institution_count is 0).
     * A study, series or instance belongs to the institution that sent its
     * first instance.
     */
    const int64_t *institutions;
    size_t institution_count;
    /*
     * Added: rows of these studies (Study Instance UIDs) are in scope
     * whatever their institution, when `institutions` limits it: the
     * studies a reading order opens. At most INDEX_QUERY_STUDIES_MAX.
     */
    const char *const *also_studies;
    size_t also_study_count;
} index_query_spec;

/*
 * One result. The record holds the entity and its parents; the fields of
 * levels below the query level are empty. Results come in the order the
 * entities were first indexed, so that limit and offset page stably.
 */
typedef struct index_row {
    index_level level;
    index_instance_record rec;
    int64_t institution_id;                     /* of the entity at the query level */
    uint32_t study_series;                      /* NumberOfStudyRelatedSeries */
    uint32_t study_instances;                   /* NumberOfStudyRelatedInstances */
    uint32_t series_instances;                  /* NumberOfSeriesRelatedInstances */
    char modalities_in_study[INDEX_MODALITIES_MAX + 1];
    int64_t study_last_arrival_us;
} index_row;

/* Called per row; CP_ERR_STOPPED ends the query early with success. */
typedef cp_status (*index_row_fn)(void *ctx, const index_row *row);

/* --- the backend table ----------------------------------------------------- */

/* What a backend implements; `impl` is the backend's own state. */
typedef struct index_backend {
    const char *name;
    cp_status (*schema_version)(void *impl, int *version, cp_error *err);
    cp_status (*put)(void *impl, const index_instance_record *recs, size_t count,
                     unsigned flags, index_put_result *results, cp_error *err);
    cp_status (*delete_instance)(void *impl, const char *sop_uid, index_deleted_fn fn,
                                 void *ctx, cp_error *err);
    cp_status (*delete_series)(void *impl, const char *series_uid, index_deleted_fn fn,
                               void *ctx, cp_error *err);
    cp_status (*delete_study)(void *impl, const char *study_uid, index_deleted_fn fn,
                              void *ctx, cp_error *err);
    cp_status (*changes_since)(void *impl, int64_t position, size_t limit, index_change_fn fn,
                               void *ctx, cp_error *err);
    cp_status (*last_change)(void *impl, int64_t *seq, cp_error *err);
    cp_status (*quiet_studies)(void *impl, int64_t cutoff_us, size_t limit, index_row_fn fn,
                               void *ctx, cp_error *err);
    cp_status (*mark_complete)(void *impl, const char *study_uid, int64_t seen_arrival_us,
                               cp_error *err);
    cp_status (*query)(void *impl, const index_query_spec *q, index_row_fn fn, void *ctx,
                       cp_error *err);
    void (*destroy)(void *impl);
} index_backend;

/*
 * An index over a backend; the index owns impl and calls backend->destroy
 * on it. NULL on OOM (impl is destroyed then too).
 */
index_db *index_create(const index_backend *backend, void *impl);

/*
 * The SQLite index in the file at path (created if missing), in WAL mode,
 * with every schema migration this build knows applied. CP_ERR_UNSUPPORTED
 * when the file was written by a newer schema.
 */
cp_status index_open_sqlite(const char *path, index_db **out, cp_error *err);

void index_destroy(index_db *idx);

/* The backend's name ("sqlite"). */
const char *index_backend_name(const index_db *idx);

/* The schema version of the open index (the number of migrations applied). */
cp_status index_schema_version(index_db *idx, int *version, cp_error *err);

/*
 * Indexes one instance: patient, study, series and instance are upserted in
 * one transaction with the counts, ModalitiesInStudy and the change log. The
 * transaction is durable when this returns CP_OK: the caller may
 * acknowledge the instance then. result receives the outcome. Puts from
 * several threads at once may share one transaction (group commit), each
 * standing or failing on its own.
 */
cp_status index_put_instance(index_db *idx, const index_instance_record *rec, unsigned flags,
                             index_put_result *result, cp_error *err);

/*
 * Indexes count instances (at most INDEX_BATCH_MAX) in one transaction, for
 * bulk imports: results[i] is the outcome of recs[i]. The batch stands or
 * fails as a whole: when a record fails validation, or storing one fails,
 * nothing of the batch is stored.
 */
cp_status index_put_instances(index_db *idx, const index_instance_record *recs, size_t count,
                              unsigned flags, index_put_result *results, cp_error *err);

/*
 * Remove an instance, a series or a study with everything under it, keeping
 * counts and ModalitiesInStudy right and logging one INDEX_CHANGE_DELETED per
 * instance. Emptied parents go too (a series without instances, a study
 * without series, a patient without studies). fn (may be NULL) then receives
 * each removed instance's blob key, for the caller to remove the blobs.
 * CP_ERR_NOT_FOUND when the UID is not indexed.
 */
cp_status index_delete_instance(index_db *idx, const char *sop_uid, index_deleted_fn fn,
                                void *ctx, cp_error *err);
cp_status index_delete_series(index_db *idx, const char *series_uid, index_deleted_fn fn,
                              void *ctx, cp_error *err);
cp_status index_delete_study(index_db *idx, const char *study_uid, index_deleted_fn fn,
                             void *ctx, cp_error *err);

/*
 * The changes after position (0 for all), oldest first, at most limit of
 * them (0 = no limit). A reader keeps the seq of the last change it handled
 * and asks again from there.
 */
cp_status index_changes_since(index_db *idx, int64_t position, size_t limit, index_change_fn fn,
                              void *ctx, cp_error *err);

/* The seq of the newest change, or 0 when the log is empty. */
cp_status index_last_change(index_db *idx, int64_t *seq, cp_error *err);

/*
 * Studies whose last instance arrived before cutoff_us and that were not
 * announced as complete since: rows at study level, oldest arrival first, at
 * most limit (0 = no limit). The caller announces each and then calls
 * index_mark_study_complete with the row's study_last_arrival_us.
 */
cp_status index_studies_quiet_since(index_db *idx, int64_t cutoff_us, size_t limit,
                                    index_row_fn fn, void *ctx, cp_error *err);

/*
 * Marks a study as announced. When an instance arrived after
 * seen_arrival_us (the study is still growing), nothing changes and
 * CP_ERR_AGAIN is returned: the study will be quiet again later. A new
 * instance of an announced study makes it eligible again.
 */
cp_status index_mark_study_complete(index_db *idx, const char *study_uid, int64_t seen_arrival_us,
                                    cp_error *err);

/*
 * Runs a query; fn receives each matching row. CP_ERR_UNSUPPORTED names an
 * attribute the index does not match on at that level (see
 * index_attribute_supported); CP_ERR_INVALID a value that breaks the
 * matching rules (a wildcard in a UID, a malformed range).
 */
cp_status index_query(index_db *idx, const index_query_spec *q, index_row_fn fn, void *ctx,
                      cp_error *err);

/*
 * Whether a keyword (or 8-digit hexadecimal tag) is matched by the index at
 * the given query level, so that callers can drop the keys it does not know
 * (C-FIND returns them empty) before querying.
 */
bool index_attribute_supported(const char *attribute, index_level level);

/*
 * Checks a record before it is stored: required UIDs present, every text
 * field NUL-terminated within its array and valid UTF-8. Backends call it;
 * callers may too.
 */
cp_status index_record_check(const index_instance_record *rec, cp_error *err);

/* --- for backends: the attributes the index matches on -------------------- */

typedef enum {
    INDEX_ATTR_PATIENT_ID,
    INDEX_ATTR_ISSUER,
    INDEX_ATTR_PATIENT_NAME,
    INDEX_ATTR_BIRTH_DATE,
    INDEX_ATTR_SEX,
    INDEX_ATTR_STUDY_UID,
    INDEX_ATTR_STUDY_DATE,
    INDEX_ATTR_STUDY_TIME,
    INDEX_ATTR_ACCESSION,
    INDEX_ATTR_REFERRING,
    INDEX_ATTR_STUDY_DESCRIPTION,
    INDEX_ATTR_STUDY_ID,
    INDEX_ATTR_MODALITIES,
    INDEX_ATTR_SERIES_UID,
    INDEX_ATTR_MODALITY,
    INDEX_ATTR_SERIES_NUMBER,
    INDEX_ATTR_SERIES_DESCRIPTION,
    INDEX_ATTR_BODY_PART,
    INDEX_ATTR_SERIES_DATE,
    INDEX_ATTR_SERIES_TIME,
    INDEX_ATTR_SOP_UID,
    INDEX_ATTR_SOP_CLASS_UID,
    INDEX_ATTR_INSTANCE_NUMBER,
    INDEX_ATTR_COUNT
} index_attr;

/* How values of an attribute match (PS3.4 C.2.2.2). */
typedef enum {
    INDEX_KIND_TEXT,        /* single value or wildcard, case-sensitive */
    INDEX_KIND_UID,         /* single value or list of UIDs */
    INDEX_KIND_DATE,        /* single value or range */
    INDEX_KIND_TIME,        /* single value or range */
    INDEX_KIND_PN,          /* single value or wildcard, case-insensitive, by group */
    INDEX_KIND_NUMBER,      /* a single integer */
    INDEX_KIND_MODALITIES,  /* any of a list of CS values */
} index_kind;

typedef struct index_attr_info {
    index_attr id;
    const char *keyword;
    uint32_t tag;
    index_level level;      /* its entity's level: a key there and below ... */
    bool patient;           /* ... or the patient's, keyed at study level */
    index_kind kind;
} index_attr_info;

/* The attribute named by keyword or 8-digit hexadecimal tag, or NULL. */
const index_attr_info *index_attribute_find(const char *attribute);

#endif
