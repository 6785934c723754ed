/*
 * qr.c - the Query/Retrieve service class as SCP (PS3.4 Annex C): C-FIND
 * (C.4.1) answered from the index, C-MOVE (C.4.2) and C-GET (C.4.3) with
 * C-STORE sub-operations (PS3.7 9.1.1) streamed from the blob store.
 *
 * Matching follows PS3.4 C.2.2.2 through the index (single value, UID
 * list, wildcards, date and time ranges). Keys the index does not match
 * on are returned empty, and the pending status is then FF01 (C.4.1.1.4).
 * Sequence keys are returned as empty sequences: no sequence matching.
 *
 * Stored instances are Part 10 files: a sub-operation skips the preamble
 * and meta group and sends the data set as it lies, one QR_STREAM_CHUNK
 * at a time. When the peer took only the other little endian uncompressed
 * syntax, the instance is loaded (up to QR_TRANSCODE_MAX) and rewritten by
 * the core writer; compressed syntaxes are sent only as they are.
 */
#include "net/qr.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "dicom/charset.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom/uid.h"
#include "dicom/writer.h"
#include "net/scu.h"

#define QR_PATIENT_FIND "1.2.840.10008.5.1.4.1.2.1.1"
#define QR_PATIENT_MOVE "1.2.840.10008.5.1.4.1.2.1.2"
#define QR_PATIENT_GET "1.2.840.10008.5.1.4.1.2.1.3"

#define TAG_LEVEL DCM_TAG(0x0008, 0x0052)
#define TAG_PATIENT_ID DCM_TAG(0x0010, 0x0020)
#define TAG_STUDY_UID DCM_TAG(0x0020, 0x000D)
#define TAG_SERIES_UID DCM_TAG(0x0020, 0x000E)
#define TAG_SOP_UID DCM_TAG(0x0008, 0x0018)

/* Contexts a C-MOVE association proposes at most (PS3.8: odd IDs 1-255). */
#define QR_MOVE_CONTEXTS 128

struct qr {
    qr_config cfg;
};

/* --- identifiers ---------------------------------------------------------- */

static const char *const level_names[] = { "PATIENT", "STUDY", "SERIES", "IMAGE" };

index_level qr_index_level(qr_level level)
{
    switch (level) {
    case QR_LEVEL_SERIES:
        return INDEX_LEVEL_SERIES;
    case QR_LEVEL_IMAGE:
        return INDEX_LEVEL_INSTANCE;
    default:
        return INDEX_LEVEL_STUDY;
    }
}

void qr_query_free(qr_query *q)
{
    for (size_t i = 0; i < q->key_count; i++)
        cp_free(q->keys[i].value);
    q->key_count = 0;
    q->term_count = 0;
}

static cp_status refuse(cp_error *err, uint16_t *status, uint16_t code, cp_status st,
                      const char *detail)
{
    *status = code;
    return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "%s", detail);
}

static void trim(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0'))
        s[--n] = '\0';
}

/* The value of el decoded to UTF-8 (a new string), padding removed. */
static cp_status decode_value(dcm_charset *cs, const dcm_element *el, char **out)
{
    cp_buf b = CP_BUF_INIT;
    cp_status st = CP_OK;

    if (el->value != NULL && el->value_length > 0 && dcm_vr_is_string(el->vr))
        st = dcm_charset_decode(cs, el->vr, el->value, (size_t)el->value_length, &b, NULL);
    if (st == CP_OK)
        st = cp_buf_append_byte(&b, 0);
    if (st != CP_OK) {
        cp_buf_free(&b);
        return st;
    }
    *out = (char *)b.data;
    trim(*out);
    return CP_OK;
}

static const qr_key *find_key(const qr_query *q, uint32_t tag)
{
    for (size_t i = 0; i < q->key_count; i++) {
        if (q->keys[i].tag == tag)
            return &q->keys[i];
    }
    return NULL;
}

static bool single_value(const qr_key *k)
{
    return k != NULL && k->value[0] != '\0' && strchr(k->value, '\\') == NULL &&
           strchr(k->value, '*') == NULL && strchr(k->value, '?') == NULL;
}

/*
 * The unique keys of the levels above the query level must be there with
 * one value each (PS3.4 C.4.1.2.1 hierarchical search); for a retrieve the
 * key of the level itself must be there too (C.4.2.2.1, lists allowed).
 */
static bool unique_keys_ok(const qr_query *q, bool retrieve)
{
    static const uint32_t tags[] = { TAG_PATIENT_ID, TAG_STUDY_UID, TAG_SERIES_UID,
                                     TAG_SOP_UID };
    size_t first = q->model == QR_MODEL_PATIENT_ROOT ? 0 : 1;

    for (size_t l = first; l < (size_t)q->level; l++) {
        if (!single_value(find_key(q, tags[l])))
            return false;
    }
    if (retrieve) {
        const qr_key *k = find_key(q, tags[q->level]);

        if (k == NULL || k->value[0] == '\0')
            return false;
    }
    return true;
}

static cp_status add_key(qr_query *q, dcm_charset *cs, const dcm_element *el)
{
    qr_key *k = &q->keys[q->key_count];
    const index_attr_info *info;
    char name[9];
    cp_status st;

    k->tag = el->tag;
    k->vr = el->vr;
    k->value = NULL;
    st = decode_value(cs, el, &k->value);
    if (st != CP_OK)
        return st;
    q->key_count++;
    if (k->value[0] == '\0' || el->vr == DCM_VR_SQ)
        return CP_OK;

    snprintf(name, sizeof name, "%08" PRIX32, el->tag);
    info = index_attribute_find(name);
    if (info == NULL || !index_attribute_supported(name, qr_index_level(q->level))) {
        q->unsupported = true;
        return CP_OK;
    }
    if (q->level == QR_LEVEL_PATIENT && !info->patient)
        return CP_OK;
    if (q->term_count == INDEX_QUERY_TERMS_MAX)
        return CP_ERR_LIMIT;
    q->terms[q->term_count].attribute = info->keyword;
    q->terms[q->term_count].value = k->value;
    q->term_count++;
    return CP_OK;
}

static qr_model model_of(const char *sop_class)
{
    if (strcmp(sop_class, QR_PATIENT_FIND) == 0 || strcmp(sop_class, QR_PATIENT_MOVE) == 0 ||
        strcmp(sop_class, QR_PATIENT_GET) == 0)
        return QR_MODEL_PATIENT_ROOT;
    return QR_MODEL_STUDY_ROOT;
}

