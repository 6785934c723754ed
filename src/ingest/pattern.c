/*
 * pattern.c - export file names from a pattern and an index row
 * (pattern.h). Values are UTF-8 from the index (PS3.5 6.1 decoded there);
 * cutting to INGEST_FIELD_MAX bytes never splits a UTF-8 sequence.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/limits.h"
#include "ingest/pattern.h"

typedef enum {
    F_PATIENT_ID, F_PATIENT_NAME, F_ISSUER, F_BIRTH_DATE, F_SEX,
    F_STUDY_UID, F_STUDY_DATE, F_STUDY_TIME, F_ACCESSION, F_STUDY_DESCRIPTION, F_STUDY_ID,
    F_SERIES_UID, F_MODALITY, F_SERIES_NUMBER, F_SERIES_DESCRIPTION,
    F_SOP_UID, F_SOP_CLASS_UID, F_INSTANCE_NUMBER,
    F_ORDER_ID,
} field_id;

static const struct {
    const char *keyword;
    field_id id;
} fields[] = {
    { "PatientID", F_PATIENT_ID },
    { "PatientName", F_PATIENT_NAME },
    { "IssuerOfPatientID", F_ISSUER },
    { "PatientBirthDate", F_BIRTH_DATE },
    { "PatientSex", F_SEX },
    { "StudyInstanceUID", F_STUDY_UID },
    { "StudyDate", F_STUDY_DATE },
    { "StudyTime", F_STUDY_TIME },
    { "AccessionNumber", F_ACCESSION },
    { "StudyDescription", F_STUDY_DESCRIPTION },
    { "StudyID", F_STUDY_ID },
    { "SeriesInstanceUID", F_SERIES_UID },
    { "Modality", F_MODALITY },
    { "SeriesNumber", F_SERIES_NUMBER },
    { "SeriesDescription", F_SERIES_DESCRIPTION },
    { "SOPInstanceUID", F_SOP_UID },
    { "SOPClassUID", F_SOP_CLASS_UID },
    { "InstanceNumber", F_INSTANCE_NUMBER },
    { "OrderID", F_ORDER_ID },
};

static int field_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strlen(fields[i].keyword) == len && memcmp(fields[i].keyword, name, len) == 0)
            return (int)fields[i].id;
    return -1;
}

static cp_status bad(cp_error *err, const char *what)
{
    return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "pattern: %s", what);
}

cp_status pattern_check(const char *pattern, cp_error *err)
{
    const char *p = pattern;
    const char *component = pattern;

    if (pattern[0] == '\0' || pattern[0] == '/')
        return bad(err, "empty or absolute");
    for (; *p != '\0'; p++) {
        if (*p == '\\')
            return bad(err, "a backslash");
        if (*p == '}')
            return bad(err, "a '}' without '{'");
        if (*p == '{') {
            const char *end = strchr(p, '}');

            if (end == NULL)
                return bad(err, "a '{' without '}'");
            if (field_find(p + 1, (size_t)(end - p - 1)) < 0)
                return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                    "pattern: unknown field {%.*s}", (int)(end - p - 1), p + 1);
            p = end;
            continue;
        }
        if (p[1] == '/' || p[1] == '\0') {
            size_t n = (size_t)(p + 1 - component);

            if (*p == '/' || (n == 1 && component[0] == '.') ||
                (n == 2 && component[0] == '.' && component[1] == '.'))
                return bad(err, "an empty, \".\" or \"..\" component");
        }
        if (*p == '/')
            component = p + 1;
    }
    if (p[-1] == '/')
        return bad(err, "ends with '/'");
    return CP_OK;
}

static bool reserved_char(unsigned char c)
{
    return c < 0x20 || c == 0x7F || c == '/' || c == '\\' || c == '<' || c == '>' ||
           c == ':' || c == '"' || c == '|' || c == '?' || c == '*';
}

/* CON, PRN, AUX, NUL, COM1-9, LPT1-9, alone or before a dot. */
static bool reserved_name(const char *s)
{
    static const char *const names[] = { "CON", "PRN", "AUX", "NUL" };
    size_t stem = strcspn(s, ".");

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (stem == 3 && strncasecmp(s, names[i], 3) == 0)
            return true;
    return stem == 4 && (strncasecmp(s, "COM", 3) == 0 || strncasecmp(s, "LPT", 3) == 0) &&
           s[3] >= '1' && s[3] <= '9';
}

