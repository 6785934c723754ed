/*
 * stow.c - STOW-RS, the Store transaction (PS3.18 10.5).
 *
 * The request body is fed as it arrives to the multipart reader, and each
 * part's bytes straight into an archive ingest (archive.h), so that neither
 * the body nor a part is ever held whole. When the path names a study
 * (POST /studies/{study}), the first bytes of each part are held until the
 * Study Instance UID has been read from them: an instance of another study
 * is refused before anything of it is stored, with Failure Reason 0xA900
 * (PS3.18 Table I.2-2). The answer is the Store Instances Response Module
 * (PS3.18 Annex I) in the DICOM JSON model, with the status of Table
 * 10.5.3-1: 200 all stored, 202 some, 409 none, 400 a body that is not
 * multipart, 415 another media type.
 *
 * Storing needs studies.store (policy.h); the instances become the
 * principal's institution's (archive_source_info.institution_id), and each
 * study that received some is one Import record in the audit trail
 * (PS3.15 A.5.3.5).
 *
 * A part's commit (archive_ingest_finish: blob fsync, rename, directory
 * fsync, index transaction) runs on one of up to STOW_FINISHERS threads of
 * the request while the connection's thread reads the next part, so that
 * the parts' disk waits overlap each other and the body's bytes instead of
 * adding up; at most STOW_JOBS_MAX parts wait for or are in their commit.
 * The answer is made once every commit is done, in the order of the parts.
 */
#include "dicomweb/stow.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "archive/archive.h"
#include "core/alloc.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/tag.h"
#include "dicomweb/dicomweb.h"
#include "http/accept.h"
#include "http/http.h"
#include "http/multipart.h"

#define STOW_STUDY_UID  DCM_TAG(0x0020, 0x000D)
#define STOW_SERIES_UID DCM_TAG(0x0020, 0x000E)
#define STOW_SOP_CLASS  DCM_TAG(0x0008, 0x0016)
#define STOW_SOP_UID    DCM_TAG(0x0008, 0x0018)

/* Bytes held before the first look for the Study Instance UID; doubled after each. */
#define STOW_PEEK_FIRST (4u * 1024)

/* Threads of one request that commit its parts, and parts in or waiting for a commit. */
#define STOW_FINISHERS 4
#define STOW_JOBS_MAX  8

/* One part's commit, from the part's end to its result being handed to its item. */
typedef struct stow_job {
    struct stow_job *next;          /* every job, in the order of the parts */
    struct stow_job *queued;        /* the jobs no finisher has taken yet */
    archive_ingest *ingest;
    size_t item;                    /* its index in items (which may move as they grow) */
    archive_result res;
    cp_status st;
} stow_job;

/* Where the part being read stands. */
typedef enum {
    PART_PEEKING,       /* holding bytes until the study is known */
    PART_INGESTING,     /* bytes go to the ingest */
    PART_REFUSED,       /* bytes are dropped; the item is already failed */
} stow_part_state;

typedef struct stow_request {
    archive *arc;
    dweb_service *svc;
    int64_t institution_id;         /* the principal's: what it stores is its own */
    const char *study;              /* the path's study, or NULL */
    http_multipart_reader *reader;
    cp_status body_status;          /* the first failure of the body, sticky */

    dweb_stow_item *items;
    size_t count;
    size_t cap;

    bool in_part;
    stow_part_state state;
    archive_ingest *ingest;
    cp_buf peek;
    size_t next_try;                /* peek length at which to look again */

    /* The commits (see the top): the lock guards the lists, counts and stopping. */
    pthread_mutex_t lock;
    pthread_cond_t work;            /* a job queued, or stopping */
    pthread_cond_t done;            /* a job done */
    stow_job *jobs, *jobs_tail;
    stow_job *queue, *queue_tail;
    size_t open_jobs;               /* queued or being committed */
    pthread_t finishers[STOW_FINISHERS];
    size_t finisher_count;
    bool stopping;
} stow_request;

