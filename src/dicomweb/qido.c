/*
 * qido.c - QIDO-RS, the Search transaction (PS3.18 10.6).
 *
 * Query parameters (PS3.18 8.3.4) become index terms: attribute matching
 * by keyword or tag with the matching rules of PS3.4 C.2.2.2 left to the
 * index, fuzzymatching, includefield, limit and offset. Each index row
 * becomes one result data set in the DICOM JSON model (PS3.18 F.2), built
 * directly from the row's fields with the tags in ascending order (F.2.1).
 * A search with no match answers 200 with an empty array: CP-2473 brings
 * PS3.18 8.3.4.4.1 back to 200, as RFC 9110 15.3.5 forbids a 204 body.
 *
 * A search is limited to the institutions the principal sees (policy.h);
 * rows a contract's modality limit hides are dropped after the index, with
 * limit and offset then counted over what is left. Each search is one
 * Query record in the audit trail (PS3.15 A.5.3.7), patient names left out.
 */
#include "dicomweb/qido.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "dicom/dict.h"
#include "dicomweb/dicomweb.h"

/* Where a returned attribute's value comes from in an index_row. */
typedef enum {
    QF_CHARSET, QF_SOP_CLASS, QF_SOP_UID, QF_STUDY_DATE, QF_SERIES_DATE, QF_STUDY_TIME,
    QF_SERIES_TIME, QF_ACCESSION, QF_AVAILABILITY, QF_MODALITY, QF_MODALITIES,
    QF_REFERRING, QF_STUDY_DESC, QF_SERIES_DESC, QF_RETRIEVE_URL, QF_TS,
    QF_PATIENT_NAME, QF_PATIENT_ID, QF_ISSUER, QF_BIRTH_DATE, QF_SEX, QF_BODY_PART,
    QF_STUDY_UID, QF_SERIES_UID, QF_STUDY_ID, QF_SERIES_NUMBER, QF_INSTANCE_NUMBER,
    QF_STUDY_SERIES, QF_STUDY_INSTANCES, QF_SERIES_INSTANCES, QF_FRAMES, QF_ROWS,
    QF_COLUMNS,
} qido_source;

/* Bits of qido_field.flags. */
enum {
    QF_DEFAULT = 1u << 0,       /* returned without includefield (Tables 10.6.3-x) */
    QF_ALWAYS = 1u << 1,        /* returned at every level it applies to */
    QF_OWN_LEVEL = 1u << 2,     /* only in rows of its own level (counts, URL) */
};

typedef struct qido_field {
    uint32_t tag;
    const char *vr;
    index_level level;          /* the entity it belongs to */
    qido_source source;
    unsigned flags;
} qido_field;

