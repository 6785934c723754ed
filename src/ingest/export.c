/*
 * export.c - one export rule (export.h): the change log read from the
 * rule's remembered position (index.h), or the released reading orders
 * read from the last release seen, studies and orders of the rule's
 * institution queued as export_job rows (ledger.h), and each job writing
 * the study's stored Part 10 files (PS3.10 7.1) and/or the released
 * report's PDF to the target share under the patterns' names, through
 * ".<name>.part" temporaries renamed when whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "http/http.h"
#include "ingest/export.h"
#include "ingest/intake.h"
#include "ingest/ledger.h"
#include "ingest/pattern.h"
#include "ingest/share.h"

/* Changes read per pass, and jobs run per pass. */
#define EXPORT_CHANGES_PER_PASS 500
#define EXPORT_JOBS_PER_PASS 16

/* Instances fetched from the index per query while a study is written. */
#define EXPORT_PAGE 100

/* How often the change log is read when nothing is due sooner. */
#define EXPORT_POLL_US 1000000

/*
 * Released orders are read again this far back from the last release seen:
 * a release committed late with an earlier time is still found, and one
 * seen twice is queued once (ledger_release_add).
 */
#define EXPORT_RELEASE_LOOKBACK_US (300LL * 1000000)

/* The default wait after a release for its SR and PDF to be stored. */
#define EXPORT_SETTLE_DEFAULT_S 10
#define EXPORT_SETTLE_MAX_S 3600

#define EXPORT_NAME_MAX 64

typedef enum { ON_STUDY_COMPLETE, ON_REPORT_RELEASED } export_on;

/* What a job writes: bits. */
enum { WHAT_DICOM = 1, WHAT_PDF = 2 };

struct export_rule {
    char name[EXPORT_NAME_MAX + 1];
    share *sh;
    char pattern[INGEST_PATH_MAX];
    char pdf_pattern[INGEST_PATH_MAX];
    char film_dir[INGEST_PATH_MAX];     /* where the released reports' PDFs are kept */
    export_on on;
    unsigned what;
    int64_t settle_us;
    int64_t institution_id;
    index_db *idx;
    store *st;
    ledger *lg;
    int stop_fd;
    ingest_log_fn log;
    void *log_ctx;

    pthread_mutex_t lock;
    bool stopping;
    bool failing;
    char last_error[CP_ERROR_DETAIL_MAX];
    uint64_t files_written;
    uint64_t pdfs_written;
};

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void say(export_rule *r, cp_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void say(export_rule *r, cp_log_level level, const char *event, const char *fmt, ...)
{
    char detail[CP_ERROR_DETAIL_MAX + 256];
    va_list ap;

    if (r->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    r->log(r->log_ctx, level, event, detail);
}

static bool stopping(export_rule *r)
{
    bool stop;

    pthread_mutex_lock(&r->lock);
    stop = r->stopping;
    pthread_mutex_unlock(&r->lock);
    return stop;
}

/* --- configuration ---------------------------------------------------------- */

static cp_status read_rule(const ingest_env *env, const char *section, export_rule *r,
                           cp_error *err)
{
    const cp_config *cfg = env->cfg;
    const char *on = cp_config_get(cfg, section, "on", "study_complete");
    const char *what = cp_config_get(cfg, section, "what", "dicom");
    const char *pattern = cp_config_get(cfg, section, "pattern", PATTERN_DEFAULT);
    const char *pdf_pattern = cp_config_get(cfg, section, "pdf_pattern", PATTERN_PDF_DEFAULT);
    int64_t settle;
    cp_status st;

    if (strcmp(on, "study_complete") == 0)
        r->on = ON_STUDY_COMPLETE;
    else if (strcmp(on, "report_released") == 0)
        r->on = ON_REPORT_RELEASED;
    else
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "on: study_complete or report_released, not \"%.32s\"", on);
    if (strcmp(what, "dicom") == 0)
        r->what = WHAT_DICOM;
    else if (strcmp(what, "pdf") == 0)
        r->what = WHAT_PDF;
    else if (strcmp(what, "both") == 0)
        r->what = WHAT_DICOM | WHAT_PDF;
    else
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "what: dicom, pdf or both, not \"%.32s\"", what);
    if (r->on == ON_STUDY_COMPLETE && (r->what & WHAT_PDF))
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "what = %s needs a released report: a study_complete rule "
                            "exports dicom only (use on = report_released)", what);
    if (strlen(pattern) >= sizeof r->pattern || strlen(pdf_pattern) >= sizeof r->pdf_pattern)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "pattern too long");
    st = pattern_check(pattern, err);
    if (st != CP_OK)
        return st;
    if (r->on == ON_STUDY_COMPLETE && pattern_uses(pattern, "OrderID"))
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "pattern: {OrderID} is known only to report_released rules");
    snprintf(r->pattern, sizeof r->pattern, "%s", pattern);
    if (r->what & WHAT_PDF) {
        st = pattern_check(pdf_pattern, err);
        if (st != CP_OK)
            return st;
        if (pattern_instance_level(pdf_pattern))
            return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "pdf_pattern: only patient, study and {OrderID} fields "
                                "name a report PDF");
        snprintf(r->pdf_pattern, sizeof r->pdf_pattern, "%s", pdf_pattern);
    }
    st = cp_config_get_int(cfg, section, "settle_seconds", EXPORT_SETTLE_DEFAULT_S, 0,
                           EXPORT_SETTLE_MAX_S, &settle, err);
    if (st != CP_OK)
        return st;
    r->settle_us = settle * 1000000;
    st = intake_institution(env->dir, cp_config_get(cfg, section, "institution", ""),
                            &r->institution_id, err);
    if (st == CP_OK)
        st = intake_share_open(cfg, section, "target", &r->sh, err);
    return st;
}

