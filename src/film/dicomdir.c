/*
 * dicomdir.c - the DICOMDIR of the patient's download (dicomdir.h).
 *
 * The data set is written by hand rather than through a dcm_dataset: its
 * offsets are byte positions of its own items, so the writer has to know
 * each record's size before the records that point at it are out. Every
 * record is an item of defined length inside a Directory Record Sequence
 * of undefined length, in the order PATIENT, STUDY, then each SERIES
 * followed by its instances' records. A first pass sizes each series with
 * its records (the offset of the next series); the second writes, one
 * record at a time, so the memory used is one record's, whatever the
 * study's size.
 */
#include "film/dicomdir.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "dicom/dict_tags.h"
#include "dicom/ts.h"
#include "dicom/vr.h"
#include "dicom/writer.h"

#define UID_MAX 64
#define PREAMBLE 128
/* A Person Name's three component groups and their '=' separators. */
#define DD_PN_MAX (3 * INDEX_PN_GROUP_MAX + 2)
/* A DT value (PS3.5 6.2): YYYYMMDDHHMMSS.FFFFFF&ZZXX. */
#define DD_DT_MAX 26

/* Values kept of the study (text fields, by the PS3.5 limits of their VRs). */
typedef struct dd_study {
    char patient_name[DD_PN_MAX + 1];
    char patient_id[INDEX_LO_MAX + 1];
    char study_uid[UID_MAX + 1];
    char study_date[INDEX_DA_MAX + 1];
    char study_time[INDEX_TM_MAX + 1];
    char description[INDEX_LO_MAX + 1];
    char study_id[INDEX_SH_MAX + 1];
    char accession[INDEX_SH_MAX + 1];
} dd_study;

typedef struct dd_series {
    char uid[UID_MAX + 1];
    char modality[INDEX_CS_MAX + 1];
    int64_t number;
    uint32_t files;
    uint64_t offset;            /* of its record; set by the sizing pass */
} dd_series;

typedef enum { DD_IMAGE, DD_SR, DD_ENCAP } dd_kind;

/* What only documents have; NULL for images. */
typedef struct dd_doc {
    char content_date[INDEX_DA_MAX + 1];
    char content_time[INDEX_TM_MAX + 1];
    char completion[INDEX_CS_MAX + 1];
    char verification[INDEX_CS_MAX + 1];
    char verified_at[DD_DT_MAX + 1];
    char concept_value[INDEX_SH_MAX + 1];
    char concept_scheme[INDEX_SH_MAX + 1];
    char concept_meaning[INDEX_LO_MAX + 1];
    char title[INDEX_LO_MAX + 1];
    char mime[INDEX_LO_MAX + 1];
} dd_doc;

typedef struct dd_file {
    uint32_t series;
    uint32_t number;            /* 1-based within its series: IMGnnnnn */
    dd_kind kind;
    int64_t instance_number;
    char sop_class[UID_MAX + 1];
    char sop_uid[UID_MAX + 1];
    char ts[UID_MAX + 1];
    dd_doc *doc;
} dd_file;

struct film_dicomdir {
    dd_study study;
    dd_series *series;
    size_t series_count, series_cap;
    dd_file *files;
    size_t count, cap;
};

static cp_status fail(cp_error *err, cp_status st, const char *detail)
{
    return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "%s", detail);
}

/* Copies src (NULL: "") into dst of cap bytes; false when it does not fit. */
static bool copy(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;

    if (n >= cap)
        return false;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
    return true;
}

cp_status film_dicomdir_new(const film_dicomdir_study *s, film_dicomdir **out, cp_error *err)
{
    film_dicomdir *d;
    dd_study *k;

    *out = NULL;
    if (s == NULL || s->study_uid == NULL || s->study_uid[0] == '\0')
        return fail(err, CP_ERR_INVALID, "a DICOMDIR needs the Study Instance UID");
    d = cp_calloc(1, sizeof(*d));
    if (d == NULL)
        return fail(err, CP_ERR_NOMEM, "out of memory");
    k = &d->study;
    if (!copy(k->patient_name, sizeof(k->patient_name), s->patient_name) ||
        !copy(k->patient_id, sizeof(k->patient_id), s->patient_id) ||
        !copy(k->study_uid, sizeof(k->study_uid), s->study_uid) ||
        !copy(k->study_date, sizeof(k->study_date), s->study_date) ||
        !copy(k->study_time, sizeof(k->study_time), s->study_time) ||
        !copy(k->description, sizeof(k->description), s->study_description) ||
        !copy(k->study_id, sizeof(k->study_id), s->study_id) ||
        !copy(k->accession, sizeof(k->accession), s->accession)) {
        cp_free(d);
        return fail(err, CP_ERR_INVALID, "a study value is longer than its VR allows");
    }
    *out = d;
    return CP_OK;
}