/* Sorted by tag, so that results come out in the order F.2.1 asks. */
static const qido_field qido_fields[] = {
    { 0x00080005, "CS", INDEX_LEVEL_STUDY, QF_CHARSET, QF_ALWAYS },
    { 0x00080016, "UI", INDEX_LEVEL_INSTANCE, QF_SOP_CLASS, QF_DEFAULT },
    { 0x00080018, "UI", INDEX_LEVEL_INSTANCE, QF_SOP_UID, QF_ALWAYS },
    { 0x00080020, "DA", INDEX_LEVEL_STUDY, QF_STUDY_DATE, QF_DEFAULT },
    { 0x00080021, "DA", INDEX_LEVEL_SERIES, QF_SERIES_DATE, 0 },
    { 0x00080030, "TM", INDEX_LEVEL_STUDY, QF_STUDY_TIME, QF_DEFAULT },
    { 0x00080031, "TM", INDEX_LEVEL_SERIES, QF_SERIES_TIME, 0 },
    { 0x00080050, "SH", INDEX_LEVEL_STUDY, QF_ACCESSION, QF_DEFAULT },
    { 0x00080056, "CS", INDEX_LEVEL_STUDY, QF_AVAILABILITY, QF_ALWAYS },
    { 0x00080060, "CS", INDEX_LEVEL_SERIES, QF_MODALITY, QF_DEFAULT },
    { 0x00080061, "CS", INDEX_LEVEL_STUDY, QF_MODALITIES, QF_DEFAULT },
    { 0x00080090, "PN", INDEX_LEVEL_STUDY, QF_REFERRING, QF_DEFAULT },
    { 0x00081030, "LO", INDEX_LEVEL_STUDY, QF_STUDY_DESC, 0 },
    { 0x0008103E, "LO", INDEX_LEVEL_SERIES, QF_SERIES_DESC, QF_DEFAULT },
    { 0x00081190, "UR", INDEX_LEVEL_STUDY, QF_RETRIEVE_URL, QF_ALWAYS },
    { 0x00083002, "UI", INDEX_LEVEL_INSTANCE, QF_TS, 0 },
    { 0x00100010, "PN", INDEX_LEVEL_STUDY, QF_PATIENT_NAME, QF_DEFAULT },
    { 0x00100020, "LO", INDEX_LEVEL_STUDY, QF_PATIENT_ID, QF_DEFAULT },
    { 0x00100021, "LO", INDEX_LEVEL_STUDY, QF_ISSUER, 0 },
    { 0x00100030, "DA", INDEX_LEVEL_STUDY, QF_BIRTH_DATE, QF_DEFAULT },
    { 0x00100040, "CS", INDEX_LEVEL_STUDY, QF_SEX, QF_DEFAULT },
    { 0x00180015, "CS", INDEX_LEVEL_SERIES, QF_BODY_PART, 0 },
    { 0x0020000D, "UI", INDEX_LEVEL_STUDY, QF_STUDY_UID, QF_ALWAYS },
    { 0x0020000E, "UI", INDEX_LEVEL_SERIES, QF_SERIES_UID, QF_ALWAYS },
    { 0x00200010, "SH", INDEX_LEVEL_STUDY, QF_STUDY_ID, QF_DEFAULT },
    { 0x00200011, "IS", INDEX_LEVEL_SERIES, QF_SERIES_NUMBER, QF_DEFAULT },
    { 0x00200013, "IS", INDEX_LEVEL_INSTANCE, QF_INSTANCE_NUMBER, QF_DEFAULT },
    { 0x00201206, "IS", INDEX_LEVEL_STUDY, QF_STUDY_SERIES, QF_DEFAULT | QF_OWN_LEVEL },
    { 0x00201208, "IS", INDEX_LEVEL_STUDY, QF_STUDY_INSTANCES, QF_DEFAULT | QF_OWN_LEVEL },
    { 0x00201209, "IS", INDEX_LEVEL_SERIES, QF_SERIES_INSTANCES, QF_DEFAULT | QF_OWN_LEVEL },
    { 0x00280008, "IS", INDEX_LEVEL_INSTANCE, QF_FRAMES, QF_DEFAULT },
    { 0x00280010, "US", INDEX_LEVEL_INSTANCE, QF_ROWS, QF_DEFAULT },
    { 0x00280011, "US", INDEX_LEVEL_INSTANCE, QF_COLUMNS, QF_DEFAULT },
};

#define QIDO_FIELD_COUNT (sizeof qido_fields / sizeof qido_fields[0])

/* --- parsing ------------------------------------------------------------- */