cp_status export_create(const ingest_env *env, const char *section, export_rule **out,
                        cp_error *err)
{
    const char *name = section + strlen("export.");
    char path[INGEST_PATH_MAX];
    export_rule *r;
    cp_status st;

    *out = NULL;
    if (name[0] == '\0' || strlen(name) > EXPORT_NAME_MAX || strpbrk(name, "\"\\ ") != NULL)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "[%.80s]: bad rule name", section);
    r = cp_calloc(1, sizeof *r);
    if (r == NULL)
        return CP_ERR_NOMEM;
    pthread_mutex_init(&r->lock, NULL);
    r->stop_fd = -1;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->idx = env->idx;
    r->st = env->st;
    r->log = env->log;
    r->log_ctx = env->log_ctx;
    /* Where api_film keeps a released report's PDF (api/api_film.h). */
    if ((size_t)snprintf(r->film_dir, sizeof r->film_dir, "%s/film", env->data_dir) >=
        sizeof r->film_dir) {
        export_destroy(r);
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "data directory path too long");
    }
    st = read_rule(env, section, r, err);
    if (st == CP_OK) {
        snprintf(path, sizeof path, "%s/index.sqlite", env->data_dir);
        st = ledger_open(path, &r->lg, err);
    }
    if (st == CP_OK) {
        r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->stop_fd < 0)
            st = CP_ERR_NOMEM;
    }
    if (st != CP_OK) {
        if (err != NULL && st != CP_ERR_NOMEM) {
            char detail[CP_ERROR_DETAIL_MAX];

            snprintf(detail, sizeof detail, "%s", err->detail);
            snprintf(err->detail, sizeof err->detail, "[%.60s] %.170s", section, detail);
        }
        export_destroy(r);
        return st;
    }
    *out = r;
    return CP_OK;
}

void export_destroy(export_rule *r)
{
    if (r == NULL)
        return;
    share_destroy(r->sh);
    ledger_close(r->lg);
    if (r->stop_fd >= 0)
        close(r->stop_fd);
    pthread_mutex_destroy(&r->lock);
    cp_free(r);
}

const char *export_name(const export_rule *r)
{
    return r->name;
}

/* --- the change log ------------------------------------------------------------ */