void film_dicomdir_free(film_dicomdir *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->count; i++)
        cp_free(d->files[i].doc);
    cp_free(d->files);
    cp_free(d->series);
    cp_free(d);
}

size_t film_dicomdir_count(const film_dicomdir *d)
{
    return d->count;
}

static bool prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static dd_kind kind_of(const char *sop_class)
{
    if (prefix(sop_class, "1.2.840.10008.5.1.4.1.1.88."))
        return DD_SR;
    if (prefix(sop_class, "1.2.840.10008.5.1.4.1.1.104."))
        return DD_ENCAP;
    return DD_IMAGE;
}

static bool empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

static cp_status series_of(film_dicomdir *d, const film_dicomdir_file *f, uint32_t *idx,
                           cp_error *err)
{
    dd_series *s;
    cp_status st;

    for (size_t i = d->series_count; i-- > 0;) {
        if (strcmp(d->series[i].uid, f->series_uid) == 0) {
            *idx = (uint32_t)i;
            return CP_OK;
        }
    }
    st = cp_array_grow(&d->series, &d->series_cap, d->series_count, sizeof(*d->series), 8,
                       FILM_DICOMDIR_SERIES_MAX);
    if (st != CP_OK)
        return fail(err, st, "too many series for the DICOMDIR");
    s = &d->series[d->series_count];
    memset(s, 0, sizeof(*s));
    if (!copy(s->uid, sizeof(s->uid), f->series_uid) ||
        !copy(s->modality, sizeof(s->modality), f->modality))
        return fail(err, CP_ERR_INVALID, "a series value is too long");
    s->number = f->series_number;
    *idx = (uint32_t)d->series_count++;
    return CP_OK;
}

static const char *text_or_empty(const char *s)
{
    return s ? s : "";
}

static cp_status keep_doc(dd_file *r, const film_dicomdir_file *f, cp_error *err)
{
    dd_doc *doc = cp_calloc(1, sizeof(*doc));

    if (doc == NULL)
        return fail(err, CP_ERR_NOMEM, "out of memory");
    r->doc = doc;
    /* Values too long for their VR are cut: the keys only help a viewer find the file. */
    snprintf(doc->content_date, sizeof(doc->content_date), "%s",
             text_or_empty(f->content_date));
    snprintf(doc->content_time, sizeof(doc->content_time), "%s",
             text_or_empty(f->content_time));
    snprintf(doc->completion, sizeof(doc->completion), "%s", text_or_empty(f->completion_flag));
    snprintf(doc->verification, sizeof(doc->verification), "%s",
             text_or_empty(f->verification_flag));
    snprintf(doc->verified_at, sizeof(doc->verified_at), "%s",
             text_or_empty(f->verification_datetime));
    snprintf(doc->concept_value, sizeof(doc->concept_value), "%s",
             text_or_empty(f->concept_value));
    snprintf(doc->concept_scheme, sizeof(doc->concept_scheme), "%s",
             text_or_empty(f->concept_scheme));
    snprintf(doc->concept_meaning, sizeof(doc->concept_meaning), "%s",
             text_or_empty(f->concept_meaning));
    snprintf(doc->title, sizeof(doc->title), "%s", text_or_empty(f->document_title));
    snprintf(doc->mime, sizeof(doc->mime), "%s",
             empty(f->mime_type) ? "application/pdf" : f->mime_type);
    return CP_OK;
}

/* The file ID of a record: '/' separated for the ZIP, '\' for the DICOMDIR. */
static void file_id(const dd_file *r, char sep, char *out, size_t cap)
{
    snprintf(out, cap, "DICOM%cPAT00001%cSTU00001%cSER%05" PRIu32 "%cIMG%05" PRIu32, sep, sep,
             sep, r->series + 1, sep, r->number);
}