static bool parse_uint(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* The tag of a keyword or of 8 hexadecimal digits; false when neither. */
static bool attribute_tag(const char *name, uint32_t *tag)
{
    const dcm_dict_entry *e;
    size_t len = strlen(name);

    if (len == 8 && strspn(name, "0123456789abcdefABCDEF") == 8) {
        *tag = (uint32_t)strtoul(name, NULL, 16);
        return true;
    }
    e = dcm_dict_lookup_keyword(name, len);
    if (e == NULL)
        return false;
    *tag = e->tag;
    return true;
}

static void note_ignored(dweb_qido *q, const char *name)
{
    size_t used = strlen(q->ignored);

    if (used + strlen(name) + 2 >= sizeof q->ignored)
        return;
    snprintf(q->ignored + used, sizeof q->ignored - used, "%s%s", used > 0 ? "," : "", name);
}

static cp_status add_include(dweb_qido *q, const char *name, cp_error *err)
{
    uint32_t tag;

    if (strcmp(name, "all") == 0) {
        q->all_fields = true;
        return CP_OK;
    }
    if (name[0] == '\0')
        return CP_OK;
    if (!attribute_tag(name, &tag)) {
        /* Nested paths (PS3.18 8.3.4.1) are not returned; say so, do not fail. */
        if (strchr(name, '.') != NULL) {
            note_ignored(q, name);
            return CP_OK;
        }
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "includefield names an unknown attribute");
    }
    if (q->include_count == DWEB_INCLUDE_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "more than %d includefield attributes", DWEB_INCLUDE_MAX);
    q->include[q->include_count++] = tag;
    return CP_OK;
}

/* includefield takes a comma-separated list, and may be repeated. */
static cp_status parse_includefield(dweb_qido *q, const char *value, cp_error *err)
{
    char name[128];

    while (*value != '\0') {
        size_t n = strcspn(value, ",");
        cp_status st;

        if (n >= sizeof name)
            return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "includefield value too long");
        memcpy(name, value, n);
        name[n] = '\0';
        if ((st = add_include(q, name, err)) != CP_OK)
            return st;
        value += n + (value[n] == ',');
    }
    return CP_OK;
}

static cp_status add_term(dweb_qido *q, const char *attribute, const char *value,
                          cp_error *err)
{
    if (q->term_count == INDEX_QUERY_TERMS_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "more than %d matching keys", INDEX_QUERY_TERMS_MAX);
    q->terms[q->term_count].attribute = attribute;
    q->terms[q->term_count].value = value;
    q->term_count++;
    return CP_OK;
}

/* A matching key (PS3.18 8.3.4.1): what the index matches, or ignored with a warning. */
static cp_status parse_match(dweb_qido *q, const dweb_param *p, cp_error *err)
{
    const index_attr_info *info = index_attribute_find(p->name);
    uint32_t tag;

    if (info != NULL && index_attribute_supported(p->name, q->level)) {
        if (q->include_count < DWEB_INCLUDE_MAX)
            q->include[q->include_count++] = info->tag;
        return add_term(q, p->name, p->value, err);
    }
    if (info != NULL || attribute_tag(p->name, &tag) || strchr(p->name, '.') != NULL) {
        note_ignored(q, p->name);
        return CP_OK;
    }
    return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "unknown query parameter \"%.64s\"", p->name);
}

static cp_status parse_param(dweb_qido *q, const dweb_param *p, cp_error *err)
{
    const char *v = p->value != NULL ? p->value : "";

    if (strcmp(p->name, "limit") == 0) {
        if (!parse_uint(v, &q->limit))
            return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "limit must be a non-negative integer");
        return CP_OK;
    }
    if (strcmp(p->name, "offset") == 0) {
        if (!parse_uint(v, &q->offset))
            return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "offset must be a non-negative integer");
        return CP_OK;
    }
    if (strcmp(p->name, "fuzzymatching") == 0) {
        if (strcmp(v, "true") == 0)
            q->flags |= INDEX_QUERY_FUZZY;
        else if (strcmp(v, "false") == 0)
            q->flags &= ~(unsigned)INDEX_QUERY_FUZZY;
        else
            return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "fuzzymatching must be true or false");
        return CP_OK;
    }
    if (strcmp(p->name, "includefield") == 0)
        return parse_includefield(q, v, err);
    return parse_match(q, &(dweb_param){ p->name, v }, err);
}

