/*
 * index.c - the metadata index's front: record checks, the table of
 * attributes that queries match on (PS3.4 C.6.1.1 and PS3.18 10.6.1.2 name
 * the keys of each level), then the backend's table.
 */
#include "index/index.h"

#include <string.h>

#include "core/alloc.h"

struct index_db {
    const index_backend *backend;
    void *impl;
};

static const index_attr_info index_attrs[INDEX_ATTR_COUNT] = {
    { INDEX_ATTR_PATIENT_ID, "PatientID", 0x00100020, INDEX_LEVEL_STUDY, true,
      INDEX_KIND_TEXT },
    { INDEX_ATTR_ISSUER, "IssuerOfPatientID", 0x00100021, INDEX_LEVEL_STUDY, true,
      INDEX_KIND_TEXT },
    { INDEX_ATTR_PATIENT_NAME, "PatientName", 0x00100010, INDEX_LEVEL_STUDY, true,
      INDEX_KIND_PN },
    { INDEX_ATTR_BIRTH_DATE, "PatientBirthDate", 0x00100030, INDEX_LEVEL_STUDY, true,
      INDEX_KIND_DATE },
    { INDEX_ATTR_SEX, "PatientSex", 0x00100040, INDEX_LEVEL_STUDY, true, INDEX_KIND_TEXT },
    { INDEX_ATTR_STUDY_UID, "StudyInstanceUID", 0x0020000D, INDEX_LEVEL_STUDY, false,
      INDEX_KIND_UID },
    { INDEX_ATTR_STUDY_DATE, "StudyDate", 0x00080020, INDEX_LEVEL_STUDY, false,
      INDEX_KIND_DATE },
    { INDEX_ATTR_STUDY_TIME, "StudyTime", 0x00080030, INDEX_LEVEL_STUDY, false,
      INDEX_KIND_TIME },
    { INDEX_ATTR_ACCESSION, "AccessionNumber", 0x00080050, INDEX_LEVEL_STUDY, false,
      INDEX_KIND_TEXT },
    { INDEX_ATTR_REFERRING, "ReferringPhysicianName", 0x00080090, INDEX_LEVEL_STUDY, false,
      INDEX_KIND_PN },
    { INDEX_ATTR_STUDY_DESCRIPTION, "StudyDescription", 0x00081030, INDEX_LEVEL_STUDY, false,
      INDEX_KIND_TEXT },
    { INDEX_ATTR_STUDY_ID, "StudyID", 0x00200010, INDEX_LEVEL_STUDY, false, INDEX_KIND_TEXT },
    { INDEX_ATTR_MODALITIES, "ModalitiesInStudy", 0x00080061, INDEX_LEVEL_STUDY, false,
      INDEX_KIND_MODALITIES },
    { INDEX_ATTR_SERIES_UID, "SeriesInstanceUID", 0x0020000E, INDEX_LEVEL_SERIES, false,
      INDEX_KIND_UID },
    { INDEX_ATTR_MODALITY, "Modality", 0x00080060, INDEX_LEVEL_SERIES, false,
      INDEX_KIND_TEXT },
    { INDEX_ATTR_SERIES_NUMBER, "SeriesNumber", 0x00200011, INDEX_LEVEL_SERIES, false,
      INDEX_KIND_NUMBER },
    { INDEX_ATTR_SERIES_DESCRIPTION, "SeriesDescription", 0x0008103E, INDEX_LEVEL_SERIES,
      false, INDEX_KIND_TEXT },
    { INDEX_ATTR_BODY_PART, "BodyPartExamined", 0x00180015, INDEX_LEVEL_SERIES, false,
      INDEX_KIND_TEXT },
    { INDEX_ATTR_SERIES_DATE, "SeriesDate", 0x00080021, INDEX_LEVEL_SERIES, false,
      INDEX_KIND_DATE },
    { INDEX_ATTR_SERIES_TIME, "SeriesTime", 0x00080031, INDEX_LEVEL_SERIES, false,
      INDEX_KIND_TIME },
    { INDEX_ATTR_SOP_UID, "SOPInstanceUID", 0x00080018, INDEX_LEVEL_INSTANCE, false,
      INDEX_KIND_UID },
    { INDEX_ATTR_SOP_CLASS_UID, "SOPClassUID", 0x00080016, INDEX_LEVEL_INSTANCE, false,
      INDEX_KIND_UID },
    { INDEX_ATTR_INSTANCE_NUMBER, "InstanceNumber", 0x00200013, INDEX_LEVEL_INSTANCE, false,
      INDEX_KIND_NUMBER },
};