static bool parse_level(const dcm_dataset *ds, qr_query *q)
{
    char level[17];

    if (dcm_dataset_get_string(ds, TAG_LEVEL, level, sizeof level) != CP_OK)
        return false;
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(level, level_names[i]) == 0) {
            q->level = (qr_level)i;
            return !(q->level == QR_LEVEL_PATIENT && q->model == QR_MODEL_STUDY_ROOT);
        }
    }
    return false;
}

cp_status qr_query_parse(const char *sop_class, const uint8_t *data, size_t len,
                         const char *ts_uid, qr_query *q, uint16_t *status, cp_error *err)
{
    dcm_read_options opts = { 0 };
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    dcm_charset *cs = NULL;
    const uint8_t *csv = NULL;
    size_t cslen = 0;
    size_t class_len = strlen(sop_class);
    /* FIND classes end in .1, MOVE in .2 and GET in .3 (PS3.4 C.6). */
    bool retrieve = class_len < 2 || strcmp(sop_class + class_len - 2, ".1") != 0;
    cp_status st;

    memset(q, 0, sizeof *q);
    *status = DIMSE_SUCCESS;
    q->model = model_of(sop_class);
    opts.no_meta = true;
    opts.bulk_threshold = UINT32_MAX;
    opts.assume_ts = dcm_ts_lookup(ts_uid, strlen(ts_uid));
    src = dcm_source_from_memory(data, len);
    if (src == NULL)
        return refuse(err, status, DIMSE_OUT_OF_RESOURCES, CP_ERR_NOMEM, "out of memory");
    st = dcm_file_read(src, &opts, &file, err);
    if (st != CP_OK) {
        *status = DIMSE_CANNOT_UNDERSTAND;
        goto done;
    }
    if (!parse_level(file->dataset, q)) {
        st = refuse(err, status, DIMSE_DATA_SET_MISMATCH, CP_ERR_INVALID,
                  "QueryRetrieveLevel missing or not valid for the model");
        goto done;
    }

    dcm_dataset_charset(file->dataset, &csv, &cslen);
    if (csv != NULL) {
        snprintf(q->charset, sizeof q->charset, "%.*s", (int)cslen, (const char *)csv);
        trim(q->charset);
    }
    st = dcm_charset_create(csv, cslen, NULL, &cs, err);
    if (st != CP_OK) {
        *status = DIMSE_CANNOT_UNDERSTAND;
        goto done;
    }
    for (size_t i = 0; i < dcm_dataset_count(file->dataset); i++) {
        const dcm_element *el = dcm_dataset_at(file->dataset, i);

        if (el->tag == TAG_LEVEL || el->tag == DCM_TAG_SPECIFIC_CHARACTER_SET ||
            (el->tag >> 16) == 0x0000 || (el->tag >> 16) == 0x0002)
            continue;
        if (q->key_count == QR_KEYS_MAX) {
            st = refuse(err, status, DIMSE_OUT_OF_RESOURCES, CP_ERR_LIMIT, "too many keys");
            goto done;
        }
        st = add_key(q, cs, el);
        if (st != CP_OK) {
            refuse(err, status, DIMSE_OUT_OF_RESOURCES, st, "too many matching keys");
            goto done;
        }
    }
    if (!unique_keys_ok(q, retrieve))
        st = refuse(err, status, DIMSE_DATA_SET_MISMATCH, CP_ERR_INVALID,
                  "a unique key of the hierarchy is missing or not single-valued");

done:
    dcm_charset_destroy(cs);
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    if (st != CP_OK)
        qr_query_free(q);
    return st;
}

/* --- response identifiers --------------------------------------------------- */

static void pn_text(const index_person_name *pn, char *out, size_t size)
{
    if (pn->ideographic[0] == '\0' && pn->phonetic[0] == '\0')
        snprintf(out, size, "%s", pn->alphabetic);
    else if (pn->phonetic[0] == '\0')
        snprintf(out, size, "%s=%s", pn->alphabetic, pn->ideographic);
    else
        snprintf(out, size, "%s=%s=%s", pn->alphabetic, pn->ideographic, pn->phonetic);
}

static void number_text(int64_t n, char *out, size_t size)
{
    if (n == INDEX_NUMBER_NONE)
        out[0] = '\0';
    else
        snprintf(out, size, "%" PRId64, n);
}

/* The row's value of tag as UTF-8 text; "" when the index has none. */
static void row_value(const index_row *row, uint32_t tag, uint32_t patient_studies,
                      char *out, size_t size)
{
    const index_instance_record *r = &row->rec;

    out[0] = '\0';
    switch (tag) {
    case DCM_TAG(0x0010, 0x0010): pn_text(&r->patient.name, out, size); break;
    case DCM_TAG(0x0010, 0x0020): snprintf(out, size, "%s", r->patient.id); break;
    case DCM_TAG(0x0010, 0x0021): snprintf(out, size, "%s", r->patient.issuer); break;
    case DCM_TAG(0x0010, 0x0030): snprintf(out, size, "%s", r->patient.birth_date); break;
    case DCM_TAG(0x0010, 0x0040): snprintf(out, size, "%s", r->patient.sex); break;
    case DCM_TAG(0x0020, 0x1200):
        if (patient_studies > 0)
            snprintf(out, size, "%" PRIu32, patient_studies);
        break;
    default:
        break;
    }
    if (out[0] != '\0' || row->level < INDEX_LEVEL_STUDY || r->study.uid[0] == '\0')
        goto series;
    switch (tag) {
    case DCM_TAG(0x0020, 0x000D): snprintf(out, size, "%s", r->study.uid); break;
    case DCM_TAG(0x0008, 0x0020): snprintf(out, size, "%s", r->study.date); break;
    case DCM_TAG(0x0008, 0x0030): snprintf(out, size, "%s", r->study.time); break;
    case DCM_TAG(0x0008, 0x0050): snprintf(out, size, "%s", r->study.accession); break;
    case DCM_TAG(0x0008, 0x0090): pn_text(&r->study.referring, out, size); break;
    case DCM_TAG(0x0008, 0x1030): snprintf(out, size, "%s", r->study.description); break;
    case DCM_TAG(0x0020, 0x0010): snprintf(out, size, "%s", r->study.id); break;
    case DCM_TAG(0x0008, 0x0061): snprintf(out, size, "%s", row->modalities_in_study); break;
    case DCM_TAG(0x0020, 0x1206):
        snprintf(out, size, "%" PRIu32, row->study_series);
        break;
    case DCM_TAG(0x0020, 0x1208):
        snprintf(out, size, "%" PRIu32, row->study_instances);
        break;
    default:
        break;
    }

series:
    if (out[0] != '\0' || r->series.uid[0] == '\0')
        goto instance;
    switch (tag) {
    case DCM_TAG(0x0020, 0x000E): snprintf(out, size, "%s", r->series.uid); break;
    case DCM_TAG(0x0008, 0x0060): snprintf(out, size, "%s", r->series.modality); break;
    case DCM_TAG(0x0020, 0x0011): number_text(r->series.number, out, size); break;
    case DCM_TAG(0x0008, 0x103E): snprintf(out, size, "%s", r->series.description); break;
    case DCM_TAG(0x0018, 0x0015): snprintf(out, size, "%s", r->series.body_part); break;
    case DCM_TAG(0x0008, 0x0021): snprintf(out, size, "%s", r->series.date); break;
    case DCM_TAG(0x0008, 0x0031): snprintf(out, size, "%s", r->series.time); break;
    case DCM_TAG(0x0020, 0x1209):
        snprintf(out, size, "%" PRIu32, row->series_instances);
        break;
    default:
        break;
    }

instance:
    if (out[0] != '\0' || r->instance.sop_uid[0] == '\0')
        return;
    switch (tag) {
    case DCM_TAG(0x0008, 0x0018): snprintf(out, size, "%s", r->instance.sop_uid); break;
    case DCM_TAG(0x0008, 0x0016): snprintf(out, size, "%s", r->instance.sop_class_uid); break;
    case DCM_TAG(0x0020, 0x0013): number_text(r->instance.number, out, size); break;
    case DCM_TAG(0x0028, 0x0008):
        if (r->instance.frames > 0)
            snprintf(out, size, "%" PRIu32, r->instance.frames);
        break;
    default:
        break;
    }
}