cp_status dweb_qido_parse(index_level level, const char *study, const char *series,
                          const dweb_param *params, size_t count, dweb_qido *out,
                          cp_error *err)
{
    cp_status st;

    memset(out, 0, sizeof *out);
    out->level = level;
    out->study_fixed = study != NULL;
    out->series_fixed = series != NULL;
    if ((study != NULL && !dweb_uid_is_valid(study)) ||
        (series != NULL && !dweb_uid_is_valid(series)))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the path holds an invalid UID");
    if (study != NULL && (st = add_term(out, "StudyInstanceUID", study, err)) != CP_OK)
        return st;
    if (series != NULL && (st = add_term(out, "SeriesInstanceUID", series, err)) != CP_OK)
        return st;

    for (size_t i = 0; i < count; i++) {
        if (params[i].name == NULL || params[i].name[0] == '\0')
            continue;
        if ((st = parse_param(out, &params[i], err)) != CP_OK)
            return st;
    }
    return CP_OK;
}

/* --- result data sets ----------------------------------------------------- */

static bool field_included(const dweb_qido *q, const qido_field *f, index_level row)
{
    if (f->level > row)
        return false;
    if ((f->flags & QF_OWN_LEVEL) && f->level != row)
        return false;
    if (f->flags & QF_ALWAYS)
        return true;
    if (q->all_fields)
        return true;
    for (size_t i = 0; i < q->include_count; i++)
        if (q->include[i] == f->tag)
            return true;
    if (!(f->flags & QF_DEFAULT))
        return false;

    /* Parent attributes come by default only when the path does not fix the parent. */
    if (f->level == row)
        return true;
    if (f->level == INDEX_LEVEL_STUDY)
        return !q->study_fixed && !q->series_fixed;
    return !q->series_fixed;
}

static cp_status json_text_value(cp_buf *out, const char *vr, const char *text)
{
    cp_status st = cp_buf_appendf(out, "{\"vr\":\"%s\"", vr);

    if (st == CP_OK && text[0] != '\0') {
        st = cp_buf_append_str(out, ",\"Value\":[");
        if (st == CP_OK)
            st = dweb_json_string(out, text);
        if (st == CP_OK)
            st = cp_buf_append_str(out, "]");
    }
    return st == CP_OK ? cp_buf_append_str(out, "}") : st;
}

/* A multi-valued CS such as ModalitiesInStudy, "CT\MR" in the index. */
static cp_status json_multi_value(cp_buf *out, const char *vr, const char *text)
{
    cp_status st = cp_buf_appendf(out, "{\"vr\":\"%s\"", vr);
    bool first = true;

    if (st != CP_OK || text[0] == '\0')
        return st == CP_OK ? cp_buf_append_str(out, "}") : st;
    st = cp_buf_append_str(out, ",\"Value\":[");
    while (st == CP_OK) {
        size_t n = strcspn(text, "\\");

        if (!first)
            st = cp_buf_append_str(out, ",");
        if (st == CP_OK)
            st = dweb_json_string_n(out, text, n);
        first = false;
        if (text[n] == '\0')
            break;
        text += n + 1;
    }
    return st == CP_OK ? cp_buf_append_str(out, "]}") : st;
}

static cp_status json_pn_value(cp_buf *out, const index_person_name *pn)
{
    static const char *const groups[] = { "Alphabetic", "Ideographic", "Phonetic" };
    const char *values[] = { pn->alphabetic, pn->ideographic, pn->phonetic };
    cp_status st = cp_buf_append_str(out, "{\"vr\":\"PN\"");
    bool any = false;

    for (size_t i = 0; i < 3 && st == CP_OK; i++) {
        if (values[i][0] == '\0')
            continue;
        st = cp_buf_appendf(out, "%s\"%s\":", any ? "," : ",\"Value\":[{", groups[i]);
        if (st == CP_OK)
            st = dweb_json_string(out, values[i]);
        any = true;
    }
    if (st == CP_OK && any)
        st = cp_buf_append_str(out, "}]");
    return st == CP_OK ? cp_buf_append_str(out, "}") : st;
}

static cp_status json_number_value(cp_buf *out, const char *vr, int64_t v, bool present)
{
    if (!present)
        return cp_buf_appendf(out, "{\"vr\":\"%s\"}", vr);
    return cp_buf_appendf(out, "{\"vr\":\"%s\",\"Value\":[%lld]}", vr, (long long)v);
}