cp_status film_dicomdir_add(film_dicomdir *d, const film_dicomdir_file *f, char *path,
                            cp_error *err)
{
    uint32_t sidx = 0;
    dd_file *r;
    cp_status st;

    if (empty(f->series_uid) || empty(f->sop_class_uid) || empty(f->sop_uid) ||
        empty(f->transfer_syntax) || strlen(f->series_uid) > UID_MAX ||
        strlen(f->sop_class_uid) > UID_MAX || strlen(f->sop_uid) > UID_MAX ||
        strlen(f->transfer_syntax) > UID_MAX)
        return fail(err, CP_ERR_INVALID, "an instance needs its UIDs, of at most 64 bytes");
    if ((st = series_of(d, f, &sidx, err)) != CP_OK)
        return st;
    if (d->series[sidx].files >= FILM_DICOMDIR_FILES_MAX)
        return fail(err, CP_ERR_LIMIT, "too many instances in one series for the DICOMDIR");
    st = cp_array_grow(&d->files, &d->cap, d->count, sizeof(*d->files), 64, SIZE_MAX / 2);
    if (st != CP_OK)
        return fail(err, st, "out of memory");
    r = &d->files[d->count];
    memset(r, 0, sizeof(*r));
    r->series = sidx;
    r->number = ++d->series[sidx].files;
    r->kind = kind_of(f->sop_class_uid);
    r->instance_number = f->instance_number;
    copy(r->sop_class, sizeof(r->sop_class), f->sop_class_uid);
    copy(r->sop_uid, sizeof(r->sop_uid), f->sop_uid);
    copy(r->ts, sizeof(r->ts), f->transfer_syntax);
    if (r->kind != DD_IMAGE && (st = keep_doc(r, f, err)) != CP_OK) {
        d->series[sidx].files--;
        return st;
    }
    d->count++;
    file_id(r, '/', path, FILM_DICOMDIR_PATH_MAX);
    return CP_OK;
}

/* --- encoding ------------------------------------------------------------------ */

static cp_status put_header(cp_buf *b, uint32_t tag, dcm_vr vr, uint32_t len)
{
    uint8_t h[DCM_WRITE_HEADER_MAX];

    return cp_buf_append(b, h, dcm_write_header(h, tag, vr, len, true, false));
}

/* A text or UID element, padded to even length. */
static cp_status put_text(cp_buf *b, uint32_t tag, dcm_vr vr, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    cp_status st = put_header(b, tag, vr, (uint32_t)(n + (n & 1)));

    if (st == CP_OK)
        st = cp_buf_append(b, v, n);
    if (st == CP_OK && (n & 1))
        st = cp_buf_append_byte(b, dcm_vr_padding(vr));
    return st;
}

static cp_status put_ul(cp_buf *b, uint32_t tag, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    cp_status st = put_header(b, tag, DCM_VR_UL, 4);

    return st == CP_OK ? cp_buf_append(b, x, 4) : st;
}

static cp_status put_us(cp_buf *b, uint32_t tag, uint16_t v)
{
    uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
    cp_status st = put_header(b, tag, DCM_VR_US, 2);

    return st == CP_OK ? cp_buf_append(b, x, 2) : st;
}

static cp_status put_is(cp_buf *b, uint32_t tag, int64_t v)
{
    char text[24] = "";

    if (v != INDEX_NUMBER_NONE)
        snprintf(text, sizeof(text), "%" PRId64, v);
    return put_text(b, tag, DCM_VR_IS, text);
}

static bool ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* (0008,0005) when a record holds text beyond ASCII: the index keeps it as UTF-8. */
static cp_status put_charset(cp_buf *b, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (values[i] && !ascii(values[i]))
            return put_text(b, DCM_SpecificCharacterSet, DCM_VR_CS, "ISO_IR 192");
    return CP_OK;
}

/* The four elements every record starts with (PS3.3 F.3.2.2). */
static cp_status put_record_head(cp_buf *b, uint32_t next, uint32_t lower, const char *type)
{
    cp_status st = put_ul(b, DCM_OffsetOfTheNextDirectoryRecord, next);

    if (st == CP_OK)
        st = put_us(b, DCM_RecordInUseFlag, 0xFFFF);
    if (st == CP_OK)
        st = put_ul(b, DCM_OffsetOfReferencedLowerLevelDirectoryEntity, lower);
    if (st == CP_OK)
        st = put_text(b, DCM_DirectoryRecordType, DCM_VR_CS, type);
    return st;
}

