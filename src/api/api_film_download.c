/*
 * api_film_download.c - GET /film/api/{token}/download.zip
 * (api_film_download.h): the whole study as one ZIP with a DICOMDIR,
 * made while it is sent.
 *
 * The handler checks the link (api_film_gate), lists the study's instances
 * from the index (a few hundred bytes each), and hands a producer to
 * http_respond_stream. Each call of the producer gives out what the ZIP
 * writer left in a small buffer, or moves one step on: the next chunk of
 * the current file, the end of one file and the start of the next, the
 * report PDF, the DICOMDIR, the central directory. At most one chunk of
 * one file is in memory, and for a de-identified link the current file's
 * de-identified copy waits in an unnamed temporary file, since
 * film_deident_file writes a whole file at once. The DICOMDIR's records
 * are gathered as the files go, and the DICOMDIR is written last.
 */
#include "api/api_film_download.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_film.h"
#include "api/api_internal.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "dicom/dataset.h"
#include "dicom/dict_tags.h"
#include "film/deident.h"
#include "film/dicomdir.h"
#include "film/share.h"
#include "film/zipstream.h"

#define DL_UID_MAX INDEX_UID_MAX
#define DL_PATH_MAX 4200
/* A DT value (PS3.5 6.2): YYYYMMDDHHMMSS.FFFFFF&ZZXX. */
#define DL_DT_MAX 26

/* A series of the study, as the index has it. */
typedef struct dl_series {
    char uid[DL_UID_MAX + 1];
    char modality[INDEX_CS_MAX + 1];
    int64_t number;
    uint32_t seen;              /* its place in the index's answer, while sorting */
} dl_series;

/* One instance to send. */
typedef struct dl_item {
    char *blob_key;
    uint32_t series;            /* into dl_stream.series */
    int64_t number;
    char sop_class[DL_UID_MAX + 1];
    char sop_uid[DL_UID_MAX + 1];
    char ts[DL_UID_MAX + 1];
} dl_item;

typedef enum {
    DL_FILES,
    DL_REPORT,
    DL_DICOMDIR,
    DL_CENTRAL,
    DL_DONE,
} dl_phase;

/* The producer's state: one per download. */
typedef struct dl_stream {
    api_service *api;
    store *st;
    int64_t link_id;
    bool deidentify;
    film_deident *deid;

    dl_series *series;
    size_t series_count, series_cap;
    dl_item *items;
    size_t count, cap;
    index_instance_record first;   /* the patient's and the study's keys */
    char report_path[DL_PATH_MAX]; /* "": no report */

    dl_phase phase;
    size_t next;                /* the next item to begin */
    film_zip *zip;
    film_dicomdir *dir;
    cp_buf pending;             /* what the ZIP writer made, not yet sent */
    size_t pending_pos;

    /* The file being sent: a blob, or a de-identified copy, or the report PDF. */
    store_reader *rd;
    int fd;
    uint64_t pos, left;
    uint8_t *chunk;

    uint64_t bytes;             /* archive bytes made */
} dl_stream;

/* --- listing the study ------------------------------------------------------------------ */

static cp_status series_index(dl_stream *s, const index_series *se, uint32_t *out)
{
    dl_series *x;
    cp_status st;

    for (size_t i = s->series_count; i-- > 0;) {
        if (strcmp(s->series[i].uid, se->uid) == 0) {
            *out = (uint32_t)i;
            return CP_OK;
        }
    }
    st = cp_array_grow(&s->series, &s->series_cap, s->series_count, sizeof(*s->series), 8,
                       FILM_DICOMDIR_SERIES_MAX);
    if (st != CP_OK)
        return st;
    x = &s->series[s->series_count];
    snprintf(x->uid, sizeof(x->uid), "%s", se->uid);
    snprintf(x->modality, sizeof(x->modality), "%s", se->modality);
    x->number = se->number;
    *out = (uint32_t)s->series_count++;
    return CP_OK;
}