static cp_status json_retrieve_url(cp_buf *out, const index_row *row, const char *root)
{
    const index_instance_record *r = &row->rec;
    cp_buf url = CP_BUF_INIT;
    cp_status st = cp_buf_appendf(&url, "%s/studies/%s", root, r->study.uid);

    if (st == CP_OK && row->level >= INDEX_LEVEL_SERIES)
        st = cp_buf_appendf(&url, "/series/%s", r->series.uid);
    if (st == CP_OK && row->level >= INDEX_LEVEL_INSTANCE)
        st = cp_buf_appendf(&url, "/instances/%s", r->instance.sop_uid);
    if (st == CP_OK)
        st = json_text_value(out, "UR", (const char *)url.data);
    cp_buf_free(&url);
    return st;
}

static cp_status field_json(const qido_field *f, const index_row *row, const char *root,
                            cp_buf *out)
{
    const index_instance_record *r = &row->rec;

    switch (f->source) {
    case QF_CHARSET: return json_text_value(out, f->vr, "ISO_IR 192");
    case QF_SOP_CLASS: return json_text_value(out, f->vr, r->instance.sop_class_uid);
    case QF_SOP_UID: return json_text_value(out, f->vr, r->instance.sop_uid);
    case QF_STUDY_DATE: return json_text_value(out, f->vr, r->study.date);
    case QF_SERIES_DATE: return json_text_value(out, f->vr, r->series.date);
    case QF_STUDY_TIME: return json_text_value(out, f->vr, r->study.time);
    case QF_SERIES_TIME: return json_text_value(out, f->vr, r->series.time);
    case QF_ACCESSION: return json_text_value(out, f->vr, r->study.accession);
    case QF_AVAILABILITY: return json_text_value(out, f->vr, "ONLINE");
    case QF_MODALITY: return json_text_value(out, f->vr, r->series.modality);
    case QF_MODALITIES: return json_multi_value(out, f->vr, row->modalities_in_study);
    case QF_REFERRING: return json_pn_value(out, &r->study.referring);
    case QF_STUDY_DESC: return json_text_value(out, f->vr, r->study.description);
    case QF_SERIES_DESC: return json_text_value(out, f->vr, r->series.description);
    case QF_RETRIEVE_URL: return json_retrieve_url(out, row, root);
    case QF_TS: return json_text_value(out, f->vr, r->instance.transfer_syntax);
    case QF_PATIENT_NAME: return json_pn_value(out, &r->patient.name);
    case QF_PATIENT_ID: return json_text_value(out, f->vr, r->patient.id);
    case QF_ISSUER: return json_text_value(out, f->vr, r->patient.issuer);
    case QF_BIRTH_DATE: return json_text_value(out, f->vr, r->patient.birth_date);
    case QF_SEX: return json_text_value(out, f->vr, r->patient.sex);
    case QF_BODY_PART: return json_text_value(out, f->vr, r->series.body_part);
    case QF_STUDY_UID: return json_text_value(out, f->vr, r->study.uid);
    case QF_SERIES_UID: return json_text_value(out, f->vr, r->series.uid);
    case QF_STUDY_ID: return json_text_value(out, f->vr, r->study.id);
    case QF_SERIES_NUMBER:
        return json_number_value(out, f->vr, r->series.number,
                                 r->series.number != INDEX_NUMBER_NONE);
    case QF_INSTANCE_NUMBER:
        return json_number_value(out, f->vr, r->instance.number,
                                 r->instance.number != INDEX_NUMBER_NONE);
    case QF_STUDY_SERIES: return json_number_value(out, f->vr, row->study_series, true);
    case QF_STUDY_INSTANCES:
        return json_number_value(out, f->vr, row->study_instances, true);
    case QF_SERIES_INSTANCES:
        return json_number_value(out, f->vr, row->series_instances, true);
    case QF_FRAMES:
        return json_number_value(out, f->vr, r->instance.frames, r->instance.frames > 0);
    case QF_ROWS:
        return json_number_value(out, f->vr, r->instance.rows, r->instance.rows > 0);
    case QF_COLUMNS:
        return json_number_value(out, f->vr, r->instance.columns, r->instance.columns > 0);
    }
    return CP_ERR_INVALID;
}