/* Wraps the record's elements (from body_start on) in an item of defined length. */
static cp_status close_item(cp_buf *b)
{
    uint8_t h[DCM_WRITE_HEADER_MAX];
    size_t len = b->len;
    cp_status st;

    if (len > UINT32_MAX - 8)
        return CP_ERR_LIMIT;
    if ((st = cp_buf_reserve(b, 8)) != CP_OK)
        return st;
    memmove(b->data + 8, b->data, len);
    dcm_write_header(h, DCM_TAG(0xFFFE, 0xE000), DCM_VR_NONE, (uint32_t)len, true, false);
    memcpy(b->data, h, 8);
    b->len = len + 8;
    return CP_OK;
}

static cp_status patient_record(const dd_study *k, uint32_t lower, cp_buf *b)
{
    const char *text[] = { k->patient_name, k->patient_id };
    cp_status st;

    cp_buf_reset(b);
    st = put_record_head(b, 0, lower, "PATIENT");
    if (st == CP_OK)
        st = put_charset(b, text, 2);
    if (st == CP_OK)
        st = put_text(b, DCM_PatientName, DCM_VR_PN, k->patient_name);
    if (st == CP_OK)
        st = put_text(b, DCM_PatientID, DCM_VR_LO, k->patient_id);
    return st == CP_OK ? close_item(b) : st;
}

static cp_status study_record(const dd_study *k, uint32_t lower, cp_buf *b)
{
    const char *text[] = { k->description, k->accession, k->study_id };
    cp_status st;

    cp_buf_reset(b);
    st = put_record_head(b, 0, lower, "STUDY");
    if (st == CP_OK)
        st = put_charset(b, text, 3);
    if (st == CP_OK)
        st = put_text(b, DCM_StudyDate, DCM_VR_DA, k->study_date);
    if (st == CP_OK)
        st = put_text(b, DCM_StudyTime, DCM_VR_TM, k->study_time);
    if (st == CP_OK)
        st = put_text(b, DCM_AccessionNumber, DCM_VR_SH, k->accession);
    if (st == CP_OK)
        st = put_text(b, DCM_StudyDescription, DCM_VR_LO, k->description);
    if (st == CP_OK)
        st = put_text(b, DCM_StudyInstanceUID, DCM_VR_UI, k->study_uid);
    if (st == CP_OK)
        st = put_text(b, DCM_StudyID, DCM_VR_SH, k->study_id);
    return st == CP_OK ? close_item(b) : st;
}

static cp_status series_record(const dd_series *s, int64_t place, uint32_t next, uint32_t lower,
                               cp_buf *b)
{
    cp_status st;

    cp_buf_reset(b);
    st = put_record_head(b, next, lower, "SERIES");
    if (st == CP_OK)
        st = put_text(b, DCM_Modality, DCM_VR_CS, s->modality);
    if (st == CP_OK)
        st = put_text(b, DCM_SeriesInstanceUID, DCM_VR_UI, s->uid);
    /* Type 1 here though optional in the files: a series without one gets its place. */
    if (st == CP_OK)
        st = put_is(b, DCM_SeriesNumber, s->number != INDEX_NUMBER_NONE ? s->number : place);
    return st == CP_OK ? close_item(b) : st;
}

/* Concept Name Code Sequence with its one item, or empty. */
static cp_status put_concept(cp_buf *b, const dd_doc *doc)
{
    cp_buf item = CP_BUF_INIT;
    cp_status st;

    if (doc->concept_value[0] == '\0')
        return put_header(b, DCM_ConceptNameCodeSequence, DCM_VR_SQ, 0);
    st = put_text(&item, DCM_CodeValue, DCM_VR_SH, doc->concept_value);
    if (st == CP_OK)
        st = put_text(&item, DCM_CodingSchemeDesignator, DCM_VR_SH, doc->concept_scheme);
    if (st == CP_OK)
        st = put_text(&item, DCM_CodeMeaning, DCM_VR_LO, doc->concept_meaning);
    if (st == CP_OK)
        st = close_item(&item);
    if (st == CP_OK)
        st = put_header(b, DCM_ConceptNameCodeSequence, DCM_VR_SQ, (uint32_t)item.len);
    if (st == CP_OK)
        st = cp_buf_append(b, item.data, item.len);
    cp_buf_free(&item);
    return st;
}