typedef struct changes_ctx {
    export_rule *r;
    int64_t last;
    size_t queued;
    cp_error *err;
} changes_ctx;

static cp_status on_change(void *ctx, const index_change *c)
{
    changes_ctx *cc = ctx;
    export_rule *r = cc->r;
    cp_status st = CP_OK;

    if (c->kind == INDEX_CHANGE_STUDY_COMPLETE &&
        (r->institution_id == 0 || c->institution_id == r->institution_id)) {
        st = ledger_job_add(r->lg, r->name, c->study_uid, now_us(), cc->err);
        cc->queued += st == CP_OK;
    }
    if (st == CP_OK)
        cc->last = c->seq;
    return st;
}

static cp_status read_changes(export_rule *r, cp_error *err)
{
    changes_ctx cc = { r, 0, 0, err };
    cp_status st;

    st = ledger_position(r->lg, r->name, &cc.last, err);
    if (st != CP_OK)
        return st;
    for (;;) {
        int64_t from = cc.last;

        st = index_changes_since(r->idx, from, EXPORT_CHANGES_PER_PASS, on_change, &cc, err);
        if (cc.last != from) {
            cp_status ps = ledger_set_position(r->lg, r->name, cc.last, err);

            if (st == CP_OK)
                st = ps;
        }
        if (st != CP_OK || cc.last == from || stopping(r))
            return st;
    }
}

/* --- released reports ------------------------------------------------------------ */

typedef struct releases_ctx {
    export_rule *r;
    int64_t last_us;            /* the (release time, order id) read last */
    int64_t last_id;
    int64_t newest_us;
    size_t rows;
    size_t queued;
    cp_error *err;
} releases_ctx;

static cp_status on_release(void *ctx, const ledger_release *rel)
{
    releases_ctx *rc = ctx;
    export_rule *r = rc->r;
    bool added = false;
    cp_status st = CP_OK;

    if (rel->study_uid[0] != '\0' &&
        (r->institution_id == 0 || rel->institution_id == r->institution_id)) {
        st = ledger_release_add(r->lg, r->name, rel->order_id, rel->study_uid,
                                rel->released_us, rel->released_us + r->settle_us, now_us(),
                                &added, rc->err);
        if (st == CP_OK && added) {
            rc->queued++;
            say(r, CP_LOG_INFO, "export.release_queued", "rule=%s order=%" PRId64
                " study_uid=%s", r->name, rel->order_id, rel->study_uid);
        }
    }
    rc->rows++;
    rc->last_us = rel->released_us;
    rc->last_id = rel->order_id;
    if (rel->released_us > rc->newest_us)
        rc->newest_us = rel->released_us;
    return st;
}

/*
 * Queues the orders released since the last one seen (less the look-back);
 * the position remembered is the newest release time seen.
 */
static cp_status read_releases(export_rule *r, cp_error *err)
{
    releases_ctx rc = { r, 0, 0, 0, 0, 0, err };
    int64_t position;
    cp_status st;

    st = ledger_position(r->lg, r->name, &position, err);
    if (st != CP_OK)
        return st;
    rc.newest_us = position;
    rc.last_us = position > EXPORT_RELEASE_LOOKBACK_US ? position - EXPORT_RELEASE_LOOKBACK_US
                                                       : 0;
    for (;;) {
        rc.rows = 0;
        st = ledger_released_orders(r->lg, rc.last_us, rc.last_id, EXPORT_CHANGES_PER_PASS,
                                    on_release, &rc, err);
        if (st != CP_OK || rc.rows < EXPORT_CHANGES_PER_PASS || stopping(r))
            break;
    }
    if (rc.newest_us > position) {
        cp_status ps = ledger_set_position(r->lg, r->name, rc.newest_us, err);

        if (st == CP_OK)
            st = ps;
    }
    return st;
}

/* --- writing a study --------------------------------------------------------- */

typedef struct rows_ctx {
    index_row *rows;
    size_t count;
} rows_ctx;

static cp_status on_row(void *ctx, const index_row *row)
{
    rows_ctx *rc = ctx;

    if (rc->count < EXPORT_PAGE)
        rc->rows[rc->count++] = *row;
    return CP_OK;
}