static bool encapsulated_document(const char *sop_class)
{
    return strncmp(sop_class, "1.2.840.10008.5.1.4.1.1.104.", 28) == 0;
}

static cp_status item_one(void *ctx, const index_row *row)
{
    dl_stream *s = ctx;
    const index_instance *in = &row->rec.instance;
    dl_item *it;
    uint32_t series;
    cp_status st;

    if (in->blob_key[0] == '\0')
        return CP_OK;
    /* A de-identified link leaves out documents whose content names the patient. */
    if (s->deidentify && encapsulated_document(in->sop_class_uid))
        return CP_OK;
    if (s->count == 0)
        s->first = row->rec;
    if ((st = series_index(s, &row->rec.series, &series)) != CP_OK)
        return st;
    st = cp_array_grow(&s->items, &s->cap, s->count, sizeof(*s->items), 64,
                       API_FILM_DOWNLOAD_INSTANCES_MAX);
    if (st != CP_OK)
        return st;
    it = &s->items[s->count];
    memset(it, 0, sizeof(*it));
    it->blob_key = cp_strdup(in->blob_key);
    if (it->blob_key == NULL)
        return CP_ERR_NOMEM;
    it->series = series;
    it->number = in->number;
    snprintf(it->sop_class, sizeof(it->sop_class), "%s", in->sop_class_uid);
    snprintf(it->sop_uid, sizeof(it->sop_uid), "%s", in->sop_uid);
    snprintf(it->ts, sizeof(it->ts), "%s", in->transfer_syntax);
    s->count++;
    return CP_OK;
}

/* Series by number then UID: the order a viewer lists them in. */
static int series_cmp(const void *pa, const void *pb)
{
    const dl_series *x = pa, *y = pb;

    if (x->number != y->number)
        return x->number < y->number ? -1 : 1;
    return strcmp(x->uid, y->uid);
}

/* Instances by series (once ranked), then number, then UID. */
static int item_cmp(const void *pa, const void *pb)
{
    const dl_item *x = pa, *y = pb;

    if (x->series != y->series)
        return x->series < y->series ? -1 : 1;
    if (x->number != y->number)
        return x->number < y->number ? -1 : 1;
    return strcmp(x->sop_uid, y->sop_uid);
}

/* Sorts the series, points the items at their series' new places, and sorts the items. */
static cp_status sort_study(dl_stream *s)
{
    uint32_t *place = cp_calloc(s->series_count ? s->series_count : 1, sizeof(*place));

    if (place == NULL)
        return CP_ERR_NOMEM;
    for (size_t i = 0; i < s->series_count; i++)
        s->series[i].seen = (uint32_t)i;
    qsort(s->series, s->series_count, sizeof(*s->series), series_cmp);
    for (size_t i = 0; i < s->series_count; i++)
        place[s->series[i].seen] = (uint32_t)i;
    for (size_t i = 0; i < s->count; i++)
        s->items[i].series = place[s->items[i].series];
    cp_free(place);
    qsort(s->items, s->count, sizeof(*s->items), item_cmp);
    return CP_OK;
}

static cp_status list_study(dl_stream *s, const char *study_uid)
{
    index_term term = { "StudyInstanceUID", study_uid };
    index_query_spec spec;
    cp_status st;

    memset(&spec, 0, sizeof(spec));
    spec.level = INDEX_LEVEL_INSTANCE;
    spec.terms = &term;
    spec.term_count = 1;
    spec.limit = API_FILM_DOWNLOAD_INSTANCES_MAX;
    st = s->api->cfg.idx ? index_query(s->api->cfg.idx, &spec, item_one, s, NULL)
                         : CP_ERR_UNAVAILABLE;
    return st == CP_OK ? sort_study(s) : st;
}

/* --- the stream ------------------------------------------------------------------------- */