static bool is_ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s > 0x7F)
            return false;
    }
    return true;
}

static cp_status put_element(cp_buf *out, const dcm_transfer_syntax *ts, uint32_t tag,
                             dcm_vr vr, const void *value, size_t len)
{
    uint8_t hdr[DCM_WRITE_HEADER_MAX];
    size_t padded = len + (len & 1);
    size_t n;
    cp_status st;

    if (padded > UINT32_MAX - 1)
        return CP_ERR_LIMIT;
    n = dcm_write_header(hdr, tag, vr, (uint32_t)padded, ts->explicit_vr, ts->big_endian);
    st = cp_buf_append(out, hdr, n);
    if (st == CP_OK && len > 0)
        st = cp_buf_append(out, value, len);
    if (st == CP_OK && padded != len)
        st = cp_buf_append_byte(out, vr == DCM_VR_UI ? 0 : (uint8_t)' ');
    return st;
}

/* Writes text (UTF-8) in charset term; "" or "ISO_IR 192" keep UTF-8. */
static cp_status put_text(cp_buf *out, const dcm_transfer_syntax *ts, uint32_t tag, dcm_vr vr,
                          const char *text, const char *term)
{
    cp_buf enc = CP_BUF_INIT;
    cp_status st;

    if (term[0] == '\0' || strcmp(term, "ISO_IR 192") == 0 || !dcm_vr_uses_charset(vr) ||
        is_ascii(text))
        return put_element(out, ts, tag, vr, text, strlen(text));
    st = dcm_charset_encode(term, text, strlen(text), &enc);
    if (st == CP_OK)
        st = put_element(out, ts, tag, vr, enc.data, enc.len);
    cp_buf_free(&enc);
    return st;
}

static cp_status encode_in(const qr_query *q, const index_row *row, uint32_t patient_studies,
                           const char *retrieve_ae, const dcm_transfer_syntax *ts,
                           const char *term, cp_buf *out)
{
    char value[INDEX_MODALITIES_MAX + 3 * (INDEX_PN_GROUP_MAX + 1) + 32];
    const char *level = level_names[q->level];
    cp_status st = CP_OK;

    if (term[0] != '\0')
        st = put_element(out, ts, DCM_TAG_SPECIFIC_CHARACTER_SET, DCM_VR_CS, term,
                         strlen(term));
    for (size_t i = 0; st == CP_OK && i < q->key_count; i++) {
        const qr_key *k = &q->keys[i];

        if (k->tag > TAG_LEVEL && (i == 0 || q->keys[i - 1].tag < TAG_LEVEL))
            st = put_element(out, ts, TAG_LEVEL, DCM_VR_CS, level, strlen(level));
        if (st != CP_OK)
            break;
        if (k->vr == DCM_VR_SQ || !dcm_vr_is_string(k->vr)) {
            st = put_element(out, ts, k->tag, k->vr, NULL, 0);
            continue;
        }
        row_value(row, k->tag, patient_studies, value, sizeof value);
        if (k->tag == DCM_TAG(0x0008, 0x0054))
            snprintf(value, sizeof value, "%s", retrieve_ae);
        else if (k->tag == DCM_TAG(0x0008, 0x0056))
            snprintf(value, sizeof value, "ONLINE");
        st = put_text(out, ts, k->tag, k->vr, value, term);
    }
    if (st == CP_OK && (q->key_count == 0 || q->keys[q->key_count - 1].tag < TAG_LEVEL))
        st = put_element(out, ts, TAG_LEVEL, DCM_VR_CS, level, strlen(level));
    return st;
}

/* Whether some text the row answers with is not ASCII. */
static bool row_non_ascii(const qr_query *q, const index_row *row)
{
    char value[INDEX_MODALITIES_MAX + 3 * (INDEX_PN_GROUP_MAX + 1) + 32];

    for (size_t i = 0; i < q->key_count; i++) {
        row_value(row, q->keys[i].tag, 0, value, sizeof value);
        if (!is_ascii(value))
            return true;
    }
    return false;
}