/* What a file is copied from: a stored blob or a local file. */
typedef struct export_source {
    store_reader *rd;
    int fd;
} export_source;

static cp_status source_read(export_source *src, char *buf, size_t *got, cp_error *err)
{
    ssize_t n;

    if (src->rd != NULL)
        return store_read(src->rd, buf, INGEST_CHUNK_BYTES, got, err);
    do
        n = read(src->fd, buf, INGEST_CHUNK_BYTES);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "reading the report PDF: %s", strerror(errno));
    *got = (size_t)n;
    return CP_OK;
}

/* Copies src to the share as a temporary beside path, then renames it to path. */
static cp_status put_file(export_rule *r, const char *path, export_source *src, char *buf,
                          cp_error *err)
{
    char tmp[INGEST_PATH_MAX + 16];
    const char *slash, *base;
    share_file *f = NULL;
    size_t got = 1;
    cp_status st = CP_OK;

    slash = strrchr(path, '/');
    base = slash != NULL ? slash + 1 : path;
    snprintf(tmp, sizeof tmp, "%.*s.%s.part", (int)(base - path), path, base);
    if (slash != NULL) {
        char dir[INGEST_PATH_MAX];

        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        st = share_mkdirs(r->sh, dir, err);
        if (st != CP_OK)
            return st;
    }
    st = share_file_open(r->sh, tmp, true, &f, err);
    while (st == CP_OK && got > 0) {
        st = source_read(src, buf, &got, err);
        if (st == CP_OK && got > 0)
            st = share_file_write(f, buf, got, err);
    }
    if (f != NULL) {
        cp_status cs = share_file_close(f, err);

        if (st == CP_OK)
            st = cs;
    }
    if (st == CP_OK)
        st = share_rename(r->sh, tmp, path, err);
    if (st != CP_OK && f != NULL)
        share_unlink(r->sh, tmp, NULL);
    return st;
}

/* Copies the blob of one instance to the share under the pattern's name. */
static cp_status write_one(export_rule *r, const index_row *row, int64_t order_id, char *buf,
                           cp_error *err)
{
    char path[INGEST_PATH_MAX];
    export_source src = { NULL, -1 };
    cp_status st;

    st = pattern_expand_order(r->pattern, row, order_id, path, sizeof path, err);
    if (st == CP_OK)
        st = store_open(r->st, row->rec.instance.blob_key, &src.rd, err);
    if (st == CP_OK)
        st = put_file(r, path, &src, buf, err);
    store_close(src.rd);
    return st;
}

/*
 * Copies the released report's PDF (kept by the film service as
 * <data_dir>/film/order-<id>.pdf) under the PDF pattern's name, filled from
 * one instance row of the study. A PDF not there yet is an error: the job
 * is tried again.
 */
static cp_status write_pdf(export_rule *r, int64_t order_id, const index_row *row, char *buf,
                           cp_error *err)
{
    char path[INGEST_PATH_MAX], local[INGEST_PATH_MAX + 32];
    export_source src = { NULL, -1 };
    cp_status st;

    snprintf(local, sizeof local, "%s/order-%" PRId64 ".pdf", r->film_dir, order_id);
    st = pattern_expand_order(r->pdf_pattern, row, order_id, path, sizeof path, err);
    if (st != CP_OK)
        return st;
    src.fd = open(local, O_RDONLY | O_CLOEXEC);
    if (src.fd < 0)
        return cp_error_set(err, errno == ENOENT ? CP_ERR_NOT_FOUND : CP_ERR_IO,
                            CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no report PDF for order %" PRId64 " (%s)", order_id,
                            strerror(errno));
    st = put_file(r, path, &src, buf, err);
    close(src.fd);
    return st;
}

/*
 * Writes what the rule exports of a study: its instances (WHAT_DICOM) and
 * the released order's PDF (WHAT_PDF, order_id > 0). *files counts the
 * instances written, *pdfs the PDFs.
 */
