/*
 * archive.c - the ingest pipeline: Part 10 files and bare data sets in,
 * durable blobs and index rows out (PS3.10 7.1 for the files it writes,
 * PS3.4 B.2.3 for the C-STORE answers it suggests).
 *
 * An ingest lives in two phases. In the header phase the bytes are kept in
 * memory and parsed each time they have doubled, until the reader stops at
 * Pixel Data, the input ends or ARCHIVE_HEADER_MAX is reached. Then the index
 * record is extracted, the blob key chosen (it holds the UIDs), the blob
 * begun and the kept bytes written to it. In the body phase bytes go straight
 * to the blob, through the content hash and a small tracker of the Pixel
 * Data framing that tells a complete data set from a truncated one.
 *
 * The content hash (BLAKE2b-256) covers the data set bytes only, not the
 * preamble and File Meta Information, so that the same instance sent once
 * by C-STORE (meta built here) and once as a file (meta of its writer) is
 * recognised as the same.
 *
 * A blob is committed with STORE_NO_REPLACE under a key of its own: an
 * instance already indexed (or being stored by another ingest) gets a key
 * with a random suffix, so the blob an index row names is never overwritten
 * in place and a crash leaves either the old or the new pair whole.
 */
#include "archive/archive.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "dicom/dataset.h"
#include "dicom/dict_tags.h"
#include "dicom/io.h"
#include "dicom/uid.h"
#include "dicom/writer.h"

#define ARCHIVE_KEY_PREFIX "dicom"
#define ARCHIVE_KEY_SUFFIX ".dcm"

/* Media Storage Directory Storage (PS3.10 8.6): a DICOMDIR indexes a medium, it is no image. */
#define ARCHIVE_DICOMDIR_CLASS "1.2.840.10008.1.3.10"

typedef struct arc_source {
    char *name;
    int64_t institution_id;
    char *default_issuer;
    char *charset_default;
    char *charset_override;
    bool detect;
} arc_source;

struct archive {
    store *st;
    index_db *idx;
    archive_dup_policy policy;
    arc_source def;
    arc_source *sources;
    size_t source_count;
    char *fs_root;
    unsigned test_flags;
    pthread_mutex_t lock;           /* guards inflight */
    archive_ingest *inflight;       /* ingests that hold a SOP Instance UID */
};

typedef enum {
    ING_HEADER,
    ING_BODY,
    ING_FAILED,
} ing_phase;

/* Where the Pixel Data framing tracker is. */
typedef enum {
    TRK_OFF,        /* nothing to track (no pixel data, or deflated) */
    TRK_ELEMENT,    /* reading the Pixel Data element header */
    TRK_VALUE,      /* skipping a defined-length value */
    TRK_ITEM,       /* reading an item header of encapsulated pixel data */
    TRK_FRAGMENT,   /* skipping a fragment */
    TRK_DONE,
    TRK_BAD,
} trk_state;

typedef struct trk {
    trk_state state;
    bool explicit_vr;
    bool big_endian;
    uint8_t hdr[12];
    size_t have;
    size_t need;
    uint64_t skip;
} trk;

/* What the index says about a SOP Instance UID. */
typedef struct existing {
    bool found;
    char blob_key[INDEX_BLOB_KEY_MAX + 1];
    uint8_t hash[INDEX_HASH_SIZE];
    uint64_t size;
} existing;

struct archive_ingest {
    archive *a;
    const arc_source *src;
    char source[INDEX_SOURCE_MAX + 1];
    const dcm_transfer_syntax *cmd_ts;
    char cmd_class[INDEX_UID_MAX + 1];
    char cmd_instance[INDEX_UID_MAX + 1];
    int64_t received_us;
    int64_t institution_id;         /* the source's, or the one the caller named */

    ing_phase phase;
    cp_buf head;
    size_t next_try;
    size_t header_peak;
    uint64_t bytes_in;

    index_instance_record *rec;
    const dcm_transfer_syntax *ts;
    bool rewrap;
    const char *fixed_key;          /* repair: index the blob already under this key */

    store_writer *w;
    crypto_generichash_state *hash;     /* aligned inside hash_mem, as libsodium wants */
    unsigned char hash_mem[sizeof(crypto_generichash_state) + 64];
    uint64_t stored;
    char key[STORE_KEY_MAX + 1];
    trk track;

    archive_reason reason;
    char detail[CP_ERROR_DETAIL_MAX];

    bool registered;
    archive_ingest *next;
};

/* --- small helpers ------------------------------------------------------ */