cp_status qr_encode_row(const qr_query *q, const index_row *row, uint32_t patient_studies,
                        const char *retrieve_ae, const char *ts_uid, cp_buf *out)
{
    const dcm_transfer_syntax *ts = dcm_ts_lookup(ts_uid, strlen(ts_uid));
    const char *term = q->charset;
    size_t start = out->len;
    cp_status st;

    if (ts == NULL || ts->encapsulated || ts->deflated)
        return CP_ERR_UNSUPPORTED;
    /*
     * A query without a character set gets UTF-8 answers when they need
     * more than ASCII (ISO_IR 192, PS3.5 6.1.2.3), and so does a multi-
     * valued set (ISO 2022 code extensions), which this code does not write.
     */
    if (strchr(term, '\\') != NULL || (term[0] == '\0' && row_non_ascii(q, row)))
        term = "ISO_IR 192";
    st = encode_in(q, row, patient_studies, retrieve_ae, ts, term, out);
    if (st == CP_ERR_CHARSET) {
        /* The query's set cannot hold a value: the whole answer goes in UTF-8. */
        out->len = start;
        st = encode_in(q, row, patient_studies, retrieve_ae, ts, "ISO_IR 192", out);
    }
    return st;
}

/* --- the service -------------------------------------------------------- */

cp_status qr_create(const qr_config *cfg, qr **out)
{
    qr *q = cp_calloc(1, sizeof *q);

    *out = NULL;
    if (q == NULL)
        return CP_ERR_NOMEM;
    q->cfg = *cfg;
    *out = q;
    return CP_OK;
}

void qr_destroy(qr *q)
{
    cp_free(q);
}

/* The one log line of an operation that did not succeed. */
static void log_outcome(const scp_qr_call *call, uint16_t status, const char *uid,
                        const char *detail)
{
    const dimse_command *cmd = scp_qr_command(call);

    cp_log_write(status == DIMSE_SUCCESS ? CP_LOG_INFO : CP_LOG_WARN, "dicom.qr",
                 "op=%s status=0x%04x sop_class_uid=%s uid=%s detail=\"%s\"",
                 dimse_command_name(cmd->command_field), status, cmd->affected_sop_class,
                 uid, detail);
}

/* --- authorisation and audit --- */

/*
 * Limits spec to what the association may see; false when it may see
 * nothing at all, and the operation is then refused.
 */
static bool scope_query(const qr *q, scp_qr_call *call, index_query_spec *spec)
{
    const qr_auth *au = &q->cfg.auth;

    if (au->scope == NULL)
        return true;
    return au->scope(au->ctx, scp_qr_identity(call), spec);
}

/*
 * Whether a row may be shown. A study row is visible when one of its
 * modalities is (ModalitiesInStudy is a backslash-separated list); lower
 * levels go by their series' modality.
 */
static bool row_visible(const qr *q, scp_qr_call *call, const index_row *row)
{
    const qr_auth *au = &q->cfg.auth;
    void *identity = scp_qr_identity(call);
    const char *p = row->modalities_in_study;

    if (au->visible == NULL)
        return true;
    if (row->level != INDEX_LEVEL_STUDY)
        return au->visible(au->ctx, identity, row->institution_id, row->rec.series.modality);
    if (*p == '\0')
        return au->visible(au->ctx, identity, row->institution_id, "");
    while (*p != '\0') {
        char one[INDEX_CS_MAX + 1];
        size_t n = strcspn(p, "\\");

        snprintf(one, sizeof one, "%.*s", (int)(n < INDEX_CS_MAX ? n : INDEX_CS_MAX), p);
        if (au->visible(au->ctx, identity, row->institution_id, one))
            return true;
        p += n;
        if (*p == '\\')
            p++;
    }
    return false;
}

static void audit_op(const qr *q, scp_qr_call *call, qr_audit_info *info)
{
    const qr_auth *au = &q->cfg.auth;

    if (au->audit == NULL)
        return;
    info->command_field = scp_qr_command(call)->command_field;
    info->calling_ae = scp_qr_calling_ae(call);
    info->peer = scp_qr_peer(call);
    if (info->move_destination == NULL)
        info->move_destination = "";
    au->audit(au->ctx, scp_qr_identity(call), info);
}

/*
 * An association that may see no study at all: 0124H Refused: Not
 * Authorized, the general failure of PS3.7 Annex C (C.5) that PS3.4
 * C.4.1.1.4 and C.4.2.1.5 leave open to every C-FIND, C-MOVE and C-GET.
 */
static void refuse_unauthorised(const qr *q, scp_qr_call *call, const qr_query *query)
{
    bool retrieve = scp_qr_command(call)->command_field != DIMSE_C_FIND_RQ;
    scp_qr_counts none = { retrieve, 0, 0, 0, 0 };
    qr_audit_info info = { 0 };

    scp_qr_respond(call, DIMSE_NOT_AUTHORIZED, &none, NULL, 0, "not authorized");
    log_outcome(call, DIMSE_NOT_AUTHORIZED, "-", "not authorized");
    info.query = query;
    info.status = DIMSE_NOT_AUTHORIZED;
    info.counts = retrieve ? &none : NULL;
    info.move_destination = scp_qr_command(call)->move_destination;
    audit_op(q, call, &info);
}

/* --- C-FIND --- */

typedef struct find_state {
    qr *q;
    scp_qr_call *call;
    const qr_query *query;
    const char *ts;
    uint16_t pending;
    bool cancelled;
    cp_status failed;
    uint64_t matches;
    /* Patient level: one row per patient, with its count of studies. */
    index_row *patients;
    uint32_t *studies;
    size_t patient_count;
    size_t patient_cap;
} find_state;

static cp_status send_match(find_state *fs, const index_row *row, uint32_t studies)
{
    cp_buf b = CP_BUF_INIT;
    cp_status st;

    if (scp_qr_cancelled(fs->call)) {
        fs->cancelled = true;
        return CP_ERR_STOPPED;
    }
    if (scp_qr_broken(fs->call))
        return CP_ERR_IO;
    st = qr_encode_row(fs->query, row, studies, fs->q->cfg.ae_title, fs->ts, &b);
    if (st == CP_OK)
        st = scp_qr_respond(fs->call, fs->pending, NULL, b.data, b.len, NULL);
    cp_buf_free(&b);
    fs->matches++;
    return st;
}

