/*
 * sr.c - writes a released report as a Basic Text SR instance (PS3.3
 * A.35.1: SR Document General C.17.2, SR Document Content C.17.3) and
 * stores it through the archive. The data set is encoded element by
 * element in Explicit VR Little Endian (PS3.5 7.1.2), sequences and items
 * with undefined length (PS3.5 7.5.2), behind a File Meta Information group
 * built by the writer (PS3.10 7.1). Elements are appended in ascending tag
 * order at every level, as PS3.5 7.1 requires.
 */
#include "consult/sr.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dict_tags.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom/uid.h"
#include "dicom/vr.h"
#include "dicom/writer.h"

#define FAIL(err, st, ...) cp_error_set((err), (st), CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, \
                                        __VA_ARGS__)

/* --- UIDs --------------------------------------------------------------------- */

void sr_uid_new(char *out)
{
    uint8_t n[16];
    char digits[48];
    size_t count = 0;
    bool zero = false;

    randombytes_buf(n, sizeof n);
    n[6] = (uint8_t)((n[6] & 0x0F) | 0x40);     /* RFC 4122 4.4: version 4 */
    n[8] = (uint8_t)((n[8] & 0x3F) | 0x80);     /* and its variant */

    /* The 128-bit number in decimal, by long division by ten. */
    while (!zero) {
        unsigned rem = 0;

        zero = true;
        for (size_t i = 0; i < sizeof n; i++) {
            unsigned cur = rem * 256u + n[i];

            n[i] = (uint8_t)(cur / 10u);
            rem = cur % 10u;
            if (n[i] != 0)
                zero = false;
        }
        digits[count++] = (char)('0' + rem);
    }
    memcpy(out, "2.25.", 5);
    for (size_t i = 0; i < count; i++)
        out[5 + i] = digits[count - 1 - i];
    out[5 + count] = '\0';
}

/* --- encoding ------------------------------------------------------------------- */

static cp_status put_header(cp_buf *b, uint32_t tag, dcm_vr vr, uint32_t length)
{
    uint8_t h[DCM_WRITE_HEADER_MAX];
    size_t n = dcm_write_header(h, tag, vr, length, true, false);

    return cp_buf_append(b, h, n);
}

/* One element, padded to even length (UI with NUL, text with a space). */
static cp_status put_bytes(cp_buf *b, uint32_t tag, dcm_vr vr, const char *value, size_t len)
{
    bool is_long = vr == DCM_VR_UT || vr == DCM_VR_SQ;
    cp_status st;

    if (len >= (is_long ? (size_t)UINT32_MAX - 1 : (size_t)0xFFFE))
        return CP_ERR_LIMIT;
    st = put_header(b, tag, vr, (uint32_t)(len + (len & 1)));
    if (st == CP_OK && len > 0)
        st = cp_buf_append(b, value, len);
    if (st == CP_OK && (len & 1) != 0)
        st = cp_buf_append_byte(b, vr == DCM_VR_UI ? 0 : ' ');
    return st;
}

static cp_status put(cp_buf *b, uint32_t tag, dcm_vr vr, const char *value)
{
    return put_bytes(b, tag, vr, value, strlen(value));
}

/*
 * A short text value (LO, SH, PN) made safe: at most max characters (the
 * VR's limit counts characters, PS3.5 6.2), without backslash (the value
 * separator) or control characters. The value is UTF-8 already (the index
 * keeps nothing else), so a cut before a lead byte keeps characters whole.
 */
static cp_status put_short(cp_buf *b, uint32_t tag, dcm_vr vr, const char *value, size_t max)
{
    char clean[4 * SR_PN_CHARS_MAX + 1];
    size_t chars = 0;
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        bool lead = (*p & 0xC0) != 0x80;

        if (*p == '\\' || *p < 0x20 || *p == 0x7F)
            continue;
        if (lead && chars == max)
            break;
        if (n == sizeof clean - 1)
            break;
        chars += lead ? 1 : 0;
        clean[n++] = (char)*p;
    }
    while (n > 0 && clean[n - 1] == ' ')
        n--;
    return put_bytes(b, tag, vr, clean, n);
}

static cp_status seq_begin(cp_buf *b, uint32_t tag)
{
    return put_header(b, tag, DCM_VR_SQ, DCM_UNDEFINED_LENGTH);
}

static cp_status seq_end(cp_buf *b)
{
    return put_header(b, DCM_TAG_SEQUENCE_DELIMITATION, DCM_VR_NONE, 0);
}

static cp_status item_begin(cp_buf *b)
{
    return put_header(b, DCM_TAG_ITEM, DCM_VR_NONE, DCM_UNDEFINED_LENGTH);
}