static cp_status pending_write(void *ctx, const void *data, size_t len)
{
    return cp_buf_append(ctx, data, len);
}

static void close_file(dl_stream *s)
{
    store_close(s->rd);
    s->rd = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->left = 0;
}

static void stream_free(void *ctx)
{
    dl_stream *s = ctx;

    if (s == NULL)
        return;
    close_file(s);
    for (size_t i = 0; i < s->count; i++)
        cp_free(s->items[i].blob_key);
    cp_free(s->items);
    cp_free(s->series);
    cp_free(s->chunk);
    film_zip_free(s->zip);
    film_dicomdir_free(s->dir);
    if (s->deid)
        film_deident_close(s->deid);
    cp_buf_free(&s->pending);
    cp_free(s);
}

/* Reads at most len bytes of the current file at s->pos. */
static cp_status file_pread(dl_stream *s, uint64_t at, void *buf, size_t len, size_t *got)
{
    if (s->fd >= 0) {
        ssize_t n = pread(s->fd, buf, len, (off_t)at);

        if (n < 0)
            return CP_ERR_IO;
        *got = (size_t)n;
        return CP_OK;
    }
    return store_pread(s->rd, at, buf, len, got, NULL);
}

/* A dcm_source over the current file, for the keys of a document's record. */
typedef struct file_source {
    dl_stream *s;
    uint64_t at;
} file_source;

static cp_status fsrc_read(void *ctx, void *buf, size_t len, size_t *got)
{
    file_source *f = ctx;
    cp_status st = file_pread(f->s, f->at, buf, len, got);

    if (st == CP_OK)
        f->at += *got;
    return st;
}

static cp_status fsrc_pread(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got)
{
    file_source *f = ctx;

    return file_pread(f->s, offset, buf, len, got);
}

typedef struct doc_keys {
    char content_date[INDEX_DA_MAX + 1];
    char content_time[INDEX_TM_MAX + 1];
    char completion[INDEX_CS_MAX + 1];
    char verification[INDEX_CS_MAX + 1];
    char verified_at[DL_DT_MAX + 1];
    char concept_value[INDEX_SH_MAX + 1];
    char concept_scheme[INDEX_SH_MAX + 1];
    char concept_meaning[INDEX_LO_MAX + 1];
    char title[INDEX_LO_MAX + 1];
    char mime[INDEX_LO_MAX + 1];
} doc_keys;

/*
 * The keys of an SR or encapsulated document's record, read from the file
 * as it is sent (documents are small; their bulk values are not loaded).
 * A file that cannot be read leaves them empty: the record still finds it.
 */
static void doc_keys_read(dl_stream *s, doc_keys *k)
{
    static const dcm_source_ops ops = { fsrc_read, fsrc_pread, NULL };
    file_source fs = { s, 0 };
    dcm_source *src = dcm_source_create(&ops, &fs);
    dcm_file *file = NULL;
    const dcm_element *seq;
    const dcm_dataset *ds;

    memset(k, 0, sizeof(*k));
    if (src == NULL)
        return;
    if (dcm_file_read(src, NULL, &file, NULL) == CP_OK) {
        ds = file->dataset;
        dcm_dataset_get_string(ds, DCM_ContentDate, k->content_date, sizeof(k->content_date));
        dcm_dataset_get_string(ds, DCM_ContentTime, k->content_time, sizeof(k->content_time));
        dcm_dataset_get_string(ds, DCM_CompletionFlag, k->completion, sizeof(k->completion));
        dcm_dataset_get_string(ds, DCM_VerificationFlag, k->verification,
                               sizeof(k->verification));
        dcm_dataset_get_string(ds, DCM_DocumentTitle, k->title, sizeof(k->title));
        dcm_dataset_get_string(ds, DCM_MIMETypeOfEncapsulatedDocument, k->mime,
                               sizeof(k->mime));
        /* The latest verifier is the last item (PS3.3 C.17.2.1). */
        seq = dcm_dataset_get(ds, DCM_VerifyingObserverSequence);
        if (seq && seq->item_count > 0)
            dcm_dataset_get_string(seq->items[seq->item_count - 1], DCM_VerificationDateTime,
                                   k->verified_at, sizeof(k->verified_at));
        seq = dcm_dataset_get(ds, DCM_ConceptNameCodeSequence);
        if (seq && seq->item_count > 0) {
            dcm_dataset_get_string(seq->items[0], DCM_CodeValue, k->concept_value,
                                   sizeof(k->concept_value));
            dcm_dataset_get_string(seq->items[0], DCM_CodingSchemeDesignator,
                                   k->concept_scheme, sizeof(k->concept_scheme));
            dcm_dataset_get_string(seq->items[0], DCM_CodeMeaning, k->concept_meaning,
                                   sizeof(k->concept_meaning));
        }
    }
    dcm_file_destroy(file);
    dcm_source_destroy(src);
}