static cp_status on_find_row(void *ctx, const index_row *row)
{
    find_state *fs = ctx;
    const index_patient *p = &row->rec.patient;

    if (!row_visible(fs->q, fs->call, row))
        return CP_OK;
    if (fs->query->level != QR_LEVEL_PATIENT)
        return send_match(fs, row, 0);

    for (size_t i = 0; i < fs->patient_count; i++) {
        const index_patient *o = &fs->patients[i].rec.patient;

        if (strcmp(o->id, p->id) == 0 && strcmp(o->issuer, p->issuer) == 0) {
            fs->studies[i]++;
            return CP_OK;
        }
    }
    if (fs->patient_count == QR_PATIENTS_MAX)
        return CP_ERR_LIMIT;
    if (fs->patient_count == fs->patient_cap) {
        size_t cap = fs->patient_cap == 0 ? 16 : fs->patient_cap * 2;
        index_row *rows = cp_realloc(fs->patients, cap * sizeof *rows);
        uint32_t *counts;

        if (rows == NULL)
            return CP_ERR_NOMEM;
        fs->patients = rows;
        counts = cp_realloc(fs->studies, cap * sizeof *counts);
        if (counts == NULL)
            return CP_ERR_NOMEM;
        fs->studies = counts;
        fs->patient_cap = cap;
    }
    fs->patients[fs->patient_count] = *row;
    /* The study is not the patient's: keep only the patient's attributes. */
    memset(&fs->patients[fs->patient_count].rec.study, 0, sizeof row->rec.study);
    fs->studies[fs->patient_count] = 1;
    fs->patient_count++;
    return CP_OK;
}

static void serve_find(qr *q, scp_qr_call *call, const qr_query *query)
{
    find_state fs;
    qr_audit_info info = { 0 };
    index_query_spec spec;
    cp_error err;
    uint16_t status = DIMSE_SUCCESS;
    const char *detail = "";
    cp_status st;

    memset(&fs, 0, sizeof fs);
    fs.q = q;
    fs.call = call;
    fs.query = query;
    fs.ts = scp_qr_context(call)->transfer_syntax;
    fs.pending = query->unsupported ? 0xFF01 : DIMSE_PENDING;
    memset(&spec, 0, sizeof spec);
    spec.level = qr_index_level(query->level);
    spec.terms = query->terms;
    spec.term_count = query->term_count;

    cp_error_clear(&err);
    if (!scope_query(q, call, &spec)) {
        refuse_unauthorised(q, call, query);
        return;
    }
    st = index_query(q->cfg.idx, &spec, on_find_row, &fs, &err);
    for (size_t i = 0; st == CP_OK && i < fs.patient_count; i++)
        st = send_match(&fs, &fs.patients[i], fs.studies[i]);
    if (fs.cancelled) {
        status = DIMSE_CANCEL;
        detail = "cancelled";
    } else if (st == CP_ERR_INVALID || st == CP_ERR_UNSUPPORTED) {
        status = DIMSE_DATA_SET_MISMATCH;
        detail = "a key value breaks the matching rules";
    } else if (st != CP_OK && st != CP_ERR_STOPPED) {
        status = DIMSE_OUT_OF_RESOURCES;
        detail = cp_status_name(st);
    }
    if (!scp_qr_broken(call))
        scp_qr_respond(call, status, NULL, NULL, 0, status == DIMSE_SUCCESS ? NULL : detail);
    if (status != DIMSE_SUCCESS)
        log_outcome(call, status, "-", detail);
    else
        cp_log_debug("dicom.qr", "op=C-FIND level=%s matches=%" PRIu64,
                     level_names[query->level], fs.matches);
    info.query = query;
    info.status = status;
    info.matches = fs.matches;
    audit_op(q, call, &info);
    cp_free(fs.patients);
    cp_free(fs.studies);
}

/* --- retrieve: the instances --- */

typedef struct qr_item {
    char sop_class[INDEX_UID_MAX + 1];
    char sop_uid[INDEX_UID_MAX + 1];
    char ts[INDEX_UID_MAX + 1];
    char blob_key[INDEX_BLOB_KEY_MAX + 1];
    /* For the audit trail, whose records keep 64 bytes of a Patient ID. */
    char study_uid[INDEX_UID_MAX + 1];
    char patient_id[65];
    int64_t institution_id;
    bool sent;
} qr_item;

typedef struct item_list {
    qr *q;
    scp_qr_call *call;
    qr_item *items;
    size_t count;
    size_t cap;
} item_list;

static cp_status on_item(void *ctx, const index_row *row)
{
    item_list *l = ctx;
    const index_instance *in = &row->rec.instance;
    qr_item *it;

    /* Hidden instances are not there: no sub-operation, no count. */
    if (!row_visible(l->q, l->call, row))
        return CP_OK;
    if (l->count == QR_RETRIEVE_MAX)
        return CP_ERR_LIMIT;
    if (l->count == l->cap) {
        size_t cap = l->cap == 0 ? 64 : l->cap * 2;
        qr_item *items = cp_realloc(l->items, cap * sizeof *items);

        if (items == NULL)
            return CP_ERR_NOMEM;
        l->items = items;
        l->cap = cap;
    }
    it = &l->items[l->count++];
    snprintf(it->sop_class, sizeof it->sop_class, "%s", in->sop_class_uid);
    snprintf(it->sop_uid, sizeof it->sop_uid, "%s", in->sop_uid);
    snprintf(it->ts, sizeof it->ts, "%s", in->transfer_syntax);
    snprintf(it->blob_key, sizeof it->blob_key, "%s", in->blob_key);
    snprintf(it->study_uid, sizeof it->study_uid, "%s", row->rec.study.uid);
    snprintf(it->patient_id, sizeof it->patient_id, "%.*s", (int)sizeof it->patient_id - 1,
             row->rec.patient.id);
    it->institution_id = row->institution_id;
    it->sent = false;
    return CP_OK;
}

/*
 * The instances a retrieve names: its unique keys, matched at instance
 * level, within the association's scope (CP_ERR_FORBIDDEN: none at all).
 */
static cp_status list_items(qr *q, const qr_query *query, item_list *l, cp_error *err)
{
    static const uint32_t tags[] = { TAG_PATIENT_ID, TAG_STUDY_UID, TAG_SERIES_UID,
                                     TAG_SOP_UID };
    static const char *const names[] = { "PatientID", "StudyInstanceUID",
                                         "SeriesInstanceUID", "SOPInstanceUID" };
    index_term terms[4];
    index_query_spec spec;

    memset(&spec, 0, sizeof spec);
    spec.level = INDEX_LEVEL_INSTANCE;
    spec.terms = terms;
    for (size_t i = 0; i <= (size_t)query->level; i++) {
        const qr_key *k = find_key(query, tags[i]);

        if (k == NULL || k->value[0] == '\0')
            continue;
        terms[spec.term_count].attribute = names[i];
        terms[spec.term_count].value = k->value;
        spec.term_count++;
    }
    if (!scope_query(q, l->call, &spec))
        return CP_ERR_FORBIDDEN;
    return index_query(q->cfg.idx, &spec, on_item, l, err);
}