cp_status dweb_qido_row_json(const dweb_qido *q, const index_row *row, const char *root,
                             cp_buf *out)
{
    cp_status st = cp_buf_append_str(out, "{");
    bool first = true;

    for (size_t i = 0; i < QIDO_FIELD_COUNT && st == CP_OK; i++) {
        const qido_field *f = &qido_fields[i];

        if (!field_included(q, f, row->level))
            continue;
        st = cp_buf_appendf(out, "%s\"%08X\":", first ? "" : ",", (unsigned)f->tag);
        if (st == CP_OK)
            st = field_json(f, row, root, out);
        first = false;
    }
    return st == CP_OK ? cp_buf_append_str(out, "}") : st;
}

/* --- the handler ----------------------------------------------------------- */

typedef struct qido_run {
    const dweb_qido *q;
    dweb_service *svc;
    const principal *p;         /* rows it may not see are dropped; NULL: none */
    uint64_t skip;              /* visible rows still to skip (the offset) */
    const char *root;
    cp_buf body;
    uint64_t rows;
    uint64_t cap;               /* rows to send; one more means "there are more" */
    bool more;
    cp_status failure;
} qido_run;

static cp_status on_row(void *ctx, const index_row *row)
{
    qido_run *run = ctx;
    cp_status st;

    /*
     * The scope limited the institutions; contracts may limit modalities,
     * and an open reading order opens or closes the study as it does for
     * a retrieval (dweb_study_gate).
     */
    if (run->p != NULL &&
        !dweb_order_visible(run->svc, run->p, row->institution_id,
                            row->level == INDEX_LEVEL_STUDY ? row->modalities_in_study
                                                            : row->rec.series.modality,
                            row->rec.study.uid))
        return CP_OK;
    if (run->skip > 0) {
        run->skip--;
        return CP_OK;
    }
    if (run->rows == run->cap) {
        run->more = true;
        return CP_ERR_STOPPED;
    }
    st = cp_buf_append_str(&run->body, run->rows == 0 ? "" : ",");
    if (st == CP_OK)
        st = dweb_qido_row_json(run->q, row, run->root, &run->body);
    if (st != CP_OK) {
        run->failure = st;
        return st;
    }
    run->rows++;
    return CP_OK;
}

static index_level route_level(const char *route)
{
    size_t n = strlen(route);

    if (n >= 10 && strcmp(route + n - 10, "/instances") == 0)
        return INDEX_LEVEL_INSTANCE;
    if (n >= 7 && strcmp(route + n - 7, "/series") == 0)
        return INDEX_LEVEL_SERIES;
    return INDEX_LEVEL_STUDY;
}

static cp_status collect_params(http_request *req, dweb_param *params, size_t *count)
{
    size_t n = http_request_query_count(req);

    if (n > HTTP_QUERY_PARAMS_MAX)
        return CP_ERR_LIMIT;
    for (size_t i = 0; i < n; i++) {
        cp_status st = http_request_query_at(req, i, &params[i].name, &params[i].value);

        if (st != CP_OK)
            return st;
    }
    *count = n;
    return CP_OK;
}

static cp_status respond_rows(http_request *req, qido_run *run, const dweb_qido *q)
{
    char warning[DWEB_WARNING_MAX + 64];
    cp_status st = CP_OK;

    if (q->ignored[0] != '\0') {
        snprintf(warning, sizeof warning, "299 cloudpacs \"not supported as query keys: %s\"",
                 q->ignored);
        st = http_response_header(req, "Warning", warning);
    }
    if (st == CP_OK && run->more)
        st = http_response_header(req, "Warning",
                                  "299 cloudpacs \"there are more results than returned\"");
    if (st == CP_OK)
        st = cp_buf_append_str(&run->body, "]");
    if (st != CP_OK)
        return http_respond_error(req, 500, "out of memory");
    return http_respond_buffer(req, 200, DWEB_DICOM_JSON, run->body.data, run->body.len);
}