static cp_status tmp_write(void *ctx, const void *data, size_t len)
{
    const uint8_t *p = data;
    int fd = *(int *)ctx;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return CP_ERR_IO;
        p += n;
        len -= (size_t)n;
    }
    return CP_OK;
}

/* An unnamed temporary file, read and write (as WADO-RS's converted instances). */
static int tmp_open(void)
{
    FILE *tmp = tmpfile();
    int fd;

    if (tmp == NULL)
        return -1;
    fd = fcntl(fileno(tmp), F_DUPFD_CLOEXEC, 0);
    fclose(tmp);
    return fd;
}

/*
 * The blob's de-identified form into a temporary file, which becomes the
 * current file. film_deident_file reads a path: the blob's own descriptor
 * through /proc/self/fd (the filesystem store), else a temporary copy.
 */
static cp_status begin_deidentified(dl_stream *s, const dl_item *it, cp_error *err)
{
    char path[64];
    int copy = -1, out = -1;
    dcm_sink sink;
    struct stat sb;
    cp_status st;

    if ((st = store_open(s->st, it->blob_key, &s->rd, err)) != CP_OK)
        return st;
    if (store_reader_fd(s->rd) < 0) {
        uint64_t at = 0;
        size_t got = 0;

        copy = tmp_open();
        if (copy < 0)
            return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "no temporary file");
        do {
            st = store_pread(s->rd, at, s->chunk, API_FILM_DOWNLOAD_CHUNK, &got, err);
            if (st == CP_OK)
                st = tmp_write(&copy, s->chunk, got);
            at += got;
        } while (st == CP_OK && got > 0);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", copy);
    } else {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", store_reader_fd(s->rd));
    }
    if (st == CP_OK && (out = tmp_open()) < 0)
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "no temporary file");
    if (st == CP_OK) {
        sink.write = tmp_write;
        sink.ctx = &out;
        st = film_deident_file(s->deid, path, &sink, err);
    }
    if (copy >= 0)
        close(copy);
    store_close(s->rd);
    s->rd = NULL;
    if (st == CP_OK && fstat(out, &sb) != 0)
        st = CP_ERR_IO;
    if (st != CP_OK) {
        if (out >= 0)
            close(out);
        return st;
    }
    s->fd = out;
    s->pos = 0;
    s->left = (uint64_t)sb.st_size;
    return CP_OK;
}