/* --- retrieve: sending one instance --- */

/* Where C-STORE sub-operations go: a C-MOVE association or the caller's. */
typedef struct qr_sender {
    uint8_t (*context)(void *ctx, const char *sop_class, const char *ts);
    cp_status (*command)(void *ctx, uint8_t pc, dimse_command *cmd);
    cp_status (*data)(void *ctx, uint8_t pc, const void *data, size_t len, bool last);
    cp_status (*wait)(void *ctx, dimse_command *rsp);
    void *ctx;
} qr_sender;

static bool plain_le(const char *ts)
{
    return strcmp(ts, dcm_ts_explicit_le.uid) == 0 || strcmp(ts, dcm_ts_implicit_le.uid) == 0;
}

/* Reads exactly len bytes of the blob. */
static cp_status read_exact(store_reader *r, void *buf, size_t len)
{
    size_t got = 0;
    cp_status st = store_read(r, buf, len, &got, NULL);

    if (st == CP_OK && got != len)
        st = CP_ERR_MALFORMED;
    return st;
}

/* Skips the preamble and meta group (PS3.10 7.1): the data set follows. */
static cp_status skip_meta(store_reader *r, uint64_t *left)
{
    uint8_t head[144];
    uint8_t skip[1024];
    uint32_t group_len;
    uint64_t size = store_reader_size(r);
    cp_status st;

    if (size < sizeof head)
        return CP_ERR_MALFORMED;
    st = read_exact(r, head, sizeof head);
    if (st != CP_OK)
        return st;
    if (memcmp(head + 128, "DICM", 4) != 0 || head[132] != 0x02 || head[133] != 0 ||
        head[134] != 0 || head[135] != 0 || memcmp(head + 136, "UL", 2) != 0)
        return CP_ERR_MALFORMED;
    group_len = (uint32_t)head[140] | (uint32_t)head[141] << 8 | (uint32_t)head[142] << 16 |
                (uint32_t)head[143] << 24;
    if (group_len > size - sizeof head)
        return CP_ERR_MALFORMED;
    *left = size - sizeof head - group_len;
    while (group_len > 0 && st == CP_OK) {
        size_t n = group_len < sizeof skip ? group_len : sizeof skip;

        st = read_exact(r, skip, n);
        group_len -= (uint32_t)n;
    }
    return st;
}

static cp_status stream_data(const qr_sender *s, uint8_t pc, store_reader *r, uint64_t left)
{
    uint8_t *chunk = cp_malloc(QR_STREAM_CHUNK);
    cp_status st = CP_OK;

    if (chunk == NULL)
        return CP_ERR_NOMEM;
    do {
        size_t n = left < QR_STREAM_CHUNK ? (size_t)left : QR_STREAM_CHUNK;

        st = read_exact(r, chunk, n);
        if (st == CP_OK)
            st = s->data(s->ctx, pc, chunk, n, n == left);
        left -= n;
    } while (st == CP_OK && left > 0);
    cp_free(chunk);
    return st;
}

/* Loads the data set and rewrites it in the other little endian syntax. */
static cp_status transcode_data(const qr_sender *s, uint8_t pc, store_reader *r,
                                uint64_t left, const char *from, const char *to)
{
    dcm_read_options opts = { 0 };
    cp_buf raw = CP_BUF_INIT, out = CP_BUF_INIT;
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    dcm_sink sink = dcm_sink_to_buf(&out);
    cp_status st;

    if (left > QR_TRANSCODE_MAX)
        return CP_ERR_LIMIT;
    st = cp_buf_reserve(&raw, (size_t)left);
    if (st == CP_OK)
        st = read_exact(r, raw.data, (size_t)left);
    if (st != CP_OK)
        goto done;
    raw.len = (size_t)left;
    src = dcm_source_from_memory(raw.data, raw.len);
    if (src == NULL) {
        st = CP_ERR_NOMEM;
        goto done;
    }
    opts.no_meta = true;
    opts.bulk_threshold = UINT32_MAX;
    opts.assume_ts = dcm_ts_lookup(from, strlen(from));
    st = dcm_file_read(src, &opts, &file, NULL);
    if (st == CP_OK)
        st = dcm_write_dataset(file->dataset, dcm_ts_lookup(to, strlen(to)), src, &sink, NULL);
    if (st == CP_OK)
        st = s->data(s->ctx, pc, out.data, out.len, true);

done:
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    cp_buf_free(&raw);
    cp_buf_free(&out);
    return st;
}

/* The context to send it on and in which syntax; 0 when the peer took none. */
static uint8_t pick_context(const qr_sender *s, const qr_item *it, const char **ts)
{
    static const char *const plain[] = { "1.2.840.10008.1.2.1", "1.2.840.10008.1.2" };
    uint8_t pc = s->context(s->ctx, it->sop_class, it->ts);

    *ts = it->ts;
    if (pc != 0 || !plain_le(it->ts))
        return pc;
    for (size_t i = 0; i < 2; i++) {
        pc = s->context(s->ctx, it->sop_class, plain[i]);
        if (pc != 0) {
            *ts = plain[i];
            return pc;
        }
    }
    return 0;
}