/* --- the response ------------------------------------------------------------ */

int dweb_stow_status(const dweb_stow_item *items, size_t count)
{
    size_t stored = 0;

    for (size_t i = 0; i < count; i++)
        stored += items[i].stored;
    if (count == 0)
        return 400;
    if (stored == count)
        return 200;
    return stored == 0 ? 409 : 202;
}

static cp_status uid_element(cp_buf *out, const char *tag, const char *uid, bool comma)
{
    cp_status st = cp_buf_appendf(out, "%s\"%s\":{\"vr\":\"UI\"", comma ? "," : "", tag);

    if (st == CP_OK && uid[0] != '\0') {
        st = cp_buf_append_str(out, ",\"Value\":[");
        if (st == CP_OK)
            st = dweb_json_string(out, uid);
        if (st == CP_OK)
            st = cp_buf_append_str(out, "]");
    }
    return st == CP_OK ? cp_buf_append_str(out, "}") : st;
}

static cp_status item_json(const dweb_stow_item *it, const char *root, cp_buf *out)
{
    cp_status st = cp_buf_append_str(out, "{");

    if (st == CP_OK)
        st = uid_element(out, "00081150", it->sop_class_uid, false);
    if (st == CP_OK)
        st = uid_element(out, "00081155", it->sop_instance_uid, true);
    if (st != CP_OK)
        return st;
    if (!it->stored)
        st = cp_buf_appendf(out, ",\"00081197\":{\"vr\":\"US\",\"Value\":[%u]}",
                            (unsigned)it->failure);
    else
        st = cp_buf_appendf(out, ",\"00081190\":{\"vr\":\"UR\",\"Value\":[\"%s/studies/%s"
                            "/series/%s/instances/%s\"]}", root, it->study_uid,
                            it->series_uid, it->sop_instance_uid);
    return st == CP_OK ? cp_buf_append_str(out, "}") : st;
}

static cp_status sequence_json(const dweb_stow_item *items, size_t count, bool stored,
                               const char *root, const char *tag, cp_buf *out)
{
    size_t n = 0;
    cp_status st = cp_buf_appendf(out, "\"%s\":{\"vr\":\"SQ\"", tag);

    for (size_t i = 0; i < count && st == CP_OK; i++) {
        if (items[i].stored != stored)
            continue;
        st = cp_buf_append_str(out, n == 0 ? ",\"Value\":[" : ",");
        if (st == CP_OK)
            st = item_json(&items[i], root, out);
        n++;
    }
    if (st == CP_OK && n > 0)
        st = cp_buf_append_str(out, "]");
    return st == CP_OK ? cp_buf_append_str(out, "}") : st;
}

cp_status dweb_stow_response_json(const dweb_stow_item *items, size_t count,
                                  const char *root, const char *study_uid, cp_buf *out)
{
    cp_status st = cp_buf_append_str(out, "{");

    if (st == CP_OK && study_uid != NULL)
        st = cp_buf_appendf(out, "\"00081190\":{\"vr\":\"UR\",\"Value\":[\"%s/studies/%s\"]},",
                            root, study_uid);
    if (st == CP_OK)
        st = sequence_json(items, count, false, root, "00081198", out);
    if (st == CP_OK)
        st = cp_buf_append_str(out, ",");
    if (st == CP_OK)
        st = sequence_json(items, count, true, root, "00081199", out);
    return st == CP_OK ? cp_buf_append_str(out, "}") : st;
}

/* --- the parts ------------------------------------------------------------------ */

static dweb_stow_item *new_item(stow_request *r)
{
    if (r->count == r->cap) {
        size_t cap = r->cap == 0 ? 16 : r->cap * 2;
        dweb_stow_item *grown;

        if (cap > DWEB_STOW_INSTANCES_MAX)
            cap = DWEB_STOW_INSTANCES_MAX;
        if (cap == r->count)
            return NULL;
        grown = cp_calloc(cap, sizeof *grown);
        if (grown == NULL)
            return NULL;
        if (r->count > 0)
            memcpy(grown, r->items, r->count * sizeof *grown);
        cp_free(r->items);
        r->items = grown;
        r->cap = cap;
    }
    memset(&r->items[r->count], 0, sizeof r->items[0]);
    return &r->items[r->count++];
}