static cp_status write_study(export_rule *r, const char *study_uid, int64_t order_id,
                             size_t *files, size_t *pdfs, cp_error *err)
{
    index_row first;
    bool have_first = false, whole = false;
    index_term term = { "StudyInstanceUID", study_uid };
    index_query_spec q;
    rows_ctx rc = { NULL, 0 };
    char *buf = cp_malloc(INGEST_CHUNK_BYTES);
    cp_status st = CP_OK;

    *files = 0;
    *pdfs = 0;
    rc.rows = cp_calloc(EXPORT_PAGE, sizeof *rc.rows);
    if (buf == NULL || rc.rows == NULL) {
        st = CP_ERR_NOMEM;
        goto done;
    }
    memset(&q, 0, sizeof q);
    q.level = INDEX_LEVEL_INSTANCE;
    q.terms = &term;
    q.term_count = 1;
    q.limit = (r->what & WHAT_DICOM) ? EXPORT_PAGE : 1;
    for (q.offset = 0; st == CP_OK; q.offset += EXPORT_PAGE) {
        rc.count = 0;
        st = index_query(r->idx, &q, on_row, &rc, err);
        if (st == CP_OK && rc.count > 0 && !have_first) {
            first = rc.rows[0];
            have_first = true;
        }
        for (size_t i = 0; i < rc.count && st == CP_OK && (r->what & WHAT_DICOM); i++) {
            st = write_one(r, &rc.rows[i], order_id, buf, err);
            *files += st == CP_OK;
        }
        whole = rc.count < EXPORT_PAGE || !(r->what & WHAT_DICOM);
        if (whole || stopping(r))
            break;
    }
    /* Stopped half way: not done, so that the next start writes it again. */
    if (st == CP_OK && !whole)
        st = cp_error_set(err, CP_ERR_STOPPED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "stopped before the study was written");
    if (st == CP_OK && !have_first)
        st = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "the study has no instances in the index");
    if (st == CP_OK && (r->what & WHAT_PDF) && order_id > 0) {
        st = write_pdf(r, order_id, &first, buf, err);
        *pdfs += st == CP_OK;
    }

done:
    cp_free(buf);
    cp_free(rc.rows);
    return st;
}

static void count_files(export_rule *r, const char *outcome, size_t n)
{
    char labels[EXPORT_NAME_MAX + 48];

    snprintf(labels, sizeof labels, "rule=\"%s\",outcome=\"%s\"", r->name, outcome);
    http_metrics_counter_add("cloudpacs_export_files_total", labels, (double)n);
}

static cp_status run_job(void *ctx, const ledger_job *job)
{
    export_rule *r = ctx;
    ledger_job next = *job;
    size_t files = 0, pdfs = 0;
    int64_t backoff_s;
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    if (stopping(r))
        return CP_ERR_STOPPED;
    st = write_study(r, job->study_uid, job->order_id, &files, &pdfs, &err);
    /* Interrupted by a stop: the job stays as it was, for the next start. */
    if (st == CP_ERR_STOPPED)
        return st;
    next.attempts++;
    if (st == CP_OK) {
        snprintf(next.state, sizeof next.state, "%s", LEDGER_JOB_DONE);
        next.last_error[0] = '\0';
        count_files(r, "written", files + pdfs);
        if (job->order_id > 0)
            say(r, CP_LOG_INFO, "export.release_done", "rule=%s order=%" PRId64 " study_uid=%s"
                " files=%zu pdf=%zu attempts=%" PRId64, r->name, job->order_id,
                job->study_uid, files, pdfs, next.attempts);
        else
            say(r, CP_LOG_INFO, "export.study_done", "rule=%s study_uid=%s files=%zu attempts=%"
                PRId64, r->name, job->study_uid, files, next.attempts);
    } else {
        share_reset(r->sh);
        backoff_s = INGEST_BACKOFF_MIN_S;
        for (int64_t i = 1; i < next.attempts && backoff_s < INGEST_BACKOFF_MAX_S; i++)
            backoff_s *= 2;
        if (backoff_s > INGEST_BACKOFF_MAX_S)
            backoff_s = INGEST_BACKOFF_MAX_S;
        snprintf(next.state, sizeof next.state, "%s", LEDGER_JOB_RETRY);
        snprintf(next.last_error, sizeof next.last_error, "%s", err.detail);
        next.next_try_us = now_us() + backoff_s * 1000000;
        count_files(r, "failed", 1);
        say(r, CP_LOG_WARN, "export.study_failed", "rule=%s study_uid=%s order=%" PRId64
            " attempts=%" PRId64 " retry_seconds=%" PRId64 " detail=\"%s\"", r->name,
            job->study_uid, job->order_id, next.attempts, backoff_s, err.detail);
    }
    pthread_mutex_lock(&r->lock);
    r->failing = st != CP_OK;
    snprintf(r->last_error, sizeof r->last_error, "%s", st != CP_OK ? err.detail : "");
    r->files_written += files;
    r->pdfs_written += pdfs;
    pthread_mutex_unlock(&r->lock);
    cp_error_clear(&err);
    return ledger_job_update(r->lg, &next, now_us(), &err);
}