/* One C-STORE sub-operation; *status is its response's status. */
static cp_status send_item(qr *q, const qr_sender *s, const qr_item *it,
                           const dimse_command *req, uint16_t *status)
{
    store_reader *r = NULL;
    dimse_command cmd, rsp;
    const char *ts = NULL;
    uint8_t pc = pick_context(s, it, &ts);
    uint64_t left = 0;
    cp_status st;

    *status = DIMSE_SOP_CLASS_NOT_SUPPORTED;
    if (pc == 0)
        return CP_OK;
    st = store_open(q->cfg.st, it->blob_key, &r, NULL);
    if (st == CP_OK)
        st = skip_meta(r, &left);
    if (st != CP_OK) {
        *status = DIMSE_OUT_OF_RESOURCES;
        store_close(r);
        return CP_OK;
    }

    memset(&cmd, 0, sizeof cmd);
    cmd.command_field = DIMSE_C_STORE_RQ;
    cmd.data_set_type = 0x0000;
    cmd.fields = DIMSE_F_AFFECTED_SOP_CLASS | DIMSE_F_AFFECTED_SOP_INSTANCE |
                 DIMSE_F_PRIORITY;
    cmd.priority = DIMSE_PRIORITY_MEDIUM;
    snprintf(cmd.affected_sop_class, sizeof cmd.affected_sop_class, "%s", it->sop_class);
    snprintf(cmd.affected_sop_instance, sizeof cmd.affected_sop_instance, "%s", it->sop_uid);
    if (req->command_field == DIMSE_C_MOVE_RQ) {
        cmd.fields |= DIMSE_F_MOVE_ORIGINATOR_AE | DIMSE_F_MOVE_ORIGINATOR_ID;
        snprintf(cmd.move_originator_ae, sizeof cmd.move_originator_ae, "%s",
                 req->move_originator_ae);
        cmd.move_originator_id = req->message_id;
    }
    st = s->command(s->ctx, pc, &cmd);
    if (st == CP_OK && strcmp(ts, it->ts) == 0)
        st = stream_data(s, pc, r, left);
    else if (st == CP_OK)
        st = transcode_data(s, pc, r, left, it->ts, ts);
    store_close(r);
    if (st == CP_OK)
        st = s->wait(s->ctx, &rsp);
    if (st != CP_OK)
        return st;
    *status = (rsp.fields & DIMSE_F_STATUS) ? rsp.status : DIMSE_CANNOT_UNDERSTAND;
    return CP_OK;
}

/* --- retrieve: the two kinds of sender --- */

static uint8_t scu_ctx(void *ctx, const char *sop_class, const char *ts)
{
    return scu_context_for_ts(ctx, sop_class, ts);
}

static cp_status scu_cmd(void *ctx, uint8_t pc, dimse_command *cmd)
{
    return scu_send_command(ctx, pc, cmd, NULL);
}

static cp_status scu_dat(void *ctx, uint8_t pc, const void *data, size_t len, bool last)
{
    return scu_send_data(ctx, pc, data, len, last, NULL);
}

static cp_status scu_wait(void *ctx, dimse_command *rsp)
{
    return scu_wait_response(ctx, rsp, NULL);
}

static uint8_t get_ctx(void *ctx, const char *sop_class, const char *ts)
{
    return scp_qr_store_context(ctx, sop_class, ts);
}

static cp_status get_cmd(void *ctx, uint8_t pc, dimse_command *cmd)
{
    return scp_qr_store_command(ctx, pc, cmd);
}

static cp_status get_dat(void *ctx, uint8_t pc, const void *data, size_t len, bool last)
{
    return scp_qr_store_data(ctx, pc, data, len, last);
}

static cp_status get_wait(void *ctx, dimse_command *rsp)
{
    return scp_qr_store_wait(ctx, rsp);
}

/* Proposes, per SOP class, the uncompressed pair and each compressed syntax stored. */
static cp_status connect_destination(qr *q, const scp_remote_ae *ae, const item_list *l,
                                     scu **out)
{
    static const char *const plain[] = { "1.2.840.10008.1.2.1", "1.2.840.10008.1.2" };
    scu_proposal *props = cp_calloc(QR_MOVE_CONTEXTS, sizeof *props);
    const char **single = cp_calloc(QR_MOVE_CONTEXTS, sizeof *single);
    scu_config cfg;
    size_t n = 0;
    cp_error err;
    cp_status st;

    if (props == NULL || single == NULL) {
        st = CP_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < l->count && n < QR_MOVE_CONTEXTS; i++) {
        const qr_item *it = &l->items[i];
        bool seen_plain = false, seen_ts = plain_le(it->ts);

        for (size_t j = 0; j < n; j++) {
            if (strcmp(props[j].abstract_syntax, it->sop_class) != 0)
                continue;
            if (props[j].transfer_syntaxes == plain)
                seen_plain = true;
            else if (strcmp(props[j].transfer_syntaxes[0], it->ts) == 0)
                seen_ts = true;
        }
        if (!seen_plain) {
            props[n].abstract_syntax = it->sop_class;
            props[n].transfer_syntaxes = plain;
            props[n++].ts_count = 2;
        }
        if (!seen_ts && n < QR_MOVE_CONTEXTS) {
            single[n] = it->ts;
            props[n].abstract_syntax = it->sop_class;
            props[n].transfer_syntaxes = &single[n];
            props[n++].ts_count = 1;
        }
    }

    memset(&cfg, 0, sizeof cfg);
    cfg.calling_ae = q->cfg.ae_title;
    cfg.called_ae = ae->title;
    cfg.host = ae->host;
    cfg.port = ae->port;
    cfg.params = q->cfg.params;
    cp_error_clear(&err);
    st = scu_connect(&cfg, props, n, out, &err);
    if (st != CP_OK)
        cp_log_warn("dicom.move.connect", "destination_ae=%s detail=\"%s\"", ae->title,
                    err.detail);

done:
    cp_free(props);
    cp_free(single);
    return st;
}

/* The final status of a retrieve from its counts (PS3.4 C.4.2.1.5). */
static uint16_t final_status(const scp_qr_counts *c)
{
    if (c->failed == 0 && c->warning == 0)
        return DIMSE_SUCCESS;
    if (c->completed == 0 && c->warning == 0)
        return 0xA702;
    return DIMSE_COERCION;
}

/* Runs the sub-operations and answers; the final status (or the cancel). */
static uint16_t run_items(qr *q, scp_qr_call *call, const qr_sender *s, item_list *l,
                          const dimse_command *req, scp_qr_counts *counts)
{
    uint16_t status;
    const char *detail = "";

    for (size_t i = 0; i < l->count; i++) {
        uint16_t sub = DIMSE_SUCCESS;

        if (scp_qr_cancelled(call)) {
            counts->remaining = (uint16_t)(l->count - i);
            scp_qr_respond(call, DIMSE_CANCEL, counts, NULL, 0, "cancelled");
            log_outcome(call, DIMSE_CANCEL, l->items[i].sop_uid, "cancelled");
            return DIMSE_CANCEL;
        }
        if (send_item(q, s, &l->items[i], req, &sub) != CP_OK) {
            /* The association carrying the sub-operations broke. */
            sub = DIMSE_OUT_OF_RESOURCES;
            detail = "sub-operation association failed";
            counts->failed = (uint16_t)(counts->failed + l->count - i);
            log_outcome(call, 0xA702, l->items[i].sop_uid, detail);
            break;
        }
        if (sub == DIMSE_SUCCESS) {
            counts->completed++;
            l->items[i].sent = true;
        } else if ((sub & 0xF000) == 0xB000) {
            counts->warning++;
            l->items[i].sent = true;
        } else {
            counts->failed++;
            log_outcome(call, sub, l->items[i].sop_uid, "C-STORE sub-operation failed");
        }
        counts->remaining = (uint16_t)(l->count - i - 1);
        if (counts->remaining > 0 && !scp_qr_broken(call))
            scp_qr_respond(call, DIMSE_PENDING, counts, NULL, 0, NULL);
    }
    counts->remaining = 0;
    status = final_status(counts);
    if (scp_qr_broken(call))
        return status;
    scp_qr_respond(call, status, counts, NULL, 0,
                   status == DIMSE_SUCCESS ? NULL : "some sub-operations failed");
    return status;
}