static cp_status start_ingest(stow_request *r)
{
    archive_source_info info;

    memset(&info, 0, sizeof info);
    info.source = "stow";
    info.institution_id = r->institution_id;
    if (archive_ingest_begin(r->arc, &info, &r->ingest) != CP_OK)
        return CP_ERR_NOMEM;
    r->state = PART_INGESTING;
    return CP_OK;
}

static cp_status on_part_begin(void *ctx, const http_multipart_part *part)
{
    stow_request *r = ctx;
    const char *type = http_multipart_part_header(part, "Content-Type");
    dweb_stow_item *it = new_item(r);

    if (it == NULL)
        return CP_ERR_LIMIT;
    r->in_part = true;
    cp_buf_reset(&r->peek);
    r->next_try = STOW_PEEK_FIRST;
    if (type != NULL && !http_media_type_is(type, "application/dicom")) {
        it->failure = DWEB_FAIL_UNDERSTAND;
        r->state = PART_REFUSED;
        return CP_OK;
    }
    if (r->study != NULL) {
        r->state = PART_PEEKING;
        return CP_OK;
    }
    return start_ingest(r);
}

/*
 * Looks for the Study Instance UID in the bytes held. Until the reader has
 * gone past it (DCM_FILE_STOPPED) more bytes are awaited, up to the end of
 * the part or ARCHIVE_HEADER_MAX; then the part is refused, or handed to
 * an ingest with the bytes held.
 */
static cp_status try_peek(stow_request *r, bool last)
{
    dweb_stow_item *it = &r->items[r->count - 1];
    dcm_source *src = dcm_source_from_memory(r->peek.data, r->peek.len);
    dcm_read_options ro;
    dcm_file *file = NULL;
    char study[INDEX_UID_MAX + 1] = "";
    cp_status st;

    if (src == NULL)
        return CP_ERR_NOMEM;
    memset(&ro, 0, sizeof ro);
    ro.stop_before = STOW_SERIES_UID;
    st = dcm_file_read(src, &ro, &file, NULL);
    if (!last && r->peek.len < ARCHIVE_HEADER_MAX &&
        (file == NULL || !(file->flags & DCM_FILE_STOPPED)) &&
        (st == CP_OK || file == NULL || (file->flags & DCM_FILE_PARTIAL))) {
        dcm_file_destroy(file);
        dcm_source_destroy(src);
        r->next_try = r->peek.len * 2;
        return CP_OK;
    }
    if (file != NULL) {
        dcm_dataset_get_string(file->dataset, STOW_STUDY_UID, study, sizeof study);
        dcm_dataset_get_string(file->dataset, STOW_SOP_CLASS, it->sop_class_uid,
                               sizeof it->sop_class_uid);
        dcm_dataset_get_string(file->dataset, STOW_SOP_UID, it->sop_instance_uid,
                               sizeof it->sop_instance_uid);
    }
    dcm_file_destroy(file);
    dcm_source_destroy(src);

    /* What cannot be read is left to the archive, which says why it refuses it. */
    if (study[0] != '\0' && strcmp(study, r->study) != 0) {
        it->failure = DWEB_FAIL_MISMATCH;
        r->state = PART_REFUSED;
        return CP_OK;
    }
    if ((st = start_ingest(r)) != CP_OK)
        return st;
    archive_ingest_write(r->ingest, r->peek.data, r->peek.len);
    cp_buf_reset(&r->peek);
    return CP_OK;
}