/* The DICOMDIR record of the current file; path gets its name in the archive. */
static cp_status record_item(dl_stream *s, const dl_item *it, char *path, cp_error *err)
{
    const dl_series *se = &s->series[it->series];
    char series_uid[FILM_DEIDENT_UID_MAX + 1], sop_uid[FILM_DEIDENT_UID_MAX + 1];
    film_dicomdir_file f;
    doc_keys k;
    cp_status st;

    memset(&f, 0, sizeof(f));
    f.series_uid = se->uid;
    f.modality = se->modality;
    f.series_number = se->number;
    f.sop_class_uid = it->sop_class;
    f.sop_uid = it->sop_uid;
    f.transfer_syntax = it->ts;
    f.instance_number = it->number;
    if (s->deid) {
        if ((st = film_deident_uid(s->deid, se->uid, series_uid, err)) != CP_OK ||
            (st = film_deident_uid(s->deid, it->sop_uid, sop_uid, err)) != CP_OK)
            return st;
        f.series_uid = series_uid;
        f.sop_uid = sop_uid;
    }
    if (strncmp(it->sop_class, "1.2.840.10008.5.1.4.1.1.88.", 27) == 0 ||
        encapsulated_document(it->sop_class)) {
        doc_keys_read(s, &k);
        f.content_date = k.content_date;
        f.content_time = k.content_time;
        f.completion_flag = k.completion;
        f.verification_flag = k.verification;
        f.verification_datetime = k.verified_at;
        f.concept_value = k.concept_value;
        f.concept_scheme = k.concept_scheme;
        f.concept_meaning = k.concept_meaning;
        f.document_title = k.title;
        f.mime_type = k.mime;
    }
    return film_dicomdir_add(s->dir, &f, path, err);
}

static cp_status begin_item(dl_stream *s, const dl_item *it, cp_error *err)
{
    char path[FILM_DICOMDIR_PATH_MAX];
    cp_status st;

    if (s->deid) {
        st = begin_deidentified(s, it, err);
        if (st == CP_ERR_MALFORMED) {
            /* A file the de-identifier cannot read is left out rather than sent as it is. */
            cp_log_warn("api.film_download_skipped", "link=%" PRId64 " file=%zu detail=\"%s\"",
                        s->link_id, s->next, err->detail);
            close_file(s);
            return CP_OK;
        }
    } else {
        st = store_open(s->st, it->blob_key, &s->rd, err);
        if (st == CP_OK) {
            s->pos = 0;
            s->left = store_reader_size(s->rd);
        }
    }
    if (st == CP_OK)
        st = record_item(s, it, path, err);
    if (st == CP_OK)
        st = film_zip_begin(s->zip, path, s->left, err);
    return st;
}

static cp_status begin_report(dl_stream *s, cp_error *err)
{
    struct stat sb;
    int fd = open(s->report_path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &sb) != 0) {
        /* The PDF went missing after the listing: the archive goes on without it. */
        if (fd >= 0)
            close(fd);
        return CP_OK;
    }
    s->fd = fd;
    s->pos = 0;
    s->left = (uint64_t)sb.st_size;
    return film_zip_begin(s->zip, "REPORT.PDF", s->left, err);
}

static cp_status dir_write(void *ctx, const void *data, size_t len)
{
    return film_zip_write(ctx, data, len, NULL);
}

static cp_status write_dicomdir(dl_stream *s, cp_error *err)
{
    dcm_sink sink = { dir_write, s->zip };
    cp_status st;

    if (film_dicomdir_count(s->dir) == 0)
        return CP_OK;
    /* Its offsets are 32-bit: the DICOMDIR stays below 4 GiB, and says so as its hint. */
    if ((st = film_zip_begin(s->zip, "DICOMDIR", 0, err)) != CP_OK ||
        (st = film_dicomdir_write(s->dir, "CLOUDPACS", &sink, err)) != CP_OK)
        return st;
    return film_zip_end(s->zip, err);
}