/*
 * The query string for the audit record (PS3.15 A.5.3.7 Query), with
 * patient names left out: a record identifies patients by ID only.
 */
static void query_text(const dweb_param *params, size_t count, char *out, size_t cap)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < count && n + 1 < cap; i++) {
        bool name = strcmp(params[i].name, "PatientName") == 0 ||
                    strcmp(params[i].name, "00100010") == 0;
        int w = snprintf(out + n, cap - n, "%s%s=%s", i == 0 ? "" : "&", params[i].name,
                         name ? "(name)" : params[i].value);

        if (w < 0)
            break;
        n += (size_t)w < cap - n ? (size_t)w : cap - n - 1;
    }
}

static void record_query(dweb_service *svc, http_request *req, const dweb_param *params,
                         size_t count, bool ok)
{
    audit_record r;
    cp_buf detail = CP_BUF_INIT;

    memset(&r, 0, sizeof r);
    r.event = AUDIT_QUERY;
    r.action = AUDIT_EXECUTE;
    r.outcome = ok ? AUDIT_SUCCESS : AUDIT_MINOR_FAILURE;
    snprintf(r.type, sizeof r.type, "qido");
    snprintf(r.object_kind, sizeof r.object_kind, "query");
    query_text(params, count, r.object_id,
               sizeof r.object_id < DWEB_AUDIT_QUERY_MAX + 1 ? sizeof r.object_id
                                                             : DWEB_AUDIT_QUERY_MAX + 1);
    if (cp_buf_append_str(&detail, "{\"path\":") == CP_OK &&
        dweb_json_string(&detail, http_request_path(req)) == CP_OK &&
        cp_buf_append_str(&detail, "}") == CP_OK && detail.len < sizeof r.detail)
        memcpy(r.detail, detail.data, detail.len);
    cp_buf_free(&detail);
    dweb_audit(svc, req, &r);
}

/* Study UIDs as index_query_spec.also_studies wants them. */
typedef struct order_scope {
    char (*uids)[INDEX_UID_MAX + 1];
    const char **list;
} order_scope;

/*
 * Adds the studies p's reading orders open to the scope (a doctor only)
 * and asks for rows to be filtered, since an order may also close a study
 * a contract opens. os is freed by the caller (cp_free of both arrays).
 */
static cp_status order_scope_add(const dweb_config *cfg, const principal *p,
                                 index_query_spec *spec, order_scope *os, bool *filter)
{
    size_t n;

    if (cfg->order_gate == NULL || p->kind != PRINCIPAL_USER ||
        (p->roles & (ROLE_RADIOLOGIST | ROLE_REVIEWER)) == 0)
        return CP_OK;
    *filter = true;
    if (cfg->order_studies == NULL || spec->institutions == NULL)
        return CP_OK;
    os->uids = cp_calloc(INDEX_QUERY_STUDIES_MAX, sizeof *os->uids);
    os->list = cp_calloc(INDEX_QUERY_STUDIES_MAX, sizeof *os->list);
    if (os->uids == NULL || os->list == NULL)
        return CP_ERR_NOMEM;
    n = cfg->order_studies(cfg->order_gate_ctx, p, os->uids, INDEX_QUERY_STUDIES_MAX);
    for (size_t i = 0; i < n; i++)
        os->list[i] = os->uids[i];
    spec->also_studies = os->list;
    spec->also_study_count = n;
    return CP_OK;
}

/*
 * Limits spec to the institutions the principal sees; *ids (cp_free) holds
 * them. Whether rows must then be filtered by modality (contracts).
 */