static cp_status on_part_data(void *ctx, const uint8_t *data, size_t len)
{
    stow_request *r = ctx;
    cp_status st;

    switch (r->state) {
    case PART_REFUSED:
        return CP_OK;
    case PART_INGESTING:
        /* Failures are sticky in the ingest and reported by finish. */
        archive_ingest_write(r->ingest, data, len);
        return CP_OK;
    case PART_PEEKING:
        if ((st = cp_buf_append(&r->peek, data, len)) != CP_OK)
            return st;
        return r->peek.len >= r->next_try ? try_peek(r, false) : CP_OK;
    }
    return CP_OK;
}

static void fill_item(dweb_stow_item *it, const archive_result *res)
{
    it->stored = archive_outcome_ok(res->outcome);
    if (!it->stored) {
        uint16_t status = archive_result_dimse_status(res);

        it->failure = status != 0 && status != 0xB000 ? status : DWEB_FAIL_PROCESSING;
    }
    if (res->sop_class_uid[0] != '\0')
        memcpy(it->sop_class_uid, res->sop_class_uid, sizeof it->sop_class_uid);
    if (res->sop_instance_uid[0] != '\0')
        memcpy(it->sop_instance_uid, res->sop_instance_uid, sizeof it->sop_instance_uid);
    memcpy(it->study_uid, res->study_uid, sizeof it->study_uid);
    memcpy(it->series_uid, res->series_uid, sizeof it->series_uid);
}

/* Counts a part's commit and hands its result to its item; st: what finish returned. */
static void apply_result(stow_request *r, size_t item, archive_result *res, cp_status st)
{
    char labels[64];

    if (st != CP_OK) {
        res->outcome = ARCHIVE_REJECTED;
        res->reason = ARCHIVE_REASON_RESOURCES;
    }
    snprintf(labels, sizeof labels, "source=\"dicomweb\",outcome=\"%s\"",
             archive_outcome_name(res->outcome));
    http_metrics_counter_add("cloudpacs_archive_instances_total", labels, 1);
    fill_item(&r->items[item], res);
}

/* A finisher: commits queued jobs until the request stops and none is left. */
static void *finisher_main(void *arg)
{
    stow_request *r = arg;

    pthread_mutex_lock(&r->lock);
    for (;;) {
        stow_job *job;

        while (r->queue == NULL && !r->stopping)
            pthread_cond_wait(&r->work, &r->lock);
        if (r->queue == NULL)
            break;
        job = r->queue;
        r->queue = job->queued;
        if (r->queue == NULL)
            r->queue_tail = NULL;
        pthread_mutex_unlock(&r->lock);
        job->st = archive_ingest_finish(job->ingest, &job->res);
        job->ingest = NULL;
        pthread_mutex_lock(&r->lock);
        r->open_jobs--;
        pthread_cond_broadcast(&r->done);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/*
 * Hands a finished part's ingest to the finishers (its result is applied by
 * collect_jobs), after waiting while STOW_JOBS_MAX are open. Without memory
 * for the job or any finisher thread, the commit is made here.
 */
static void queue_finish(stow_request *r, archive_ingest *in, size_t item)
{
    stow_job *job = cp_calloc(1, sizeof *job);

    if (job == NULL) {
        archive_result res;
        cp_status st;

        memset(&res, 0, sizeof res);
        st = archive_ingest_finish(in, &res);
        apply_result(r, item, &res, st);
        return;
    }
    job->ingest = in;
    job->item = item;
    pthread_mutex_lock(&r->lock);
    while (r->open_jobs >= STOW_JOBS_MAX)
        pthread_cond_wait(&r->done, &r->lock);
    if (r->finisher_count < STOW_FINISHERS && r->open_jobs >= r->finisher_count &&
        pthread_create(&r->finishers[r->finisher_count], NULL, finisher_main, r) == 0)
        r->finisher_count++;
    if (r->jobs_tail != NULL)
        r->jobs_tail->next = job;
    else
        r->jobs = job;
    r->jobs_tail = job;
    if (r->finisher_count == 0) {
        pthread_mutex_unlock(&r->lock);
        job->st = archive_ingest_finish(in, &job->res);
        job->ingest = NULL;
        return;
    }
    if (r->queue_tail != NULL)
        r->queue_tail->queued = job;
    else
        r->queue = job;
    r->queue_tail = job;
    r->open_jobs++;
    pthread_cond_signal(&r->work);
    pthread_mutex_unlock(&r->lock);
}

/* Waits for every commit, stops the finishers and hands each result to its item. */
static void collect_jobs(stow_request *r)
{
    pthread_mutex_lock(&r->lock);
    while (r->open_jobs > 0)
        pthread_cond_wait(&r->done, &r->lock);
    r->stopping = true;
    pthread_cond_broadcast(&r->work);
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < r->finisher_count; i++)
        pthread_join(r->finishers[i], NULL);
    r->finisher_count = 0;

    while (r->jobs != NULL) {
        stow_job *job = r->jobs;

        r->jobs = job->next;
        apply_result(r, job->item, &job->res, job->st);
        cp_free(job);
    }
    r->jobs_tail = NULL;
}

static cp_status on_part_end(void *ctx)
{
    stow_request *r = ctx;
    archive_ingest *in;
    cp_status st;

    if (r->state == PART_PEEKING && (st = try_peek(r, true)) != CP_OK)
        return st;
    r->in_part = false;
    if (r->state != PART_INGESTING)
        return CP_OK;
    in = r->ingest;
    r->ingest = NULL;
    queue_finish(r, in, r->count - 1);
    return CP_OK;
}

/* --- the request ------------------------------------------------------------------ */

static void stow_free(void *ctx)
{
    stow_request *r = ctx;

    /* Parts that arrived whole are committed even when the request was cut. */
    collect_jobs(r);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->work);
    pthread_cond_destroy(&r->done);
    archive_ingest_abort(r->ingest);
    http_multipart_reader_destroy(r->reader);
    cp_buf_free(&r->peek);
    cp_free(r->items);
    cp_free(r);
}