/* Moves the archive one step on; what it made is in s->pending. */
static cp_status step(dl_stream *s, cp_error *err)
{
    cp_status st;

    if (s->left > 0) {
        size_t want = s->left < API_FILM_DOWNLOAD_CHUNK ? (size_t)s->left
                                                        : API_FILM_DOWNLOAD_CHUNK;
        size_t got = 0;

        st = file_pread(s, s->pos, s->chunk, want, &got);
        if (st == CP_OK && got == 0)
            st = CP_ERR_TRUNCATED;
        if (st != CP_OK)
            return st;
        s->pos += got;
        s->left -= got;
        return film_zip_write(s->zip, s->chunk, got, err);
    }
    if (s->rd != NULL || s->fd >= 0) {
        close_file(s);
        return film_zip_end(s->zip, err);
    }
    switch (s->phase) {
    case DL_FILES:
        if (s->next < s->count)
            return begin_item(s, &s->items[s->next++], err);
        s->phase = DL_REPORT;
        return CP_OK;
    case DL_REPORT:
        s->phase = DL_DICOMDIR;
        return s->report_path[0] ? begin_report(s, err) : CP_OK;
    case DL_DICOMDIR:
        s->phase = DL_CENTRAL;
        return write_dicomdir(s, err);
    case DL_CENTRAL:
        s->phase = DL_DONE;
        return film_zip_finish(s->zip, err);
    case DL_DONE:
        break;
    }
    return CP_OK;
}

static ssize_t produce(void *ctx, uint64_t pos, uint8_t *buf, size_t max)
{
    dl_stream *s = ctx;
    cp_error err;

    (void)pos;
    for (;;) {
        if (s->pending_pos < s->pending.len) {
            size_t n = s->pending.len - s->pending_pos;

            n = n < max ? n : max;
            memcpy(buf, s->pending.data + s->pending_pos, n);
            s->pending_pos += n;
            s->bytes += n;
            return (ssize_t)n;
        }
        cp_buf_reset(&s->pending);
        s->pending_pos = 0;
        if (s->phase == DL_DONE && s->left == 0 && s->rd == NULL && s->fd < 0) {
            cp_log_info("api.film_download", "link=%" PRId64 " files=%zu bytes=%" PRIu64
                        " deidentified=%s", s->link_id, s->count, s->bytes,
                        s->deid ? "yes" : "no");
            return HTTP_STREAM_END;
        }
        cp_error_clear(&err);
        if (step(s, &err) != CP_OK) {
            /* The status line is long gone: cutting the connection is all that is left. */
            cp_log_warn("api.film_download_failed", "link=%" PRId64 " file=%zu detail=\"%s\"",
                        s->link_id, s->next, err.detail);
            return HTTP_STREAM_ERROR;
        }
    }
}

/* --- the handler ------------------------------------------------------------------------- */

/* The patient's name as a PN from the index's component groups. */
static void person_name(const index_person_name *n, char *out, size_t cap)
{
    if (n->ideographic[0] || n->phonetic[0])
        snprintf(out, cap, "%s=%s%s%s", n->alphabetic, n->ideographic,
                 n->phonetic[0] ? "=" : "", n->phonetic);
    else
        snprintf(out, cap, "%s", n->alphabetic);
}

/* The DICOMDIR's study: as indexed, or for a de-identified link what is left of it. */
static cp_status open_dicomdir(dl_stream *s, cp_error *err)
{
    const index_instance_record *r = &s->first;
    char name[3 * INDEX_PN_GROUP_MAX + 3], study_uid[FILM_DEIDENT_UID_MAX + 1];
    film_dicomdir_study k;
    cp_status st;

    memset(&k, 0, sizeof(k));
    if (s->deid) {
        /* PS3.15 E.1-1: the names become the pseudonym; dates and other keys go. */
        if ((st = film_deident_uid(s->deid, r->study.uid, study_uid, err)) != CP_OK)
            return st;
        k.patient_name = film_deident_pseudonym(s->deid);
        k.patient_id = film_deident_pseudonym(s->deid);
        k.study_uid = study_uid;
        return film_dicomdir_new(&k, &s->dir, err);
    }
    person_name(&r->patient.name, name, sizeof(name));
    k.patient_name = name;
    k.patient_id = r->patient.id;
    k.study_uid = r->study.uid;
    k.study_date = r->study.date;
    k.study_time = r->study.time;
    k.study_description = r->study.description;
    k.study_id = r->study.id;
    k.accession = r->study.accession;
    return film_dicomdir_new(&k, &s->dir, err);
}