static int64_t now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static void copy_str(char *out, size_t size, const char *s, size_t len)
{
    if (len >= size)
        len = size - 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

/* Copies at most size - 1 bytes of UTF-8, never cutting a character. */
static void copy_utf8(char *out, size_t size, const char *s, size_t len)
{
    if (len >= size) {
        len = size - 1;
        while (len > 0 && ((uint8_t)s[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(out, s, len);
    out[len] = '\0';
}

static __attribute__((format(printf, 3, 4)))
void ingest_fail(archive_ingest *in, archive_reason reason, const char *fmt, ...)
{
    va_list ap;

    if (in->phase == ING_FAILED)
        return;
    in->phase = ING_FAILED;
    in->reason = reason;
    va_start(ap, fmt);
    vsnprintf(in->detail, sizeof in->detail, fmt, ap);
    va_end(ap);
}

static void fail_from_error(archive_ingest *in, archive_reason reason, const char *what,
                            const cp_error *err)
{
    char text[CP_ERROR_DETAIL_MAX];

    cp_error_format(err, text, sizeof text);
    ingest_fail(in, reason, "%s: %s", what, text);
}

static bool uid_ok(const char *s, size_t len)
{
    if (len == 0 || len > INDEX_UID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((s[i] < '0' || s[i] > '9') && s[i] != '.')
            return false;
    return true;
}

static char *dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? cp_strdup(s) : NULL;
}

/* --- configuration ------------------------------------------------------ */

static void source_free(arc_source *s)
{
    cp_free(s->name);
    cp_free(s->default_issuer);
    cp_free(s->charset_default);
    cp_free(s->charset_override);
}

static cp_status source_copy(arc_source *out, const archive_source *in)
{
    memset(out, 0, sizeof *out);
    out->institution_id = in->institution_id;
    out->detect = in->charset.detect;
    out->name = dup_or_null(in->name);
    out->default_issuer = dup_or_null(in->default_issuer);
    out->charset_default = dup_or_null(in->charset.default_charset);
    out->charset_override = dup_or_null(in->charset.override_charset);
    if ((in->name != NULL && in->name[0] != '\0' && out->name == NULL) ||
        (in->default_issuer != NULL && in->default_issuer[0] != '\0' &&
         out->default_issuer == NULL) ||
        (in->charset.default_charset != NULL && out->charset_default == NULL) ||
        (in->charset.override_charset != NULL && out->charset_override == NULL)) {
        source_free(out);
        return CP_ERR_NOMEM;
    }
    return CP_OK;
}

/*
 * The settings for a sender: an entry named exactly so, or the longest entry
 * that is a folder holding it; the default otherwise.
 */
static const arc_source *source_find(const archive *a, const char *sender)
{
    const arc_source *best = &a->def;
    size_t best_len = 0;

    if (sender == NULL)
        return best;
    for (size_t i = 0; i < a->source_count; i++) {
        const arc_source *s = &a->sources[i];
        size_t n = s->name != NULL ? strlen(s->name) : 0;

        if (n == 0 || n <= best_len || strncmp(sender, s->name, n) != 0)
            continue;
        if (sender[n] == '\0' || sender[n] == '/' || s->name[n - 1] == '/') {
            best = s;
            best_len = n;
        }
    }
    return best;
}

static const arc_source *source_by_institution(const archive *a, int64_t institution)
{
    if (a->def.institution_id == institution)
        return &a->def;
    for (size_t i = 0; i < a->source_count; i++)
        if (a->sources[i].institution_id == institution)
            return &a->sources[i];
    return &a->def;
}

cp_status archive_create(store *st, index_db *idx, const archive_config *cfg, archive **out,
                         cp_error *err)
{
    archive *a;
    cp_status status;

    if (st == NULL || idx == NULL || cfg == NULL || cfg->duplicate_policy > ARCHIVE_DUP_REJECT)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "archive_create needs a store, an index and a valid config");
    if (sodium_init() < 0)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "sodium_init() failed");

    a = cp_calloc(1, sizeof *a);
    if (a == NULL)
        return CP_ERR_NOMEM;
    a->st = st;
    a->idx = idx;
    a->policy = cfg->duplicate_policy;
    a->test_flags = cfg->test_flags;
    pthread_mutex_init(&a->lock, NULL);

    status = source_copy(&a->def, &cfg->default_source);
    if (status != CP_OK)
        goto fail;
    if (cfg->source_count > 0) {
        a->sources = cp_calloc(cfg->source_count, sizeof *a->sources);
        if (a->sources == NULL) {
            status = CP_ERR_NOMEM;
            goto fail;
        }
    }
    for (size_t i = 0; i < cfg->source_count; i++) {
        status = source_copy(&a->sources[i], &cfg->sources[i]);
        if (status != CP_OK)
            goto fail;
        a->source_count++;
    }
    if (cfg->fs_root != NULL) {
        a->fs_root = cp_strdup(cfg->fs_root);
        if (a->fs_root == NULL) {
            status = CP_ERR_NOMEM;
            goto fail;
        }
    }
    *out = a;
    return CP_OK;

fail:
    archive_destroy(a);
    return status;
}

void archive_destroy(archive *a)
{
    if (a == NULL)
        return;
    source_free(&a->def);
    for (size_t i = 0; i < a->source_count; i++)
        source_free(&a->sources[i]);
    cp_free(a->sources);
    cp_free(a->fs_root);
    pthread_mutex_destroy(&a->lock);
    cp_free(a);
}

/* --- blob keys ------------------------------------------------------------ */

cp_status archive_blob_key(int64_t institution_id, const char *study_uid, const char *series_uid,
                           const char *sop_uid, char *out, size_t size)
{
    uint8_t h[crypto_generichash_BYTES_MIN];
    int n;

    if (!uid_ok(study_uid, strlen(study_uid)) || !uid_ok(series_uid, strlen(series_uid)) ||
        !uid_ok(sop_uid, strlen(sop_uid)) || institution_id < 0)
        return CP_ERR_INVALID;

    /* A hash of the study UID spreads studies over 65536 directories. */
    crypto_generichash(h, sizeof h, (const uint8_t *)study_uid, strlen(study_uid), NULL, 0);
    n = snprintf(out, size, ARCHIVE_KEY_PREFIX "/%lld/%02x/%02x/%s/%s/%s" ARCHIVE_KEY_SUFFIX,
                 (long long)institution_id, h[0], h[1], study_uid, series_uid, sop_uid);
    return n > 0 && (size_t)n < size ? CP_OK : CP_ERR_INVALID;
}

/* The same key with a random suffix before ".dcm", for a second blob of an instance. */
static void key_versioned(char *key, size_t size)
{
    size_t len = strlen(key) - (sizeof ARCHIVE_KEY_SUFFIX - 1);
    uint8_t r[8];
    char hex[2 * sizeof r + 1];

    randombytes_buf(r, sizeof r);
    sodium_bin2hex(hex, sizeof hex, r, sizeof r);
    if (len + 1 + strlen(hex) + sizeof ARCHIVE_KEY_SUFFIX <= size)
        snprintf(key + len, size - len, "_%s" ARCHIVE_KEY_SUFFIX, hex);
}

/* --- the index, by SOP Instance UID -------------------------------------- */

static cp_status existing_row(void *ctx, const index_row *row)
{
    existing *ex = ctx;

    ex->found = true;
    memcpy(ex->blob_key, row->rec.instance.blob_key, sizeof ex->blob_key);
    memcpy(ex->hash, row->rec.instance.hash, sizeof ex->hash);
    ex->size = row->rec.instance.size;
    return CP_ERR_STOPPED;
}

static cp_status lookup_sop(archive *a, const char *sop_uid, existing *ex, cp_error *err)
{
    index_term term = { "SOPInstanceUID", sop_uid };
    index_query_spec q = { .level = INDEX_LEVEL_INSTANCE, .terms = &term, .term_count = 1,
                           .limit = 1 };

    memset(ex, 0, sizeof *ex);
    return index_query(a->idx, &q, existing_row, ex, err);
}

/*
 * Registers the ingest as storing its SOP Instance UID; false when another
 * ingest of this archive already is, so that this one takes a key of its own.
 */
static bool inflight_register(archive_ingest *in)
{
    archive *a = in->a;
    bool alone = true;

    pthread_mutex_lock(&a->lock);
    for (archive_ingest *o = a->inflight; o != NULL; o = o->next)
        if (strcmp(o->rec->instance.sop_uid, in->rec->instance.sop_uid) == 0)
            alone = false;
    in->next = a->inflight;
    a->inflight = in;
    in->registered = true;
    pthread_mutex_unlock(&a->lock);
    return alone;
}

static void inflight_unregister(archive_ingest *in)
{
    archive *a = in->a;

    if (!in->registered)
        return;
    pthread_mutex_lock(&a->lock);
    for (archive_ingest **p = &a->inflight; *p != NULL; p = &(*p)->next) {
        if (*p == in) {
            *p = in->next;
            break;
        }
    }
    pthread_mutex_unlock(&a->lock);
    in->registered = false;
}

/* --- the index record ------------------------------------------------------ */

typedef struct rec_ctx {
    const dcm_dataset *ds;
    dcm_charset *cs;
    cp_buf buf;
    unsigned flags;
    bool non_ascii;
} rec_ctx;

/* The first value of a text element decoded to UTF-8 in ctx->buf; false when absent. */
static bool text_first(rec_ctx *c, uint32_t tag, const char **s, size_t *len)
{
    const dcm_element *el = dcm_dataset_get(c->ds, tag);
    const char *p;
    size_t n;

    if (el == NULL || el->value == NULL || el->value_length == 0)
        return false;
    cp_buf_reset(&c->buf);
    for (uint64_t i = 0; i < el->value_length; i++)
        if (el->value[i] >= 0x80)
            c->non_ascii = true;
    if (dcm_charset_decode(c->cs, el->vr, el->value, (size_t)el->value_length, &c->buf,
                           &c->flags) != CP_OK)
        return false;

    /* Decoded text splits safely on '\': a GBK trail byte is no longer alone. */
    p = (const char *)c->buf.data;
    n = c->buf.len;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\') {
            n = i;
            break;
        }
    }
    while (n > 0 && (p[0] == ' ' || p[0] == '\0')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\0'))
        n--;
    *s = p;
    *len = n;
    return n > 0;
}

static void rec_text(rec_ctx *c, uint32_t tag, char *out, size_t size)
{
    const char *s;
    size_t len;

    out[0] = '\0';
    if (text_first(c, tag, &s, &len))
        copy_utf8(out, size, s, len);
}

static void rec_pn(rec_ctx *c, uint32_t tag, index_person_name *pn)
{
    const char *s;
    size_t len;
    dcm_person_name parts;

    memset(pn, 0, sizeof *pn);
    if (!text_first(c, tag, &s, &len))
        return;
    dcm_person_name_split(s, len, &parts);
    copy_utf8(pn->alphabetic, sizeof pn->alphabetic, parts.alphabetic, parts.alphabetic_len);
    copy_utf8(pn->ideographic, sizeof pn->ideographic, parts.ideographic,
              parts.ideographic_len);
    copy_utf8(pn->phonetic, sizeof pn->phonetic, parts.phonetic, parts.phonetic_len);
}

/* Keeps the digits of a DA or TM value: "2020.01.31" (ACR-NEMA) becomes "20200131". */
static void rec_date(rec_ctx *c, uint32_t tag, char *out, size_t size, bool time)
{
    const char *s;
    size_t len, n = 0;

    out[0] = '\0';
    if (!text_first(c, tag, &s, &len))
        return;
    for (size_t i = 0; i < len && n + 1 < size; i++) {
        if ((s[i] >= '0' && s[i] <= '9') || (time && s[i] == '.' && n == 6))
            out[n++] = s[i];
        else if (s[i] != '.' && s[i] != ':' && s[i] != '-')
            break;
    }
    out[n] = '\0';
    if (!time && n != 8)
        out[0] = '\0';
}

static int64_t rec_is(rec_ctx *c, uint32_t tag)
{
    const char *s;
    size_t len;
    char tmp[24];
    char *end;
    long long v;

    if (!text_first(c, tag, &s, &len) || len >= sizeof tmp)
        return INDEX_NUMBER_NONE;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    errno = 0;
    v = strtoll(tmp, &end, 10);
    if (errno != 0 || end == tmp || *end != '\0')
        return INDEX_NUMBER_NONE;
    return v;
}

static uint32_t rec_us(const dcm_dataset *ds, uint32_t tag)
{
    const dcm_element *el = dcm_dataset_get(ds, tag);
    uint64_t v;

    if (el == NULL || dcm_element_get_uint(ds, el, 0, &v) != CP_OK || v > UINT32_MAX)
        return 0;
    return (uint32_t)v;
}

/* A UID of the data set, checked; false when absent or not a UID. */
static bool rec_uid(const dcm_dataset *ds, uint32_t tag, char *out)
{
    const dcm_element *el = dcm_dataset_get(ds, tag);
    const char *s;
    size_t len;

    out[0] = '\0';
    if (el == NULL || dcm_element_get_string(el, 0, &s, &len) != CP_OK)
        return false;
    while (len > 0 && (s[len - 1] == '\0' || s[len - 1] == ' '))
        len--;
    if (!uid_ok(s, len))
        return false;
    copy_str(out, INDEX_UID_MAX + 1, s, len);
    return true;
}

static void rec_fill_text(rec_ctx *c, index_instance_record *r)
{
    const uint8_t *csv;
    size_t cslen;

    rec_text(c, DCM_PatientID, r->patient.id, sizeof r->patient.id);
    rec_text(c, DCM_IssuerOfPatientID, r->patient.issuer, sizeof r->patient.issuer);
    rec_pn(c, DCM_PatientName, &r->patient.name);
    rec_date(c, DCM_PatientBirthDate, r->patient.birth_date, sizeof r->patient.birth_date,
             false);
    rec_text(c, DCM_PatientSex, r->patient.sex, sizeof r->patient.sex);

    rec_date(c, DCM_StudyDate, r->study.date, sizeof r->study.date, false);
    rec_date(c, DCM_StudyTime, r->study.time, sizeof r->study.time, true);
    rec_text(c, DCM_AccessionNumber, r->study.accession, sizeof r->study.accession);
    rec_pn(c, DCM_ReferringPhysicianName, &r->study.referring);
    rec_text(c, DCM_StudyDescription, r->study.description, sizeof r->study.description);
    rec_text(c, DCM_StudyID, r->study.id, sizeof r->study.id);

    rec_text(c, DCM_Modality, r->series.modality, sizeof r->series.modality);
    r->series.number = rec_is(c, DCM_SeriesNumber);
    rec_text(c, DCM_SeriesDescription, r->series.description, sizeof r->series.description);
    rec_text(c, DCM_BodyPartExamined, r->series.body_part, sizeof r->series.body_part);
    rec_date(c, DCM_SeriesDate, r->series.date, sizeof r->series.date, false);
    rec_date(c, DCM_SeriesTime, r->series.time, sizeof r->series.time, true);

    r->instance.number = rec_is(c, DCM_InstanceNumber);
    {
        int64_t frames = rec_is(c, DCM_NumberOfFrames);

        r->instance.frames = frames > 0 && frames <= UINT32_MAX ? (uint32_t)frames : 0;
    }
    r->instance.rows = rec_us(c->ds, DCM_Rows);
    r->instance.columns = rec_us(c->ds, DCM_Columns);

    dcm_dataset_charset(c->ds, &csv, &cslen);
    if (c->non_ascii)
        r->instance.charset_flags |= INDEX_CHARSET_NON_ASCII;
    if (c->flags & DCM_CHARSET_REPLACED)
        r->instance.charset_flags |= INDEX_CHARSET_LOSSY;
    if (csv != NULL && memmem(csv, cslen, "ISO 2022", 8) != NULL)
        r->instance.charset_flags |= INDEX_CHARSET_ISO2022;
}

/* Fills in->rec from the header read; false (with the ingest failed) when it cannot be stored. */
static bool rec_build(archive_ingest *in, const dcm_file *f)
{
    index_instance_record *r = in->rec;
    const arc_source *src = in->src;
    dcm_charset_policy pol = { src->charset_default, src->charset_override, src->detect };
    rec_ctx c = { .ds = f->dataset };
    const uint8_t *csv;
    size_t cslen;
    cp_error err;
    const dcm_uid_entry *cls;
    bool ok = false;

    cp_error_clear(&err);
    cp_buf_init(&c.buf);
    memset(r, 0, sizeof *r);

    if (!rec_uid(f->dataset, DCM_SOPInstanceUID, r->instance.sop_uid) &&
        !(f->meta != NULL && rec_uid(f->meta, DCM_MediaStorageSOPInstanceUID,
                                     r->instance.sop_uid)))
        copy_str(r->instance.sop_uid, sizeof r->instance.sop_uid, in->cmd_instance,
                 strlen(in->cmd_instance));
    if (!rec_uid(f->dataset, DCM_SOPClassUID, r->instance.sop_class_uid) &&
        !(f->meta != NULL && rec_uid(f->meta, DCM_MediaStorageSOPClassUID,
                                     r->instance.sop_class_uid)))
        copy_str(r->instance.sop_class_uid, sizeof r->instance.sop_class_uid, in->cmd_class,
                 strlen(in->cmd_class));
    rec_uid(f->dataset, DCM_StudyInstanceUID, r->study.uid);
    rec_uid(f->dataset, DCM_SeriesInstanceUID, r->series.uid);

    /* Private and future classes are not in the registry; only known non-storage ones go. */
    cls = dcm_uid_lookup(r->instance.sop_class_uid, strlen(r->instance.sop_class_uid));
    if (cls != NULL && (!dcm_uid_is_storage_sop_class(cls->uid, strlen(cls->uid)) ||
                        strcmp(cls->uid, ARCHIVE_DICOMDIR_CLASS) == 0)) {
        ingest_fail(in, ARCHIVE_REASON_NOT_STORAGE, "SOP class %s is not a storage class",
                    r->instance.sop_class_uid);
        goto done;
    }

    if (r->instance.sop_uid[0] == '\0' || r->instance.sop_class_uid[0] == '\0' ||
        r->study.uid[0] == '\0' || r->series.uid[0] == '\0') {
        ingest_fail(in, ARCHIVE_REASON_MISSING_UID, "%s missing or not a UID",
                    r->instance.sop_uid[0] == '\0' ? "SOPInstanceUID"
                    : r->instance.sop_class_uid[0] == '\0' ? "SOPClassUID"
                    : r->study.uid[0] == '\0' ? "StudyInstanceUID" : "SeriesInstanceUID");
        goto done;
    }
    if ((in->cmd_instance[0] != '\0' && strcmp(in->cmd_instance, r->instance.sop_uid) != 0) ||
        (in->cmd_class[0] != '\0' && strcmp(in->cmd_class, r->instance.sop_class_uid) != 0)) {
        ingest_fail(in, ARCHIVE_REASON_UID_MISMATCH,
                    "data set SOP Instance %s / Class %s differ from the command's",
                    r->instance.sop_uid, r->instance.sop_class_uid);
        goto done;
    }


    dcm_dataset_charset(f->dataset, &csv, &cslen);
    if (dcm_charset_create(csv, cslen, &pol, &c.cs, &err) != CP_OK) {
        fail_from_error(in, ARCHIVE_REASON_RESOURCES, "character set", &err);
        goto done;
    }
    rec_fill_text(&c, r);

    if (r->patient.issuer[0] == '\0') {
        if (src->default_issuer != NULL)
            copy_utf8(r->patient.issuer, sizeof r->patient.issuer, src->default_issuer,
                      strlen(src->default_issuer));
        else if (in->institution_id != 0)
            snprintf(r->patient.issuer, sizeof r->patient.issuer, "INSTITUTION-%lld",
                     (long long)in->institution_id);
        else
            copy_utf8(r->patient.issuer, sizeof r->patient.issuer, in->source,
                      strlen(in->source));
    }
    copy_str(r->instance.transfer_syntax, sizeof r->instance.transfer_syntax, in->ts->uid,
             strlen(in->ts->uid));
    copy_utf8(r->instance.source, sizeof r->instance.source, in->source, strlen(in->source));
    r->instance.institution_id = in->institution_id;
    r->instance.received_us = in->received_us != 0 ? in->received_us : now_us();
    ok = true;

done:
    dcm_charset_destroy(c.cs);
    cp_buf_free(&c.buf);
    return ok;
}

/* --- the Pixel Data tracker -------------------------------------------------- */

static uint32_t rd16(const uint8_t *p, bool be)
{
    return be ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t rd32(const uint8_t *p, bool be)
{
    if (be)
        return rd16(p, true) << 16 | rd16(p + 2, true);
    return rd16(p + 2, false) << 16 | rd16(p, false);
}

static void trk_header_done(trk *t)
{
    uint32_t tag = rd16(t->hdr, t->big_endian) << 16 | rd16(t->hdr + 2, t->big_endian);
    uint32_t len = rd32(t->hdr + (t->state == TRK_ELEMENT && t->explicit_vr ? 8 : 4),
                        t->big_endian);

    t->have = 0;
    if (t->state == TRK_ELEMENT) {
        if (tag != DCM_TAG_PIXEL_DATA) {
            t->state = TRK_DONE;
        } else if (len == DCM_UNDEFINED_LENGTH) {
            t->state = TRK_ITEM;
            t->need = 8;
        } else {
            t->state = len == 0 ? TRK_DONE : TRK_VALUE;
            t->skip = len;
        }
        return;
    }
    if (tag == DCM_TAG_SEQUENCE_DELIMITATION) {
        t->state = TRK_DONE;
    } else if (tag == DCM_TAG_ITEM && len != DCM_UNDEFINED_LENGTH) {
        t->state = len == 0 ? TRK_ITEM : TRK_FRAGMENT;
        t->skip = len;
    } else {
        t->state = TRK_BAD;
    }
}

static void trk_feed(trk *t, const uint8_t *p, size_t len)
{
    while (len > 0) {
        if (t->state == TRK_ELEMENT || t->state == TRK_ITEM) {
            size_t n = t->need - t->have < len ? t->need - t->have : len;

            memcpy(t->hdr + t->have, p, n);
            t->have += n;
            p += n;
            len -= n;
            if (t->have == t->need)
                trk_header_done(t);
        } else if (t->state == TRK_VALUE || t->state == TRK_FRAGMENT) {
            size_t n = t->skip < len ? (size_t)t->skip : len;

            t->skip -= n;
            p += n;
            len -= n;
            if (t->skip == 0) {
                t->state = t->state == TRK_VALUE ? TRK_DONE : TRK_ITEM;
                t->need = 8;
            }
        } else {
            return;
        }
    }
}

/* --- the header phase --------------------------------------------------------- */

/* Whether bytes without "DICM" at 128 may be a bare data set (or a meta group alone). */
static bool looks_like_dataset(const uint8_t *b, size_t n)
{
    uint32_t le, be;

    if (n < 8)
        return false;
    le = rd16(b, false);
    be = rd16(b, true);
    return le == 0x0000 || le == 0x0002 || le == 0x0004 || le == 0x0008 || be == 0x0008;
}

/* Bits of body_write's `what`: the data set bytes are hashed, from Pixel Data on tracked. */
enum {
    BW_HASH = 1u << 0,
    BW_TRACK = 1u << 1,
};

static cp_status body_write(archive_ingest *in, const void *data, size_t len, unsigned what)
{
    cp_error err;

    cp_error_clear(&err);
    if (what & BW_HASH)
        crypto_generichash_update(in->hash, data, len);
    if (what & BW_TRACK)
        trk_feed(&in->track, data, len);
    in->stored += len;
    if (in->w == NULL || len == 0)
        return CP_OK;
    if (store_write(in->w, data, len, &err) != CP_OK) {
        fail_from_error(in, ARCHIVE_REASON_RESOURCES, "store_write", &err);
        return CP_ERR_IO;
    }
    return CP_OK;
}

/* Chooses the key and begins the blob. */
static bool blob_begin(archive_ingest *in)
{
    archive *a = in->a;
    index_instance *inst = &in->rec->instance;
    existing ex;
    cp_error err;
    bool alone;

    cp_error_clear(&err);
    if (in->fixed_key != NULL) {
        copy_str(in->key, sizeof in->key, in->fixed_key, strlen(in->fixed_key));
        copy_str(inst->blob_key, sizeof inst->blob_key, in->key, strlen(in->key));
        return true;
    }
    if (archive_blob_key(inst->institution_id, in->rec->study.uid, in->rec->series.uid,
                         inst->sop_uid, in->key, sizeof in->key) != CP_OK) {
        ingest_fail(in, ARCHIVE_REASON_MISSING_UID, "no blob key for these UIDs");
        return false;
    }
    if (lookup_sop(a, inst->sop_uid, &ex, &err) != CP_OK) {
        fail_from_error(in, ARCHIVE_REASON_RESOURCES, "index lookup", &err);
        return false;
    }
    alone = inflight_register(in);
    if (ex.found || !alone)
        key_versioned(in->key, sizeof in->key);
    copy_str(inst->blob_key, sizeof inst->blob_key, in->key, strlen(in->key));

    /* Checked now, so that a record the index would refuse costs no blob. */
    if (index_record_check(in->rec, &err) != CP_OK) {
        fail_from_error(in, ARCHIVE_REASON_BAD_VALUE, "index record", &err);
        return false;
    }
    if (store_begin(a->st, in->key, STORE_NO_REPLACE, &in->w, &err) != CP_OK) {
        fail_from_error(in, ARCHIVE_REASON_RESOURCES, "store_begin", &err);
        return false;
    }
    return true;
}

/* Writes what comes before the data set: the file's own, or a preamble and meta built here. */
static bool write_prefix(archive_ingest *in, uint64_t dataset_offset)
{
    cp_buf meta = CP_BUF_INIT;
    static const uint8_t preamble[128];
    bool ok = false;

    if (!in->rewrap)
        return body_write(in, in->head.data, (size_t)dataset_offset, 0) == CP_OK;

    if (dcm_write_meta_group(in->rec->instance.sop_class_uid,
                             strlen(in->rec->instance.sop_class_uid),
                             in->rec->instance.sop_uid, strlen(in->rec->instance.sop_uid),
                             in->ts, &meta) != CP_OK) {
        ingest_fail(in, ARCHIVE_REASON_RESOURCES, "cannot build the meta group");
        goto done;
    }
    if (body_write(in, preamble, sizeof preamble, 0) != CP_OK ||
        body_write(in, "DICM", 4, 0) != CP_OK ||
        body_write(in, meta.data, meta.len, 0) != CP_OK)
        goto done;
    ok = true;

done:
    cp_buf_free(&meta);
    return ok;
}

/*
 * The header is read: build the record, begin the blob, write the kept
 * bytes, and start tracking Pixel Data at pixel_offset (0: do not track).
 */
static void header_complete(archive_ingest *in, const dcm_file *f, uint64_t pixel_offset)
{
    uint64_t ds_off = f->dataset_offset;

    in->ts = f->transfer_syntax;
    if (!rec_build(in, f) || !blob_begin(in) || !write_prefix(in, ds_off))
        return;

    if (pixel_offset > ds_off && !in->ts->deflated) {
        in->track.state = TRK_ELEMENT;
        in->track.explicit_vr = in->ts->explicit_vr;
        in->track.big_endian = in->ts->big_endian;
        in->track.need = in->ts->explicit_vr ? 12 : 8;
        if (body_write(in, in->head.data + ds_off, (size_t)(pixel_offset - ds_off),
                       BW_HASH) != CP_OK)
            return;
        ds_off = pixel_offset;
    }
    if (body_write(in, in->head.data + ds_off, in->head.len - (size_t)ds_off,
                   BW_HASH | BW_TRACK) != CP_OK)
        return;
    cp_buf_free(&in->head);
    in->phase = ING_BODY;
}

/*
 * Tries to read the header from the bytes kept. final: no more bytes will
 * be kept (the input ended, or ARCHIVE_HEADER_MAX was reached: limit).
 */
static void header_try(archive_ingest *in, bool final, bool limit)
{
    const uint8_t *b = in->head.data;
    size_t n = in->head.len;
    dcm_read_options opts = { .stop_before = DCM_TAG_PIXEL_DATA };
    dcm_source *src = NULL;
    dcm_file *f = NULL;
    cp_error err;
    cp_status st;
    bool part10;

    cp_error_clear(&err);
    if (!final && n < 132 && in->cmd_ts == NULL)
        return;
    part10 = in->cmd_ts == NULL && n >= 132 && memcmp(b + 128, "DICM", 4) == 0;
    if (in->cmd_ts == NULL && !part10 && !looks_like_dataset(b, n)) {
        ingest_fail(in, ARCHIVE_REASON_NOT_DICOM, "no DICM prefix and no data set");
        return;
    }
    in->rewrap = !part10;
    if (in->cmd_ts != NULL) {
        opts.no_meta = true;
        opts.assume_ts = in->cmd_ts;
    }

    src = dcm_source_from_memory(b, n);
    if (src == NULL) {
        ingest_fail(in, ARCHIVE_REASON_RESOURCES, "out of memory");
        return;
    }
    st = dcm_file_read(src, &opts, &f, &err);
    if (st == CP_OK && (f->flags & DCM_FILE_STOPPED)) {
        header_complete(in, f, dcm_source_offset(src));
    } else if (st == CP_OK || (st == CP_ERR_TRUNCATED && limit && f != NULL)) {
        /* A data set read whole only counts once the input has ended. */
        if (final)
            header_complete(in, f, 0);
    } else if (st == CP_ERR_TRUNCATED && !final) {
        in->next_try = n * 2 < ARCHIVE_HEADER_MAX ? n * 2 : ARCHIVE_HEADER_MAX;
    } else if (st == CP_ERR_NOMEM) {
        ingest_fail(in, ARCHIVE_REASON_RESOURCES, "out of memory");
    } else {
        fail_from_error(in, part10 || in->cmd_ts != NULL ? ARCHIVE_REASON_MALFORMED
                                                         : ARCHIVE_REASON_NOT_DICOM,
                        "data set", &err);
    }
    if (in->phase == ING_HEADER && st != CP_ERR_TRUNCATED && !final)
        in->next_try = n * 2 < ARCHIVE_HEADER_MAX ? n * 2 : ARCHIVE_HEADER_MAX;
    dcm_file_destroy(f);
    dcm_source_destroy(src);
}

/* --- ingest ------------------------------------------------------------------ */

cp_status archive_ingest_begin(archive *a, const archive_source_info *info,
                               archive_ingest **out)
{
    archive_ingest *in = cp_calloc(1, sizeof *in);
    const char *sender = info != NULL && info->source != NULL ? info->source : "";

    if (in == NULL)
        return CP_ERR_NOMEM;
    in->rec = cp_malloc(sizeof *in->rec);
    if (in->rec == NULL) {
        cp_free(in);
        return CP_ERR_NOMEM;
    }
    memset(in->rec, 0, sizeof *in->rec);
    in->a = a;
    in->src = source_find(a, sender);
    copy_utf8(in->source, sizeof in->source, sender, strlen(sender));
    if (in->source[0] == '\0' && in->src->name != NULL)
        copy_utf8(in->source, sizeof in->source, in->src->name, strlen(in->src->name));
    in->institution_id = info != NULL && info->institution_id > 0 ? info->institution_id
                                                                  : in->src->institution_id;
    if (info != NULL) {
        in->cmd_ts = info->transfer_syntax;
        in->received_us = info->received_us;
        if (info->sop_class_uid != NULL)
            copy_str(in->cmd_class, sizeof in->cmd_class, info->sop_class_uid,
                     strlen(info->sop_class_uid));
        if (info->sop_instance_uid != NULL)
            copy_str(in->cmd_instance, sizeof in->cmd_instance, info->sop_instance_uid,
                     strlen(info->sop_instance_uid));
    }
    in->phase = ING_HEADER;
    in->next_try = ARCHIVE_HEADER_FIRST_TRY;
    cp_buf_init(&in->head);
    in->hash = (crypto_generichash_state *)(void *)
               (in->hash_mem + (64 - (uintptr_t)in->hash_mem % 64));
    crypto_generichash_init(in->hash, NULL, 0, INDEX_HASH_SIZE);
    *out = in;
    return CP_OK;
}

cp_status archive_ingest_write(archive_ingest *in, const void *data, size_t len)
{
    const uint8_t *p = data;

    in->bytes_in += len;
    while (len > 0 && in->phase == ING_HEADER) {
        /* Never more than the next try needs, so the header kept stays near its size. */
        size_t want = in->next_try > in->head.len ? in->next_try : ARCHIVE_HEADER_MAX;
        size_t room = want - in->head.len;
        size_t n = len < room ? len : room;

        if (cp_buf_append(&in->head, p, n) != CP_OK) {
            ingest_fail(in, ARCHIVE_REASON_RESOURCES, "out of memory");
            break;
        }
        if (in->head.len > in->header_peak)
            in->header_peak = in->head.len;
        p += n;
        len -= n;
        if (in->head.len == ARCHIVE_HEADER_MAX) {
            header_try(in, true, true);
            if (in->phase == ING_HEADER)
                ingest_fail(in, ARCHIVE_REASON_MALFORMED, "the header could not be read");
        }
        else if (in->head.len >= in->next_try)
            header_try(in, false, false);
    }
    if (len > 0 && in->phase == ING_BODY)
        body_write(in, p, len, BW_HASH | BW_TRACK);
    return in->phase == ING_FAILED ? CP_ERR_INVALID : CP_OK;
}

static void ingest_free(archive_ingest *in)
{
    inflight_unregister(in);
    store_abort(in->w);
    cp_buf_free(&in->head);
    cp_free(in->rec);
    cp_free(in);
}

void archive_ingest_abort(archive_ingest *in)
{
    if (in != NULL)
        ingest_free(in);
}

static void result_fill(const archive_ingest *in, archive_result *out)
{
    const index_instance_record *r = in->rec;

    out->bytes_in = in->bytes_in;
    out->stored_bytes = in->stored;
    out->header_peak = in->header_peak;
    memcpy(out->sop_class_uid, r->instance.sop_class_uid, sizeof out->sop_class_uid);
    memcpy(out->sop_instance_uid, r->instance.sop_uid, sizeof out->sop_instance_uid);
    memcpy(out->study_uid, r->study.uid, sizeof out->study_uid);
    memcpy(out->series_uid, r->series.uid, sizeof out->series_uid);
    copy_str(out->blob_key, sizeof out->blob_key, in->key, strlen(in->key));
}

/* Removes a blob this ingest committed but that is not to be kept; repair catches a failure. */
static void remove_quietly(archive *a, const char *key)
{
    store_remove(a->st, key, NULL);
}

/* What the index said, against the policy; the blob under in->key is committed. */
static void settle(archive_ingest *in, const index_put_result *pr, archive_result *out)
{
    archive *a = in->a;

    out->change_seq = pr->change_seq;
    switch (pr->outcome) {
    case INDEX_STORED_NEW:
        out->outcome = ARCHIVE_STORED;
        return;
    case INDEX_REPLACED:
        out->outcome = ARCHIVE_REPLACED;
        if (pr->old_blob_key[0] != '\0' && strcmp(pr->old_blob_key, in->key) != 0)
            remove_quietly(a, pr->old_blob_key);
        return;
    case INDEX_SAME:
    case INDEX_DIFFERENT:
        /* Another ingest indexed the instance while this one was storing. */
        if (strcmp(pr->old_blob_key, in->key) != 0) {
            remove_quietly(a, in->key);
            copy_str(out->blob_key, sizeof out->blob_key, pr->old_blob_key,
                     strlen(pr->old_blob_key));
        }
        if (pr->outcome == INDEX_SAME) {
            out->outcome = ARCHIVE_DUPLICATE;
        } else if (a->policy == ARCHIVE_DUP_REJECT) {
            out->outcome = ARCHIVE_REJECTED;
            out->reason = ARCHIVE_REASON_DUPLICATE;
            snprintf(out->detail, sizeof out->detail, "stored with a different data set");
        } else {
            out->outcome = ARCHIVE_KEPT;
            snprintf(out->detail, sizeof out->detail, "stored with a different data set");
        }
        return;
    }
}

/* Before committing: is the instance there already, and what does the policy say? */
static bool decide(archive_ingest *in, archive_result *out, unsigned *put_flags)
{
    archive *a = in->a;
    existing ex;
    cp_error err;

    cp_error_clear(&err);
    *put_flags = a->policy == ARCHIVE_DUP_OVERWRITE ? INDEX_PUT_REPLACE : 0;
    if (in->fixed_key != NULL)
        return true;
    if (lookup_sop(a, in->rec->instance.sop_uid, &ex, &err) != CP_OK) {
        fail_from_error(in, ARCHIVE_REASON_RESOURCES, "index lookup", &err);
        return false;
    }
    if (!ex.found)
        return true;

    copy_str(out->blob_key, sizeof out->blob_key, ex.blob_key, strlen(ex.blob_key));
    if (memcmp(ex.hash, in->rec->instance.hash, INDEX_HASH_SIZE) == 0) {
        out->outcome = ARCHIVE_DUPLICATE;
        return false;
    }
    if (a->policy == ARCHIVE_DUP_OVERWRITE) {
        copy_str(out->blob_key, sizeof out->blob_key, in->key, strlen(in->key));
        return true;
    }
    snprintf(out->detail, sizeof out->detail, "stored with a different data set");
    if (a->policy == ARCHIVE_DUP_KEEP) {
        out->outcome = ARCHIVE_KEPT;
    } else {
        out->outcome = ARCHIVE_REJECTED;
        out->reason = ARCHIVE_REASON_DUPLICATE;
    }
    return false;
}

cp_status archive_ingest_finish(archive_ingest *in, archive_result *out)
{
    archive *a = in->a;
    index_put_result pr;
    cp_error err;
    unsigned flags;
    cp_status status = CP_OK;

    cp_error_clear(&err);
    memset(out, 0, sizeof *out);
    if (in->phase == ING_HEADER)
        header_try(in, true, false);
    if (in->phase == ING_HEADER)
        ingest_fail(in, ARCHIVE_REASON_MALFORMED, "the header could not be read");
    if (in->phase == ING_BODY && in->track.state != TRK_OFF && in->track.state != TRK_DONE)
        ingest_fail(in, ARCHIVE_REASON_MALFORMED, "%s",
                    in->track.state == TRK_BAD ? "malformed encapsulated Pixel Data"
                                               : "the data set ends inside Pixel Data");
    result_fill(in, out);
    if (in->phase == ING_FAILED)
        goto rejected;

    crypto_generichash_final(in->hash, in->rec->instance.hash, INDEX_HASH_SIZE);
    in->rec->instance.size = in->stored;
    if (!decide(in, out, &flags)) {
        if (in->phase == ING_FAILED)
            goto rejected;
        goto done;
    }

    if (in->w != NULL) {
        store_writer *w = in->w;

        in->w = NULL;
        if (store_commit(w, &err) != CP_OK) {
            fail_from_error(in, ARCHIVE_REASON_RESOURCES, "store_commit", &err);
            goto rejected;
        }
    }
    if ((a->test_flags & ARCHIVE_TEST_STOP_AFTER_BLOB) && in->fixed_key == NULL) {
        status = CP_ERR_STOPPED;
        goto done;
    }

    if (index_put_instance(a->idx, in->rec, flags, &pr, &err) != CP_OK) {
        if (in->fixed_key == NULL)
            remove_quietly(a, in->key);
        fail_from_error(in, err.status == CP_ERR_INVALID ? ARCHIVE_REASON_BAD_VALUE
                                                         : ARCHIVE_REASON_RESOURCES,
                        "index_put_instance", &err);
        goto rejected;
    }
    settle(in, &pr, out);
    goto done;

rejected:
    out->outcome = ARCHIVE_REJECTED;
    out->reason = in->reason;
    memcpy(out->detail, in->detail, sizeof out->detail);
    out->blob_key[0] = '\0';

done:
    ingest_free(in);
    return status;
}

/* Streams a readable thing (a file, a blob) through an ingest. */
typedef cp_status (*read_fn)(void *ctx, void *buf, size_t len, size_t *got);

static cp_status ingest_stream(archive_ingest *in, read_fn rd, void *ctx, archive_result *out)
{
    uint8_t *buf = cp_malloc(ARCHIVE_READ_CHUNK);
    size_t got;
    cp_status st;

    if (buf == NULL) {
        archive_ingest_abort(in);
        return CP_ERR_NOMEM;
    }
    do {
        st = rd(ctx, buf, ARCHIVE_READ_CHUNK, &got);
        if (st != CP_OK)
            break;
        archive_ingest_write(in, buf, got);
    } while (got == ARCHIVE_READ_CHUNK && in->phase != ING_FAILED);
    cp_free(buf);
    if (st != CP_OK) {
        archive_ingest_abort(in);
        return st;
    }
    return archive_ingest_finish(in, out);
}

static cp_status read_fd(void *ctx, void *buf, size_t len, size_t *got)
{
    int fd = *(int *)ctx;
    size_t n = 0;

    while (n < len) {
        ssize_t r = read(fd, (uint8_t *)buf + n, len - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return CP_ERR_IO;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *got = n;
    return CP_OK;
}

cp_status archive_ingest_file(archive *a, const archive_source_info *info, const char *path,
                              archive_result *out)
{
    archive_ingest *in;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cp_status st;

    if (fd < 0)
        return errno == ENOENT ? CP_ERR_NOT_FOUND : CP_ERR_IO;
    st = archive_ingest_begin(a, info, &in);
    if (st == CP_OK)
        st = ingest_stream(in, read_fd, &fd, out);
    close(fd);
    return st;
}

/* --- names and statuses ---------------------------------------------------- */

bool archive_outcome_ok(archive_outcome outcome)
{
    return outcome != ARCHIVE_REJECTED;
}

const char *archive_outcome_name(archive_outcome outcome)
{
    static const char *const names[] = { "stored", "duplicate", "replaced", "kept",
                                         "rejected" };

    return (unsigned)outcome < sizeof names / sizeof names[0] ? names[outcome] : "unknown";
}

const char *archive_reason_name(archive_reason reason)
{
    static const char *const names[] = { "none", "not_dicom", "malformed", "missing_uid",
                                         "uid_mismatch", "not_storage", "bad_value",
                                         "duplicate", "resources" };

    return (unsigned)reason < sizeof names / sizeof names[0] ? names[reason] : "unknown";
}

uint16_t archive_result_dimse_status(const archive_result *res)
{
    if (res->outcome == ARCHIVE_KEPT)
        return 0xB000;
    if (res->outcome != ARCHIVE_REJECTED)
        return 0x0000;
    switch (res->reason) {
    case ARCHIVE_REASON_DUPLICATE:
        return 0x0111;
    case ARCHIVE_REASON_NOT_STORAGE:
        return 0x0122;
    case ARCHIVE_REASON_UID_MISMATCH:
        return 0xA900;
    case ARCHIVE_REASON_RESOURCES:
        return 0xA700;
    default:
        return 0xC000;
    }
}

/* --- repair ------------------------------------------------------------------ */

typedef struct repair_ctx {
    archive *a;
    time_t cutoff;
    archive_repair_fn fn;
    void *fn_ctx;
    archive_repair_report *rep;
    cp_error *err;
} repair_ctx;

static cp_status read_blob(void *ctx, void *buf, size_t len, size_t *got)
{
    return store_read(ctx, buf, len, got, NULL);
}

/* Indexes a committed blob the index lacks, as if it had just arrived. */
static void repair_reindex(repair_ctx *rc, const char *key, int64_t institution)
{
    archive *a = rc->a;
    const arc_source *src = source_by_institution(a, institution);
    archive_source_info info = { .source = src->name != NULL ? src->name : "repair" };
    archive_ingest *in = NULL;
    store_reader *r = NULL;
    archive_result res;

    if (store_open(a->st, key, &r, NULL) != CP_OK ||
        archive_ingest_begin(a, &info, &in) != CP_OK) {
        store_close(r);
        rc->rep->blobs_unreadable++;
        return;
    }
    in->fixed_key = key;
    in->src = src;
    in->institution_id = institution;
    if (ingest_stream(in, read_blob, r, &res) == CP_OK && archive_outcome_ok(res.outcome)) {
        rc->rep->blobs_reindexed++;
        if (rc->fn != NULL)
            rc->fn(rc->fn_ctx, "reindexed", res.sop_instance_uid, key);
    } else {
        rc->rep->blobs_unreadable++;
        if (rc->fn != NULL)
            rc->fn(rc->fn_ctx, "unreadable", "", key);
    }
    store_close(r);
}

/* One blob found under the root: indexed under its key, superseded, or unknown. */
static cp_status repair_blob(repair_ctx *rc, const char *key, const char *name)
{
    char sop[INDEX_UID_MAX + 1];
    size_t n = strlen(name) - (sizeof ARCHIVE_KEY_SUFFIX - 1);
    const char *cut = memchr(name, '_', n);
    existing ex;
    long long inst = 0;

    /* "<sop uid>.dcm", or "<sop uid>_<random>.dcm" for a second blob of the instance. */
    if (cut != NULL)
        n = (size_t)(cut - name);
    if (n == 0 || n >= sizeof sop)
        return CP_OK;
    copy_str(sop, sizeof sop, name, n);
    rc->rep->blobs_checked++;
    if (lookup_sop(rc->a, sop, &ex, rc->err) != CP_OK)
        return rc->err != NULL ? rc->err->status : CP_ERR_IO;
    if (ex.found && strcmp(ex.blob_key, key) == 0)
        return CP_OK;
    if (ex.found) {
        if (store_remove(rc->a->st, key, NULL) == CP_OK) {
            rc->rep->blobs_orphaned++;
            if (rc->fn != NULL)
                rc->fn(rc->fn_ctx, "orphan_removed", sop, key);
        }
        return CP_OK;
    }
    sscanf(key, ARCHIVE_KEY_PREFIX "/%lld/", &inst);
    repair_reindex(rc, key, inst);
    return CP_OK;
}

static cp_status repair_walk(repair_ctx *rc, int dir_fd, cp_buf *path, unsigned depth)
{
    DIR *dir = fdopendir(dir_fd);
    struct dirent *ent;
    struct stat sb;
    cp_status st = CP_OK;
    size_t base = path->len;

    if (dir == NULL) {
        close(dir_fd);
        return CP_OK;
    }
    while (st == CP_OK && (ent = readdir(dir)) != NULL) {
        size_t nlen = strlen(ent->d_name);

        /* Temporaries and anything hidden start with a dot. */
        if (ent->d_name[0] == '.' || fstatat(dirfd(dir), ent->d_name, &sb,
                                             AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        path->len = base;
        if (cp_buf_append_byte(path, '/') != CP_OK ||
            cp_buf_append(path, ent->d_name, nlen) != CP_OK) {
            st = CP_ERR_NOMEM;
            break;
        }
        if (S_ISDIR(sb.st_mode) && depth < ARCHIVE_REPAIR_DEPTH_MAX) {
            int child = openat(dirfd(dir), ent->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

            if (child >= 0)
                st = repair_walk(rc, child, path, depth + 1);
        } else if (S_ISREG(sb.st_mode) && sb.st_mtime <= rc->cutoff &&
                   nlen > sizeof ARCHIVE_KEY_SUFFIX - 1 &&
                   strcmp(ent->d_name + nlen - (sizeof ARCHIVE_KEY_SUFFIX - 1),
                          ARCHIVE_KEY_SUFFIX) == 0 && path->len <= STORE_KEY_MAX) {
            st = repair_blob(rc, (const char *)path->data, ent->d_name);
        }
    }
    path->len = base;
    if (path->data != NULL)
        path->data[base] = '\0';
    closedir(dir);
    return st;
}

typedef struct repair_row {
    char sop[INDEX_UID_MAX + 1];
    char key[INDEX_BLOB_KEY_MAX + 1];
} repair_row;

typedef struct repair_page {
    repair_row *rows;
    size_t count;
} repair_page;

static cp_status page_row(void *ctx, const index_row *row)
{
    repair_page *pg = ctx;

    if (pg->count == ARCHIVE_REPAIR_PAGE)
        return CP_ERR_STOPPED;
    memcpy(pg->rows[pg->count].sop, row->rec.instance.sop_uid, INDEX_UID_MAX + 1);
    memcpy(pg->rows[pg->count].key, row->rec.instance.blob_key, INDEX_BLOB_KEY_MAX + 1);
    pg->count++;
    return CP_OK;
}

/* Index rows whose blob is gone: the data is lost, so the rows go too. */
static cp_status repair_rows(repair_ctx *rc)
{
    archive *a = rc->a;
    repair_page pg = { cp_calloc(ARCHIVE_REPAIR_PAGE, sizeof(repair_row)), 0 };
    index_query_spec q = { .level = INDEX_LEVEL_INSTANCE, .limit = ARCHIVE_REPAIR_PAGE };
    cp_status st = CP_OK;

    if (pg.rows == NULL)
        return CP_ERR_NOMEM;
    for (;;) {
        size_t removed = 0;

        pg.count = 0;
        st = index_query(a->idx, &q, page_row, &pg, rc->err);
        if (st != CP_OK || pg.count == 0)
            break;
        for (size_t i = 0; i < pg.count; i++) {
            uint64_t size;
            cp_status s = store_stat(a->st, pg.rows[i].key, &size, NULL);

            rc->rep->rows_checked++;
            if (s != CP_ERR_NOT_FOUND)
                continue;
            if (index_delete_instance(a->idx, pg.rows[i].sop, NULL, NULL, NULL) == CP_OK) {
                removed++;
                rc->rep->rows_missing_blob++;
                if (rc->fn != NULL)
                    rc->fn(rc->fn_ctx, "row_removed", pg.rows[i].sop, pg.rows[i].key);
            }
        }
        if (pg.count < ARCHIVE_REPAIR_PAGE)
            break;
        q.offset += pg.count - removed;
    }
    cp_free(pg.rows);
    return st;
}

cp_status archive_repair(archive *a, int64_t min_age_seconds, archive_repair_fn fn, void *ctx,
                         archive_repair_report *report, cp_error *err)
{
    archive_repair_report local;
    repair_ctx rc = { a, time(NULL) - (time_t)min_age_seconds, fn, ctx, NULL, err };
    cp_buf path = CP_BUF_INIT;
    cp_status st;

    if (report == NULL)
        report = &local;
    memset(report, 0, sizeof *report);
    rc.rep = report;

    st = store_repair(a->st, min_age_seconds, &report->store, err);
    if (st != CP_OK)
        return st;

    /* Blobs first: a blob indexed again is then not taken for a row without blob. */
    if (a->fs_root != NULL) {
        char root[PATH_MAX];
        int fd;

        snprintf(root, sizeof root, "%s/" ARCHIVE_KEY_PREFIX, a->fs_root);
        fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            st = cp_buf_append_str(&path, ARCHIVE_KEY_PREFIX);
            if (st == CP_OK)
                st = repair_walk(&rc, fd, &path, 0);
            else
                close(fd);
        }
        cp_buf_free(&path);
        if (st != CP_OK)
            return st;
    }
    return repair_rows(&rc);
}