static cp_status on_body(http_request *req, const uint8_t *chunk, size_t len, void *ctx)
{
    stow_request *r = ctx;

    (void)req;
    if (r->body_status != CP_OK)
        return CP_OK;
    r->body_status = http_multipart_feed(r->reader, chunk, len, NULL);
    return CP_OK;
}

/* The part the body stopped in is not stored, and is reported failed. */
static void fail_open_part(stow_request *r)
{
    if (!r->in_part)
        return;
    archive_ingest_abort(r->ingest);
    r->ingest = NULL;
    r->items[r->count - 1].stored = false;
    r->items[r->count - 1].failure = DWEB_FAIL_UNDERSTAND;
    r->in_part = false;
}

static const char *common_study(const stow_request *r)
{
    const char *study = r->study;

    for (size_t i = 0; i < r->count && study == NULL; i++)
        if (r->items[i].stored)
            study = r->items[i].study_uid;
    for (size_t i = 0; i < r->count && study != NULL; i++)
        if (r->items[i].stored && strcmp(r->items[i].study_uid, study) != 0)
            return NULL;
    return study;
}

/* One Import record (PS3.15 A.5.3.5) per study that received instances. */
static void audit_import(const stow_request *r, http_request *req)
{
    for (size_t i = 0; i < r->count; i++) {
        const dweb_stow_item *it = &r->items[i];
        bool seen = false;
        audit_record rec;

        for (size_t j = 0; j < i && !seen; j++)
            seen = r->items[j].stored && strcmp(r->items[j].study_uid, it->study_uid) == 0;
        if (!it->stored || seen)
            continue;
        memset(&rec, 0, sizeof rec);
        rec.event = AUDIT_IMPORT;
        rec.action = AUDIT_CREATE;
        rec.outcome = AUDIT_SUCCESS;
        snprintf(rec.type, sizeof rec.type, "stow");
        snprintf(rec.object_kind, sizeof rec.object_kind, "study");
        snprintf(rec.object_id, sizeof rec.object_id, "%s", it->study_uid);
        rec.institution_id = r->institution_id;
        dweb_audit(r->svc, req, &rec);
    }
}