static cp_status item_end(cp_buf *b)
{
    return put_header(b, DCM_TAG_ITEM_DELIMITATION, DCM_VR_NONE, 0);
}

/* A sequence that Type 2 makes present but that has nothing to say. */
static cp_status empty_seq(cp_buf *b, uint32_t tag)
{
    cp_status st = seq_begin(b, tag);

    return st == CP_OK ? seq_end(b) : st;
}

/* A Concept Name Code Sequence of one code (PS3.3 8.8, Code Sequence Macro). */
static cp_status concept(cp_buf *b, const char *value, const char *scheme, const char *meaning)
{
    cp_status st = seq_begin(b, DCM_ConceptNameCodeSequence);

    if (st == CP_OK)
        st = item_begin(b);
    if (st == CP_OK)
        st = put(b, DCM_CodeValue, DCM_VR_SH, value);
    if (st == CP_OK)
        st = put(b, DCM_CodingSchemeDesignator, DCM_VR_SH, scheme);
    if (st == CP_OK)
        st = put(b, DCM_CodeMeaning, DCM_VR_LO, meaning);
    if (st == CP_OK)
        st = item_end(b);
    if (st == CP_OK)
        st = seq_end(b);
    return st;
}

/* A TEXT content item CONTAINS-ed by the root (PS3.3 C.17.3). */
static cp_status text_item(cp_buf *b, const char *value, const char *scheme,
                           const char *meaning, const char *text)
{
    cp_status st = item_begin(b);

    if (st == CP_OK)
        st = put(b, DCM_RelationshipType, DCM_VR_CS, "CONTAINS");
    if (st == CP_OK)
        st = put(b, DCM_ValueType, DCM_VR_CS, "TEXT");
    if (st == CP_OK)
        st = concept(b, value, scheme, meaning);
    if (st == CP_OK)
        st = put(b, DCM_TextValue, DCM_VR_UT, text != NULL ? text : "");
    if (st == CP_OK)
        st = item_end(b);
    return st;
}

/* --- what the document says ------------------------------------------------------- */

typedef struct sr_facts {
    const order *o;
    const report_version *v;
    const index_row *row;
    const char *series_uid;
    const char *sop_uid;
    char reviewer[DIRECTORY_NAME_MAX + 1];
    char organization[DIRECTORY_NAME_MAX + 1];
    char date[9];                   /* creation, local time */
    char time[7];
    char verified[15];              /* DT of the review */
    char patient_name[3 * (INDEX_PN_GROUP_MAX + 1)];
    char referring[3 * (INDEX_PN_GROUP_MAX + 1)];
} sr_facts;

static void format_local(int64_t us, char *date, char *time_out, char *dt)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    localtime_r(&t, &tm);
    if (date != NULL)
        strftime(date, 9, "%Y%m%d", &tm);
    if (time_out != NULL)
        strftime(time_out, 7, "%H%M%S", &tm);
    if (dt != NULL)
        strftime(dt, 15, "%Y%m%d%H%M%S", &tm);
}

/* "alphabetic=ideographic=phonetic" with the empty trailing groups left out. */
static void pn_join(const index_person_name *pn, char *out, size_t cap)
{
    if (pn->phonetic[0] != '\0')
        snprintf(out, cap, "%s=%s=%s", pn->alphabetic, pn->ideographic, pn->phonetic);
    else if (pn->ideographic[0] != '\0')
        snprintf(out, cap, "%s=%s", pn->alphabetic, pn->ideographic);
    else
        snprintf(out, cap, "%s", pn->alphabetic);
}