static cp_status open_deident(dl_stream *s, const film_share_link *link, cp_error *err)
{
    uint8_t key[FILM_SHARE_LINK_KEY_BYTES];
    char pseudonym[FILM_SHARE_PSEUDONYM_SIZE];
    cp_status st;

    film_share_link_key(s->api->cfg.film, link, key);
    film_share_link_pseudonym(s->api->cfg.film, link, pseudonym);
    st = film_deident_open(key, pseudonym, &s->deid, err);
    explicit_bzero(key, sizeof(key));
    return st;
}

/* The stream of a link's study, ready to go; NULL after answering. */
static dl_stream *prepare(api_service *a, http_request *req, const film_share_link *link)
{
    film_zip_sink sink;
    dl_stream *s = cp_calloc(1, sizeof(*s));
    cp_error err;
    cp_status st;

    if (s == NULL) {
        api_respond_error(req, 503, "unavailable", "out of memory");
        return NULL;
    }
    s->api = a;
    s->st = a->film_store;
    s->fd = -1;
    s->link_id = link->id;
    s->deidentify = link->deidentify;
    cp_buf_init(&s->pending);
    cp_error_clear(&err);
    st = list_study(s, link->study_uid);
    if (st == CP_OK && s->count == 0)
        st = CP_ERR_NOT_FOUND;
    if (st == CP_OK && link->deidentify)
        st = open_deident(s, link, &err);
    if (st == CP_OK)
        st = open_dicomdir(s, &err);
    sink.write = pending_write;
    sink.ctx = &s->pending;
    if (st == CP_OK)
        st = film_zip_open(&sink, NULL, &s->zip, &err);
    if (st == CP_OK && !(s->chunk = cp_malloc(API_FILM_DOWNLOAD_CHUNK)))
        st = CP_ERR_NOMEM;
    /* The report's PDF goes with the images, unless the link hides who the patient is. */
    if (st == CP_OK && !link->deidentify &&
        !api_film_report_path(a, link->study_uid, s->report_path, sizeof(s->report_path)))
        s->report_path[0] = '\0';
    if (st != CP_OK) {
        stream_free(s);
        if (st == CP_ERR_NOT_FOUND)
            api_respond_error(req, 404, "not_found", "the study has no images here");
        else
            api_respond_status(req, st, &err);
        return NULL;
    }
    return s;
}

cp_status api_film_download(http_request *req, void *ctx)
{
    api_service *a = ctx;
    char disposition[128];
    film_share_link link;
    dl_stream *s;

    if (!api_film_gate_study(a, req, &link))
        return CP_OK;
    if (!a->film_store)
        return api_respond_error(req, 503, "unavailable", "downloads are not offered here");
    if (!link.study_uid[0])
        return api_respond_error(req, 404, "not_found", "the link names no study");
    s = prepare(a, req, &link);
    if (s == NULL)
        return CP_OK;
    /* The name says what it is without saying whose: no patient data in it. */
    if (link.deidentify || s->first.study.date[0] == '\0')
        snprintf(disposition, sizeof(disposition), "attachment; filename=\"study.zip\"");
    else
        snprintf(disposition, sizeof(disposition), "attachment; filename=\"study-%.8s.zip\"",
                 s->first.study.date);
    http_response_header(req, "Content-Disposition", disposition);
    http_response_header(req, "Cache-Control", "no-store");
    /* A HEAD sends no archive: nothing left the archive to record. */
    if (http_request_method(req) != HTTP_HEAD)
        api_film_audit(a, req, &link, AUDIT_EXPORT, "share_download");
    return http_respond_stream(req, 200, "application/zip", -1, produce, s, stream_free);
}