/*
 * Tells the audit hook about a retrieve: the studies its instances
 * belonged to (in the order first met), with how many of each were sent.
 */
static void audit_retrieve(qr *q, scp_qr_call *call, const qr_query *query,
                           const item_list *l, uint16_t status, const scp_qr_counts *counts,
                           const char *destination)
{
    qr_audit_info info = { 0 };
    qr_audit_study *studies = NULL;
    size_t n = 0;

    if (q->cfg.auth.audit == NULL)
        return;
    if (l->count > 0)
        studies = cp_calloc(l->count, sizeof *studies);
    for (size_t i = 0; studies != NULL && i < l->count; i++) {
        const qr_item *it = &l->items[i];
        size_t j = 0;

        /* A study's instances mostly come together: try the last one first. */
        if (n > 0 && strcmp(studies[n - 1].study_uid, it->study_uid) == 0)
            j = n - 1;
        while (j < n && strcmp(studies[j].study_uid, it->study_uid) != 0)
            j++;
        if (j == n) {
            studies[n].study_uid = it->study_uid;
            studies[n].patient_id = it->patient_id;
            studies[n].institution_id = it->institution_id;
            n++;
        }
        studies[j].instances++;
        studies[j].sent += it->sent;
    }
    info.query = query;
    info.status = status;
    info.counts = counts;
    info.move_destination = destination;
    info.studies = studies;
    info.study_count = n;
    audit_op(q, call, &info);
    cp_free(studies);
}

static void serve_retrieve(qr *q, scp_qr_call *call, const qr_query *query)
{
    dimse_command req = *scp_qr_command(call);
    item_list l = { q, call, NULL, 0, 0 };
    scp_qr_counts counts = { true, 0, 0, 0, 0 };
    const char *dest = req.command_field == DIMSE_C_MOVE_RQ ? req.move_destination : "";
    uint16_t status;
    qr_sender s;
    scu *u = NULL;
    cp_status st;

    st = list_items(q, query, &l, NULL);
    if (st == CP_ERR_FORBIDDEN) {
        refuse_unauthorised(q, call, query);
        goto done;
    }
    if (st != CP_OK) {
        status = st == CP_ERR_LIMIT ? 0xA701 : DIMSE_OUT_OF_RESOURCES;
        scp_qr_respond(call, status, &counts, NULL, 0, "cannot list the instances");
        log_outcome(call, status, "-", cp_status_name(st));
        l.count = 0;
        audit_retrieve(q, call, query, &l, status, &counts, dest);
        goto done;
    }

    if (req.command_field == DIMSE_C_MOVE_RQ) {
        const scp_remote_ae *ae = scp_qr_remote_ae(call, req.move_destination);

        if (ae == NULL || ae->host[0] == '\0') {
            status = 0xA801;
            scp_qr_respond(call, status, &counts, NULL, 0, "move destination unknown");
            log_outcome(call, status, req.move_destination, "move destination unknown");
            audit_retrieve(q, call, query, &l, status, &counts, dest);
            goto done;
        }
        if (l.count > 0 && connect_destination(q, ae, &l, &u) != CP_OK) {
            status = 0xA702;
            counts.failed = (uint16_t)l.count;
            scp_qr_respond(call, status, &counts, NULL, 0, "cannot reach the destination");
            log_outcome(call, status, req.move_destination, "cannot reach the destination");
            audit_retrieve(q, call, query, &l, status, &counts, dest);
            goto done;
        }
        snprintf(req.move_originator_ae, sizeof req.move_originator_ae, "%s",
                 scp_qr_calling_ae(call));
        s = (qr_sender){ scu_ctx, scu_cmd, scu_dat, scu_wait, u };
    } else {
        s = (qr_sender){ get_ctx, get_cmd, get_dat, get_wait, call };
    }
    status = run_items(q, call, &s, &l, &req, &counts);
    audit_retrieve(q, call, query, &l, status, &counts, dest);
    if (u != NULL)
        scu_release(u, NULL);

done:
    scu_destroy(u);
    cp_free(l.items);
}

void qr_serve(void *ctx, scp_qr_call *call)
{
    qr *q = ctx;
    const dimse_command *cmd = scp_qr_command(call);
    const assoc_context *pc = scp_qr_context(call);
    const uint8_t *data;
    size_t len;
    qr_query *query = cp_calloc(1, sizeof *query);
    uint16_t status = DIMSE_OUT_OF_RESOURCES;
    cp_error err;

    if (query == NULL) {
        scp_qr_respond(call, status, NULL, NULL, 0, "out of memory");
        log_outcome(call, status, "-", "out of memory");
        return;
    }
    data = scp_qr_identifier(call, &len);
    cp_error_clear(&err);
    if (qr_query_parse(cmd->affected_sop_class, data, len, pc->transfer_syntax, query,
                       &status, &err) != CP_OK) {
        scp_qr_counts none = { cmd->command_field != DIMSE_C_FIND_RQ, 0, 0, 0, 0 };
        qr_audit_info info = { 0 };

        scp_qr_respond(call, status, &none, NULL, 0, err.detail);
        log_outcome(call, status, "-", err.detail);
        info.status = status;
        info.counts = none.present ? &none : NULL;
        info.move_destination = cmd->command_field == DIMSE_C_MOVE_RQ ? cmd->move_destination
                                                                       : "";
        audit_op(q, call, &info);
        cp_free(query);
        return;
    }
    if (cmd->command_field == DIMSE_C_FIND_RQ)
        serve_find(q, call, query);
    else
        serve_retrieve(q, call, query);
    qr_query_free(query);
    cp_free(query);
}