cp_status export_pass(export_rule *r, int64_t *wait_us, cp_error *err)
{
    cp_status st;

    *wait_us = EXPORT_POLL_US;
    st = r->on == ON_STUDY_COMPLETE ? read_changes(r, err) : read_releases(r, err);
    if (st == CP_OK)
        st = ledger_jobs_due(r->lg, r->name, now_us(), EXPORT_JOBS_PER_PASS, run_job, r, err);
    return st == CP_ERR_STOPPED ? CP_OK : st;
}

static const char *what_name(const export_rule *r)
{
    return r->what == (WHAT_DICOM | WHAT_PDF) ? "both" : r->what == WHAT_PDF ? "pdf" : "dicom";
}

void *export_run(void *arg)
{
    export_rule *r = arg;

    say(r, CP_LOG_INFO, "export.started", "rule=%s target=%s kind=%s on=%s what=%s "
        "institution=%" PRId64, r->name, share_display(r->sh), share_kind(r->sh),
        r->on == ON_STUDY_COMPLETE ? "study_complete" : "report_released", what_name(r),
        r->institution_id);
    while (!stopping(r)) {
        struct pollfd pfd = { r->stop_fd, POLLIN, 0 };
        int64_t wait = EXPORT_POLL_US;
        cp_error err;

        cp_error_clear(&err);
        if (export_pass(r, &wait, &err) != CP_OK)
            say(r, CP_LOG_WARN, "export.pass_failed", "rule=%s detail=\"%s\"", r->name,
                err.detail);
        if (!stopping(r))
            poll(&pfd, 1, (int)(wait / 1000));
    }
    say(r, CP_LOG_INFO, "export.stopped", "rule=%s", r->name);
    return NULL;
}

void export_stop(export_rule *r)
{
    uint64_t one = 1;

    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_mutex_unlock(&r->lock);
    if (write(r->stop_fd, &one, sizeof one) < 0)
        return;
}

void export_status(export_rule *r, json_t *o)
{
    pthread_mutex_lock(&r->lock);
    json_object_set_new(o, "target", json_string(share_display(r->sh)));
    json_object_set_new(o, "kind", json_string(share_kind(r->sh)));
    json_object_set_new(o, "on", json_string(r->on == ON_STUDY_COMPLETE ? "study_complete"
                                                                       : "report_released"));
    json_object_set_new(o, "what", json_string(what_name(r)));
    json_object_set_new(o, "institution", json_integer(r->institution_id));
    json_object_set_new(o, "state", json_string(r->failing ? "failing" : "ok"));
    json_object_set_new(o, "last_error", r->last_error[0] != '\0'
                        ? json_string(r->last_error) : json_null());
    json_object_set_new(o, "files_written", json_integer((json_int_t)r->files_written));
    json_object_set_new(o, "pdfs_written", json_integer((json_int_t)r->pdfs_written));
    pthread_mutex_unlock(&r->lock);
}