index_db *index_create(const index_backend *backend, void *impl)
{
    index_db *idx = cp_calloc(1, sizeof *idx);

    if (idx == NULL) {
        backend->destroy(impl);
        return NULL;
    }
    idx->backend = backend;
    idx->impl = impl;
    return idx;
}

void index_destroy(index_db *idx)
{
    if (idx == NULL)
        return;
    idx->backend->destroy(idx->impl);
    cp_free(idx);
}

const char *index_backend_name(const index_db *idx)
{
    return idx->backend->name;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* An 8-digit hexadecimal tag ("0020000D"), or false. */
static bool parse_tag(const char *s, uint32_t *tag)
{
    uint32_t v = 0;

    for (int i = 0; i < 8; i++) {
        int d = hex_digit(s[i]);

        if (d < 0)
            return false;
        v = v << 4 | (uint32_t)d;
    }
    if (s[8] != '\0')
        return false;
    *tag = v;
    return true;
}

const index_attr_info *index_attribute_find(const char *attribute)
{
    uint32_t tag;
    bool by_tag;

    if (attribute == NULL)
        return NULL;
    by_tag = parse_tag(attribute, &tag);
    for (size_t i = 0; i < INDEX_ATTR_COUNT; i++) {
        if (by_tag ? index_attrs[i].tag == tag
                   : strcmp(index_attrs[i].keyword, attribute) == 0)
            return &index_attrs[i];
    }
    return NULL;
}

bool index_attribute_supported(const char *attribute, index_level level)
{
    const index_attr_info *info = index_attribute_find(attribute);

    return info != NULL && info->level <= level;
}

/* Whether s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

static cp_status check_text(const char *field, size_t size, const char *what, bool required,
                            cp_error *err)
{
    const char *nul = memchr(field, '\0', size);

    if (nul == NULL)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%s is longer than %zu bytes", what, size - 1);
    if (required && nul == field)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%s is missing", what);
    if (!utf8_valid((const unsigned char *)field, (size_t)(nul - field)))
        return cp_error_set(err, CP_ERR_CHARSET, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%s is not valid UTF-8", what);
    return CP_OK;
}

#define CHECK(field, what, required)                                               \
    do {                                                                            \
        cp_status rc_ = check_text((field), sizeof(field), (what), (required), err); \
        if (rc_ != CP_OK)                                                           \
            return rc_;                                                             \
    } while (0)

static cp_status check_name(const index_person_name *pn, const char *what, cp_error *err)
{
    CHECK(pn->alphabetic, what, false);
    CHECK(pn->ideographic, what, false);
    CHECK(pn->phonetic, what, false);
    return CP_OK;
}

cp_status index_record_check(const index_instance_record *rec, cp_error *err)
{
    const index_patient *p = &rec->patient;
    const index_study *st = &rec->study;
    const index_series *se = &rec->series;
    const index_instance *in = &rec->instance;
    cp_status rc;

    CHECK(p->id, "PatientID", false);
    CHECK(p->issuer, "IssuerOfPatientID", false);
    if ((rc = check_name(&p->name, "PatientName", err)) != CP_OK)
        return rc;
    CHECK(p->birth_date, "PatientBirthDate", false);
    CHECK(p->sex, "PatientSex", false);

    CHECK(st->uid, "StudyInstanceUID", true);
    CHECK(st->date, "StudyDate", false);
    CHECK(st->time, "StudyTime", false);
    CHECK(st->accession, "AccessionNumber", false);
    if ((rc = check_name(&st->referring, "ReferringPhysicianName", err)) != CP_OK)
        return rc;
    CHECK(st->description, "StudyDescription", false);
    CHECK(st->id, "StudyID", false);

    CHECK(se->uid, "SeriesInstanceUID", true);
    CHECK(se->modality, "Modality", false);
    CHECK(se->description, "SeriesDescription", false);
    CHECK(se->body_part, "BodyPartExamined", false);
    CHECK(se->date, "SeriesDate", false);
    CHECK(se->time, "SeriesTime", false);

    CHECK(in->sop_uid, "SOPInstanceUID", true);
    CHECK(in->sop_class_uid, "SOPClassUID", false);
    CHECK(in->transfer_syntax, "TransferSyntaxUID", false);
    CHECK(in->blob_key, "blob key", true);
    CHECK(in->source, "source", false);
    return CP_OK;
}

#undef CHECK

cp_status index_schema_version(index_db *idx, int *version, cp_error *err)
{
    return idx->backend->schema_version(idx->impl, version, err);
}

cp_status index_put_instances(index_db *idx, const index_instance_record *recs, size_t count,
                              unsigned flags, index_put_result *results, cp_error *err)
{
    if (count == 0)
        return CP_OK;
    if (count > INDEX_BATCH_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "batch of %zu instances exceeds %d", count, INDEX_BATCH_MAX);

    for (size_t i = 0; i < count; i++) {
        cp_status rc = index_record_check(&recs[i], err);

        if (rc != CP_OK)
            return rc;
    }
    return idx->backend->put(idx->impl, recs, count, flags, results, err);
}

cp_status index_put_instance(index_db *idx, const index_instance_record *rec, unsigned flags,
                             index_put_result *result, cp_error *err)
{
    return index_put_instances(idx, rec, 1, flags, result, err);
}

static cp_status check_uid_arg(const char *uid, cp_error *err)
{
    if (uid != NULL && uid[0] != '\0' && strnlen(uid, INDEX_UID_MAX + 1) <= INDEX_UID_MAX)
        return CP_OK;
    return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "missing or overlong UID");
}

cp_status index_delete_instance(index_db *idx, const char *sop_uid, index_deleted_fn fn,
                                void *ctx, cp_error *err)
{
    cp_status rc = check_uid_arg(sop_uid, err);

    if (rc != CP_OK)
        return rc;
    return idx->backend->delete_instance(idx->impl, sop_uid, fn, ctx, err);
}

cp_status index_delete_series(index_db *idx, const char *series_uid, index_deleted_fn fn,
                              void *ctx, cp_error *err)
{
    cp_status rc = check_uid_arg(series_uid, err);

    if (rc != CP_OK)
        return rc;
    return idx->backend->delete_series(idx->impl, series_uid, fn, ctx, err);
}

cp_status index_delete_study(index_db *idx, const char *study_uid, index_deleted_fn fn,
                             void *ctx, cp_error *err)
{
    cp_status rc = check_uid_arg(study_uid, err);

    if (rc != CP_OK)
        return rc;
    return idx->backend->delete_study(idx->impl, study_uid, fn, ctx, err);
}

cp_status index_changes_since(index_db *idx, int64_t position, size_t limit, index_change_fn fn,
                              void *ctx, cp_error *err)
{
    return idx->backend->changes_since(idx->impl, position, limit, fn, ctx, err);
}

cp_status index_last_change(index_db *idx, int64_t *seq, cp_error *err)
{
    return idx->backend->last_change(idx->impl, seq, err);
}

cp_status index_studies_quiet_since(index_db *idx, int64_t cutoff_us, size_t limit,
                                    index_row_fn fn, void *ctx, cp_error *err)
{
    return idx->backend->quiet_studies(idx->impl, cutoff_us, limit, fn, ctx, err);
}

cp_status index_mark_study_complete(index_db *idx, const char *study_uid, int64_t seen_arrival_us,
                                    cp_error *err)
{
    cp_status rc = check_uid_arg(study_uid, err);

    if (rc != CP_OK)
        return rc;
    return idx->backend->mark_complete(idx->impl, study_uid, seen_arrival_us, err);
}

cp_status index_query(index_db *idx, const index_query_spec *q, index_row_fn fn, void *ctx,
                      cp_error *err)
{
    if (q->term_count > INDEX_QUERY_TERMS_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%zu query keys exceed %d", q->term_count,
                            INDEX_QUERY_TERMS_MAX);
    if (q->institutions != NULL && q->institution_count > INDEX_QUERY_LIST_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%zu institutions exceed %d", q->institution_count,
                            INDEX_QUERY_LIST_MAX);
    if (q->also_studies != NULL && q->also_study_count > INDEX_QUERY_STUDIES_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%zu studies exceed %d", q->also_study_count,
                            INDEX_QUERY_STUDIES_MAX);
    if ((unsigned)q->level > INDEX_LEVEL_INSTANCE)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "unknown query level");

    for (size_t i = 0; i < q->term_count; i++) {
        const index_term *t = &q->terms[i];
        const index_attr_info *info = index_attribute_find(t->attribute);

        if (info == NULL || info->level > q->level)
            return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET,
                                info != NULL ? info->tag : CP_ERROR_NO_TAG,
                                "no matching on %.64s at this level",
                                t->attribute != NULL ? t->attribute : "(null)");
        if (t->value == NULL ||
            strnlen(t->value, INDEX_QUERY_VALUE_MAX + 1) > INDEX_QUERY_VALUE_MAX)
            return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, info->tag,
                                "missing or overlong value for %s", info->keyword);
    }
    return idx->backend->query(idx->impl, q, fn, ctx, err);
}