static cp_status on_complete(http_request *req, void *ctx)
{
    stow_request *r = ctx;
    char root[DWEB_URL_MAX];
    cp_buf body = CP_BUF_INIT;
    cp_status st = r->body_status;
    int status;

    if (st == CP_OK)
        st = http_multipart_finish(r->reader, NULL);
    fail_open_part(r);
    collect_jobs(r);
    if (st == CP_ERR_LIMIT || st == CP_ERR_NOMEM)
        return http_respond_error(req, st == CP_ERR_LIMIT ? 413 : 503,
                                  st == CP_ERR_LIMIT ? "the body passes a multipart limit"
                                                     : "out of memory");
    if (st != CP_OK && r->count == 0)
        return http_respond_error(req, 400, st == CP_ERR_TRUNCATED
                                  ? "the multipart body is truncated"
                                  : "the body is not a multipart/related body with that "
                                    "boundary");
    if (dweb_root_url(req, root, sizeof root) != CP_OK)
        return http_respond_error(req, 400, "the Host header is too long");

    audit_import(r, req);
    status = dweb_stow_status(r->items, r->count);
    st = dweb_stow_response_json(r->items, r->count, root, common_study(r), &body);
    if (st == CP_OK)
        st = http_respond_buffer(req, status, DWEB_DICOM_JSON, body.data, body.len);
    else
        st = http_respond_error(req, 503, "out of memory");
    cp_buf_free(&body);
    return st;
}

cp_status dweb_stow_handle(http_request *req, void *ctx)
{
    const dweb_config *cfg = dweb_service_config(ctx);
    const principal *p = cfg->api != NULL ? api_principal(req) : NULL;
    const char *ctype = http_request_header(req, "Content-Type");
    const char *study = http_request_param(req, "study");
    http_multipart_callbacks cb = { on_part_begin, on_part_data, on_part_end };
    char boundary[HTTP_MULTIPART_BOUNDARY_MAX + 1];
    char type[HTTP_MEDIA_MAX];
    stow_request *r;
    cp_status st;

    if (ctype == NULL || !http_media_type_is(ctype, "multipart/related"))
        return http_respond_error(req, 415, "the body must be multipart/related; "
                                  "type=\"application/dicom\"");
    st = http_header_param(ctype, "type", type, sizeof type);
    if (st == CP_OK ? !http_media_type_is(type, "application/dicom")
                    : st != CP_ERR_NOT_FOUND)
        return http_respond_error(req, 415, "only type=\"application/dicom\" is stored");
    if (http_multipart_boundary_parse(ctype, boundary, sizeof boundary) != CP_OK)
        return http_respond_error(req, 400, "the Content-Type has no usable boundary");
    if (study != NULL && !dweb_uid_is_valid(study))
        return http_respond_error(req, 400, "the path holds an invalid UID");
    if (cfg->api != NULL && p == NULL)
        return http_respond_error(req, 401, "authentication required");
    if (p != NULL && !policy_allows(p, POLICY_STUDY_STORE))
        return http_respond_error(req, 403, "studies.store is needed");

    r = cp_calloc(1, sizeof *r);
    if (r == NULL)
        return http_respond_error(req, 503, "out of memory");
    r->arc = cfg->arc;
    r->svc = ctx;
    r->institution_id = p != NULL ? p->institution_id : 0;
    r->study = study;
    cp_buf_init(&r->peek);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->work, NULL);
    pthread_cond_init(&r->done, NULL);
    if (http_multipart_reader_create(boundary, NULL, &cb, r, &r->reader, NULL) != CP_OK) {
        stow_free(r);
        return http_respond_error(req, 503, "out of memory");
    }
    http_request_on_cleanup(req, stow_free, r);
    return http_request_read_body(req, on_body, on_complete, r);
}