static cp_status file_record(const dd_file *r, uint32_t next, cp_buf *b)
{
    static const char *const types[] = { "IMAGE", "SR DOCUMENT", "ENCAP DOC" };
    const dd_doc *doc = r->doc;
    char id[FILM_DICOMDIR_PATH_MAX];
    cp_status st;

    cp_buf_reset(b);
    file_id(r, '\\', id, sizeof(id));
    st = put_record_head(b, next, 0, types[r->kind]);
    if (st == CP_OK)
        st = put_text(b, DCM_ReferencedFileID, DCM_VR_CS, id);
    if (st == CP_OK)
        st = put_text(b, DCM_ReferencedSOPClassUIDInFile, DCM_VR_UI, r->sop_class);
    if (st == CP_OK)
        st = put_text(b, DCM_ReferencedSOPInstanceUIDInFile, DCM_VR_UI, r->sop_uid);
    if (st == CP_OK)
        st = put_text(b, DCM_ReferencedTransferSyntaxUIDInFile, DCM_VR_UI, r->ts);
    if (st == CP_OK && doc) {
        const char *text[] = { doc->concept_meaning, doc->title };

        st = put_charset(b, text, 2);
        if (st == CP_OK)
            st = put_text(b, DCM_ContentDate, DCM_VR_DA, doc->content_date);
        if (st == CP_OK)
            st = put_text(b, DCM_ContentTime, DCM_VR_TM, doc->content_time);
    }
    if (st == CP_OK)
        st = put_is(b, DCM_InstanceNumber, r->instance_number != INDEX_NUMBER_NONE
                                               ? r->instance_number : (int64_t)r->number);
    if (st == CP_OK && r->kind == DD_SR && doc->verified_at[0])
        st = put_text(b, DCM_VerificationDateTime, DCM_VR_DT, doc->verified_at);
    if (st == CP_OK && doc)
        st = put_concept(b, doc);
    if (st == CP_OK && r->kind == DD_SR) {
        st = put_text(b, DCM_CompletionFlag, DCM_VR_CS, doc->completion);
        if (st == CP_OK)
            st = put_text(b, DCM_VerificationFlag, DCM_VR_CS, doc->verification);
    }
    if (st == CP_OK && r->kind == DD_ENCAP) {
        st = put_text(b, DCM_DocumentTitle, DCM_VR_ST, doc->title);
        if (st == CP_OK)
            st = put_text(b, DCM_MIMETypeOfEncapsulatedDocument, DCM_VR_LO, doc->mime);
    }
    return st == CP_OK ? close_item(b) : st;
}