/* Patient, study and series: the modules before the SR document's own (groups 0008-0020). */
static cp_status put_header_modules(cp_buf *b, const sr_facts *f)
{
    const index_instance_record *r = &f->row->rec;
    cp_status st;

    st = put(b, DCM_TAG_SPECIFIC_CHARACTER_SET, DCM_VR_CS, "ISO_IR 192");
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0012), DCM_VR_DA, f->date);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0013), DCM_VR_TM, f->time);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0016), DCM_VR_UI, SR_BASIC_TEXT_CLASS);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0018), DCM_VR_UI, f->sop_uid);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0020), DCM_VR_DA, r->study.date);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0023), DCM_VR_DA, f->date);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0030), DCM_VR_TM, r->study.time);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0033), DCM_VR_TM, f->time);
    if (st == CP_OK)
        st = put_short(b, DCM_TAG(0x0008, 0x0050), DCM_VR_SH, r->study.accession, SR_SH_CHARS_MAX);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0060), DCM_VR_CS, "SR");
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0070), DCM_VR_LO, "cloudpacs");
    if (st == CP_OK)
        st = put_short(b, DCM_TAG(0x0008, 0x0090), DCM_VR_PN, f->referring,
                       SR_PN_CHARS_MAX);
    if (st == CP_OK && r->study.description[0] != '\0')
        st = put_short(b, DCM_TAG(0x0008, 0x1030), DCM_VR_LO, r->study.description,
                       SR_LO_CHARS_MAX);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x103E), DCM_VR_LO, "Diagnostic report");
    if (st == CP_OK)
        st = empty_seq(b, DCM_ReferencedPerformedProcedureStepSequence);
    if (st == CP_OK)
        st = put_short(b, DCM_TAG(0x0010, 0x0010), DCM_VR_PN, f->patient_name,
                       SR_PN_CHARS_MAX);
    if (st == CP_OK)
        st = put_short(b, DCM_TAG(0x0010, 0x0020), DCM_VR_LO, r->patient.id,
                       SR_LO_CHARS_MAX);
    if (st == CP_OK && r->patient.issuer[0] != '\0')
        st = put_short(b, DCM_TAG(0x0010, 0x0021), DCM_VR_LO, r->patient.issuer,
                       SR_LO_CHARS_MAX);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0010, 0x0030), DCM_VR_DA, r->patient.birth_date);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0010, 0x0040), DCM_VR_CS, r->patient.sex);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0020, 0x000D), DCM_VR_UI, r->study.uid);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0020, 0x000E), DCM_VR_UI, f->series_uid);
    if (st == CP_OK)
        st = put_short(b, DCM_TAG(0x0020, 0x0010), DCM_VR_SH, r->study.id, SR_SH_CHARS_MAX);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0020, 0x0011), DCM_VR_IS, "999");
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0020, 0x0013), DCM_VR_IS, "1");
    return st;
}

/* The Verifying Observer Sequence: one item, the reviewer (PS3.3 C.17.2). */
static cp_status put_verifier(cp_buf *b, const sr_facts *f)
{
    cp_status st = seq_begin(b, DCM_VerifyingObserverSequence);

    if (st == CP_OK)
        st = item_begin(b);
    if (st == CP_OK)
        st = put_short(b, DCM_VerifyingOrganization, DCM_VR_LO, f->organization,
                       SR_LO_CHARS_MAX);
    if (st == CP_OK)
        st = put(b, DCM_VerificationDateTime, DCM_VR_DT, f->verified);
    if (st == CP_OK)
        st = put_short(b, DCM_VerifyingObserverName, DCM_VR_PN, f->reviewer,
                       SR_PN_CHARS_MAX);
    if (st == CP_OK)
        st = empty_seq(b, DCM_VerifyingObserverIdentificationCodeSequence);
    if (st == CP_OK)
        st = item_end(b);
    if (st == CP_OK)
        st = seq_end(b);
    return st;
}

/* The root CONTAINER and the document flags (group 0040). */
static cp_status put_document(cp_buf *b, const sr_facts *f)
{
    const report_version *v = f->v;
    cp_status st;

    st = put(b, DCM_ValueType, DCM_VR_CS, "CONTAINER");
    if (st == CP_OK)
        st = concept(b, "18748-4", "LN", "Diagnostic Imaging Report");
    if (st == CP_OK)
        st = put(b, DCM_ContinuityOfContent, DCM_VR_CS, "SEPARATE");
    if (st == CP_OK)
        st = put_verifier(b, f);
    if (st == CP_OK)
        st = empty_seq(b, DCM_PerformedProcedureCodeSequence);
    if (st == CP_OK)
        st = put(b, DCM_CompletionFlag, DCM_VR_CS, "COMPLETE");
    if (st == CP_OK)
        st = put(b, DCM_VerificationFlag, DCM_VR_CS, "VERIFIED");
    if (st == CP_OK)
        st = put(b, DCM_PreliminaryFlag, DCM_VR_CS, "FINAL");
    if (st == CP_OK)
        st = seq_begin(b, DCM_ContentSequence);
    if (st == CP_OK)
        st = text_item(b, "121071", "DCM", "Finding", v->findings);
    if (st == CP_OK)
        st = text_item(b, "121073", "DCM", "Impression", v->impression);
    if (st == CP_OK && v->critical)
        st = text_item(b, "CRITICAL", "99CLOUDPACS", "Critical finding",
                       "A critical finding: the requesting institution is to be told at once.");
    if (st == CP_OK)
        st = seq_end(b);
    return st;
}

static cp_status first_row(void *ctx, const index_row *row)
{
    *(index_row *)ctx = *row;
    return CP_ERR_STOPPED;
}