size_t pattern_sanitize(const char *value, char *out, size_t size)
{
    size_t max = size - 1 < INGEST_FIELD_MAX ? size - 1 : INGEST_FIELD_MAX;
    size_t n = 0;

    for (const char *p = value; *p != '\0' && n < max; p++) {
        unsigned char c = (unsigned char)*p;

        if (c >= 0x80) {
            size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;

            if (n + len > max)
                break;
            for (size_t k = 0; k < len && p[k] != '\0'; k++)
                out[n++] = p[k];
            p += len - 1;
            continue;
        }
        out[n++] = reserved_char(c) ? '_' : (char)c;
    }
    out[n] = '\0';

    for (size_t i = 0; i + 1 < n; i++)
        if (out[i] == '.' && out[i + 1] == '.')
            out[i] = out[i + 1] = '_';
    while (n > 0 && (out[n - 1] == '.' || out[n - 1] == ' '))
        out[--n] = '\0';
    if (n == 0 || reserved_name(out)) {
        if (n + 2 > size)
            n = size - 2;
        memmove(out + 1, out, n + 1);
        out[0] = '_';
        n++;
        out[n] = '\0';
    }
    return n;
}

bool pattern_uses(const char *pattern, const char *keyword)
{
    size_t len = strlen(keyword);

    for (const char *p = strchr(pattern, '{'); p != NULL; p = strchr(p + 1, '{'))
        if (strncmp(p + 1, keyword, len) == 0 && p[1 + len] == '}')
            return true;
    return false;
}

bool pattern_instance_level(const char *pattern)
{
    static const char *const below_study[] = {
        "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
        "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
    };

    for (size_t i = 0; i < sizeof below_study / sizeof below_study[0]; i++)
        if (pattern_uses(pattern, below_study[i]))
            return true;
    return false;
}

static void field_value(const index_row *row, int64_t order_id, field_id id, char *out,
                        size_t size)
{
    const index_instance_record *r = &row->rec;
    int64_t num = INDEX_NUMBER_NONE;
    const char *s = "";

    switch (id) {
    case F_PATIENT_ID: s = r->patient.id; break;
    case F_PATIENT_NAME: s = r->patient.name.alphabetic; break;
    case F_ISSUER: s = r->patient.issuer; break;
    case F_BIRTH_DATE: s = r->patient.birth_date; break;
    case F_SEX: s = r->patient.sex; break;
    case F_STUDY_UID: s = r->study.uid; break;
    case F_STUDY_DATE: s = r->study.date; break;
    case F_STUDY_TIME: s = r->study.time; break;
    case F_ACCESSION: s = r->study.accession; break;
    case F_STUDY_DESCRIPTION: s = r->study.description; break;
    case F_STUDY_ID: s = r->study.id; break;
    case F_SERIES_UID: s = r->series.uid; break;
    case F_MODALITY: s = r->series.modality; break;
    case F_SERIES_NUMBER: num = r->series.number; break;
    case F_SERIES_DESCRIPTION: s = r->series.description; break;
    case F_SOP_UID: s = r->instance.sop_uid; break;
    case F_SOP_CLASS_UID: s = r->instance.sop_class_uid; break;
    case F_INSTANCE_NUMBER: num = r->instance.number; break;
    case F_ORDER_ID: num = order_id > 0 ? order_id : INDEX_NUMBER_NONE; break;
    }
    if ((id == F_SERIES_NUMBER || id == F_INSTANCE_NUMBER || id == F_ORDER_ID) &&
        num != INDEX_NUMBER_NONE)
        snprintf(out, size, "%" PRId64, num);
    else
        snprintf(out, size, "%s", s);
}

cp_status pattern_expand(const char *pattern, const index_row *row, char *out, size_t size,
                         cp_error *err)
{
    return pattern_expand_order(pattern, row, 0, out, size, err);
}

cp_status pattern_expand_order(const char *pattern, const index_row *row, int64_t order_id,
                               char *out, size_t size, cp_error *err)
{
    size_t n = 0;

    for (const char *p = pattern; *p != '\0'; p++) {
        char raw[INDEX_LO_MAX * 3 + 1], safe[INGEST_FIELD_MAX + 2];
        const char *end;
        size_t len;
        int id;

        if (*p != '{') {
            if (n + 1 >= size)
                goto too_long;
            out[n++] = *p;
            continue;
        }
        end = strchr(p, '}');
        id = end != NULL ? field_find(p + 1, (size_t)(end - p - 1)) : -1;
        if (id < 0)
            return bad(err, "unknown field");
        field_value(row, order_id, (field_id)id, raw, sizeof raw);
        len = pattern_sanitize(raw, safe, sizeof safe);
        if (n + len >= size)
            goto too_long;
        memcpy(out + n, safe, len);
        n += len;
        p = end;
    }
    out[n] = '\0';
    return CP_OK;

too_long:
    return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "export path longer than %zu bytes", size - 1);
}