/* A random "2.25." UID (PS3.5 B.2) for the DICOMDIR itself. */
static void new_uid(char out[UID_MAX + 1])
{
    uint8_t n[16];
    char digits[48];
    size_t count = 0;
    bool zero = false;

    randombytes_buf(n, sizeof(n));
    while (!zero) {
        unsigned rem = 0;

        zero = true;
        for (size_t i = 0; i < sizeof(n); i++) {
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

static bool fileset_id_ok(const char *id)
{
    size_t n = strlen(id);

    return n <= 16 && strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ ") == n;
}

/*
 * Sizes every series with its instances' records, from the offset of the
 * first series record: each series' record offset is set.
 */
static cp_status size_series(film_dicomdir *d, uint64_t first, cp_buf *b)
{
    uint64_t at = first;
    cp_status st;

    for (size_t s = 0; s < d->series_count; s++) {
        d->series[s].offset = at;
        if ((st = series_record(&d->series[s], (int64_t)s + 1, 0, 0, b)) != CP_OK)
            return st;
        at += b->len;
        for (size_t i = 0; i < d->count; i++) {
            if (d->files[i].series != s)
                continue;
            if ((st = file_record(&d->files[i], 0, b)) != CP_OK)
                return st;
            at += b->len;
        }
    }
    return at > UINT32_MAX ? CP_ERR_LIMIT : CP_OK;
}

static cp_status put_sink(const dcm_sink *sink, const cp_buf *b, uint64_t *at)
{
    *at += b->len;
    return dcm_sink_write(sink, b->data, b->len);
}

/* The series' instances' records; the last one's next offset is 0. */
static cp_status write_files(const film_dicomdir *d, size_t s, const dcm_sink *sink,
                             cp_buf *b, uint64_t *at)
{
    size_t left = d->series[s].files;
    cp_status st = CP_OK;

    for (size_t i = 0; i < d->count && st == CP_OK; i++) {
        const dd_file *r = &d->files[i];

        if (r->series != s)
            continue;
        left--;
        /* The record's size does not depend on its offsets: measure, then write. */
        if ((st = file_record(r, 0, b)) != CP_OK)
            break;
        if (left > 0 && (st = file_record(r, (uint32_t)(*at + b->len), b)) != CP_OK)
            break;
        st = put_sink(sink, b, at);
    }
    return st;
}

cp_status film_dicomdir_write(const film_dicomdir *cd, const char *fileset_id,
                              const dcm_sink *sink, cp_error *err)
{
    film_dicomdir *d = (film_dicomdir *)cd;
    char uid[UID_MAX + 1];
    uint8_t preamble[PREAMBLE + 4];
    uint8_t delim[DCM_WRITE_HEADER_MAX];
    cp_buf meta = CP_BUF_INIT, head = CP_BUF_INIT, b = CP_BUF_INIT;
    uint64_t root, at, patient_len, study_len;
    cp_status st;

    if (fileset_id && !fileset_id_ok(fileset_id))
        return fail(err, CP_ERR_INVALID, "a File-set ID is 16 of A-Z, 0-9, '_' and space");
    if (d->count == 0)
        return fail(err, CP_ERR_INVALID, "a DICOMDIR of no files");
    new_uid(uid);
    memset(preamble, 0, PREAMBLE);
    memcpy(preamble + PREAMBLE, "DICM", 4);
    st = dcm_write_meta_group(FILM_DICOMDIR_SOP_CLASS, strlen(FILM_DICOMDIR_SOP_CLASS), uid,
                              strlen(uid), &dcm_ts_explicit_le, &meta);
    if (st != CP_OK)
        goto done;

    /*
     * The data set's head: File-set ID, the root's first and last record
     * (the one PATIENT), the consistency flag and the sequence's header.
     * Its size is fixed, so the patient record's offset is known before.
     */
    root = sizeof(preamble) + meta.len;
    for (int pass = 0; pass < 2 && st == CP_OK; pass++) {
        uint32_t first = (uint32_t)(root + head.len);

        cp_buf_reset(&head);
        st = put_text(&head, DCM_FileSetID, DCM_VR_CS, fileset_id ? fileset_id : "");
        if (st == CP_OK)
            st = put_ul(&head, DCM_OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity,
                        pass ? first : 0);
        if (st == CP_OK)
            st = put_ul(&head, DCM_OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity,
                        pass ? first : 0);
        if (st == CP_OK)
            st = put_us(&head, DCM_FileSetConsistencyFlag, 0);
        if (st == CP_OK)
            st = put_header(&head, DCM_DirectoryRecordSequence, DCM_VR_SQ, UINT32_MAX);
    }
    if (st != CP_OK)
        goto done;
    at = root + head.len;
    if ((st = patient_record(&d->study, 0, &b)) != CP_OK)
        goto done;
    patient_len = b.len;
    if ((st = study_record(&d->study, 0, &b)) != CP_OK)
        goto done;
    study_len = b.len;
    if ((st = size_series(d, at + patient_len + study_len, &b)) != CP_OK)
        goto done;

    if ((st = dcm_sink_write(sink, preamble, sizeof(preamble))) != CP_OK ||
        (st = dcm_sink_write(sink, meta.data, meta.len)) != CP_OK ||
        (st = dcm_sink_write(sink, head.data, head.len)) != CP_OK)
        goto done;
    if ((st = patient_record(&d->study, (uint32_t)(at + patient_len), &b)) != CP_OK ||
        (st = put_sink(sink, &b, &at)) != CP_OK)
        goto done;
    if ((st = study_record(&d->study, (uint32_t)(at + study_len), &b)) != CP_OK ||
        (st = put_sink(sink, &b, &at)) != CP_OK)
        goto done;
    for (size_t s = 0; s < d->series_count && st == CP_OK; s++) {
        uint32_t next = s + 1 < d->series_count ? (uint32_t)d->series[s + 1].offset : 0;

        if ((st = series_record(&d->series[s], (int64_t)s + 1, 0, 0, &b)) != CP_OK)
            break;
        st = series_record(&d->series[s], (int64_t)s + 1, next, (uint32_t)(at + b.len), &b);
        if (st == CP_OK)
            st = put_sink(sink, &b, &at);
        if (st == CP_OK)
            st = write_files(d, s, sink, &b, &at);
    }
    if (st != CP_OK)
        goto done;
    dcm_write_header(delim, DCM_TAG(0xFFFE, 0xE0DD), DCM_VR_NONE, 0, true, false);
    st = dcm_sink_write(sink, delim, 8);

done:
    cp_buf_free(&meta);
    cp_buf_free(&head);
    cp_buf_free(&b);
    if (st != CP_OK)
        return fail(err, st, "the DICOMDIR could not be written");
    return CP_OK;
}