/* The study's index row, the reviewer and the organisation. */
static cp_status gather(index_db *idx, directory *dir, sr_facts *f, index_row *row,
                        int64_t now_us, cp_error *err)
{
    index_term term = { "StudyInstanceUID", f->o->study_uid };
    index_query_spec q = { .level = INDEX_LEVEL_STUDY, .terms = &term, .term_count = 1,
                           .limit = 1 };
    directory_user user;
    directory_institution inst;
    cp_status st;

    memset(row, 0, sizeof *row);
    st = index_query(idx, &q, first_row, row, err);
    if (st != CP_OK)
        return st;
    if (row->rec.study.uid[0] == '\0')
        return FAIL(err, CP_ERR_NOT_FOUND, "sr: the order's study is not in the index");
    f->row = row;

    st = directory_user_get(dir, f->v->reviewer_id, &user, err);
    if (st != CP_OK)
        return st;
    snprintf(f->reviewer, sizeof f->reviewer, "%s",
             user.display_name[0] != '\0' ? user.display_name : user.username);
    snprintf(f->organization, sizeof f->organization, "cloudpacs");
    if (f->o->reading_id > 0 &&
        directory_institution_get(dir, f->o->reading_id, &inst, NULL) == CP_OK)
        snprintf(f->organization, sizeof f->organization, "%s", inst.name);

    format_local(now_us, f->date, f->time, NULL);
    format_local(f->v->reviewed_us, NULL, NULL, f->verified);
    pn_join(&row->rec.patient.name, f->patient_name, sizeof f->patient_name);
    pn_join(&row->rec.study.referring, f->referring, sizeof f->referring);
    return CP_OK;
}

cp_status sr_build_report(index_db *idx, directory *dir, const order *o,
                          const report_version *v, const char *series_uid,
                          const char *sop_uid, int64_t now_us, cp_buf *out, cp_error *err)
{
    static const uint8_t preamble[128];
    sr_facts f = { .o = o, .v = v, .series_uid = series_uid, .sop_uid = sop_uid };
    index_row *row;
    cp_status st;

    if (v == NULL || o == NULL || v->status != REPORT_RELEASED || v->order_id != o->id)
        return FAIL(err, CP_ERR_INVALID, "sr: only a released version of the order is stored");
    if (!dcm_uid_is_valid(series_uid, strlen(series_uid)) ||
        !dcm_uid_is_valid(sop_uid, strlen(sop_uid)))
        return FAIL(err, CP_ERR_INVALID, "sr: invalid series or instance UID");
    row = cp_malloc(sizeof *row);
    if (row == NULL)
        return FAIL(err, CP_ERR_NOMEM, "sr: index row");
    if (now_us == 0) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        now_us = (int64_t)ts.tv_sec * 1000000;
    }
    st = gather(idx, dir, &f, row, now_us, err);
    if (st != CP_OK)
        goto done;

    st = cp_buf_append(out, preamble, sizeof preamble);
    if (st == CP_OK)
        st = cp_buf_append(out, "DICM", 4);
    if (st == CP_OK)
        st = dcm_write_meta_group(SR_BASIC_TEXT_CLASS, strlen(SR_BASIC_TEXT_CLASS), sop_uid,
                                  strlen(sop_uid), &dcm_ts_explicit_le, out);
    if (st == CP_OK)
        st = put_header_modules(out, &f);
    if (st == CP_OK)
        st = put_document(out, &f);
    if (st == CP_OK && out->len > SR_FILE_MAX)
        st = CP_ERR_LIMIT;
    if (st != CP_OK)
        st = FAIL(err, st, "sr: encoding the report failed");

done:
    cp_free(row);
    return st;
}

cp_status sr_store_report(archive *a, index_db *idx, directory *dir, const order *o,
                          const report_version *v, char *sop_uid_out, cp_error *err)
{
    char series_uid[INDEX_UID_MAX + 1];
    char sop_uid[INDEX_UID_MAX + 1];
    cp_buf file = CP_BUF_INIT;
    archive_source_info info = { .source = "report", .institution_id = o->requesting_id };
    archive_ingest *in = NULL;
    archive_result res;
    cp_status st;

    sr_uid_new(series_uid);
    sr_uid_new(sop_uid);
    st = sr_build_report(idx, dir, o, v, series_uid, sop_uid, 0, &file, err);
    if (st != CP_OK)
        goto done;

    st = archive_ingest_begin(a, &info, &in);
    if (st != CP_OK) {
        st = FAIL(err, st, "sr: cannot start the ingest");
        goto done;
    }
    archive_ingest_write(in, file.data, file.len);
    st = archive_ingest_finish(in, &res);
    if (st == CP_OK && !archive_outcome_ok(res.outcome))
        st = FAIL(err, CP_ERR_IO, "sr: the archive refused the report: %s (%s)",
                  archive_reason_name(res.reason), res.detail);
    if (st == CP_OK)
        snprintf(sop_uid_out, INDEX_UID_MAX + 1, "%s", res.sop_instance_uid);

done:
    cp_buf_free(&file);
    return st;
}