static cp_status limit_scope(const principal *p, index_query_spec *spec, int64_t **ids,
                             bool *filter)
{
    bool all = false;
    size_t n = 0;

    *filter = false;
    if (p == NULL)
        return CP_OK;
    *ids = cp_calloc(p->grant_count + 1, sizeof **ids);
    if (*ids == NULL)
        return CP_ERR_NOMEM;
    policy_query_scope(p, &all, *ids, p->grant_count + 1, &n);
    if (all)
        return CP_OK;
    spec->institutions = *ids;
    spec->institution_count = n;
    for (size_t i = 0; i < p->grant_count; i++)
        *filter = *filter || p->grants[i].modalities[0] != '\0';
    return CP_OK;
}

cp_status dweb_qido_handle(http_request *req, void *ctx)
{
    const dweb_config *cfg = dweb_service_config(ctx);
    const principal *p = cfg->api != NULL ? api_principal(req) : NULL;
    dweb_param *params = NULL;
    dweb_qido *q = NULL;
    int64_t *ids = NULL;
    order_scope os = { NULL, NULL };
    qido_run run;
    index_query_spec spec;
    char root[DWEB_URL_MAX];
    size_t count = 0;
    bool filter = false;
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    memset(&run, 0, sizeof run);
    if (cfg->api != NULL && p == NULL)
        return http_respond_error(req, 401, "authentication required");
    if (p != NULL && !policy_allows(p, POLICY_STUDY_READ))
        return http_respond_error(req, 403, "studies.read is needed");
    params = cp_calloc(HTTP_QUERY_PARAMS_MAX, sizeof *params);
    q = cp_malloc(sizeof *q);
    if (params == NULL || q == NULL) {
        st = http_respond_error(req, 503, "out of memory");
        goto done;
    }
    if (collect_params(req, params, &count) != CP_OK ||
        dweb_qido_parse(route_level(http_request_route(req)), http_request_param(req, "study"),
                        http_request_param(req, "series"), params, count, q, &err) != CP_OK) {
        st = http_respond_error(req, 400, err.detail[0] != '\0' ? err.detail
                                                                 : "bad query parameters");
        goto done;
    }
    if (dweb_root_url(req, root, sizeof root) != CP_OK) {
        st = http_respond_error(req, 400, "the Host header is too long");
        goto done;
    }

    memset(&spec, 0, sizeof spec);
    spec.level = q->level;
    spec.terms = q->terms;
    spec.term_count = q->term_count;
    spec.flags = q->flags;
    run.cap = q->limit == 0 || q->limit > DWEB_QIDO_ROWS_MAX ? DWEB_QIDO_ROWS_MAX : q->limit;
    spec.limit = run.cap + 1;
    spec.offset = q->offset;
    run.q = q;
    run.svc = ctx;
    run.root = root;
    if (limit_scope(p, &spec, &ids, &filter) != CP_OK ||
        (p != NULL && order_scope_add(cfg, p, &spec, &os, &filter) != CP_OK)) {
        st = http_respond_error(req, 503, "out of memory");
        goto done;
    }
    if (filter) {
        /* Rows are dropped after the index: page over what is visible. */
        run.p = p;
        run.skip = q->offset;
        spec.limit = 0;
        spec.offset = 0;
    }
    st = cp_buf_append_str(&run.body, "[");
    if (st == CP_OK)
        st = index_query(cfg->idx, &spec, on_row, &run, &err);
    record_query(ctx, req, params, count, st == CP_OK || st == CP_ERR_STOPPED);
    if (st == CP_ERR_INVALID || st == CP_ERR_UNSUPPORTED)
        st = http_respond_error(req, 400, err.detail[0] != '\0' ? err.detail
                                                                : "bad matching value");
    else if (st != CP_OK && st != CP_ERR_STOPPED)
        st = http_respond_error(req, run.failure == CP_ERR_NOMEM ? 503 : 500,
                                "the search failed");
    else
        st = respond_rows(req, &run, q);

done:
    cp_buf_free(&run.body);
    cp_free(ids);
    cp_free(os.uids);
    cp_free(os.list);
    cp_free(q);
    cp_free(params);
    return st;
}
