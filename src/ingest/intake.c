/*
 * intake.c - one intake source (intake.h): scan, stability, ledger, the
 * archive pipeline (archive.h, PS3.10 files streamed in chunks), ZIP
 * archives (zipwalk.h), DICOMDIR files skipped (PS3.10 7.2: the files they
 * reference are taken on their own), and the keep/delete/move step.
 *
 * The order of the steps makes a crash at any point harmless: a file is
 * ingested, then recorded in the ledger, then deleted or moved. A crash
 * before the record ingests it again, which the archive answers as a
 * duplicate of the same data set; a crash after it finds the record and
 * only finishes the delete or move.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "http/http.h"
#include "ingest/intake.h"
#include "ingest/ledger.h"
#include "ingest/stable.h"
#include "ingest/zipwalk.h"

/* Media Storage Directory Storage (PS3.4 B.5): the SOP class of a DICOMDIR. */
#define INTAKE_DICOMDIR_CLASS "1.2.840.10008.1.3.10"

/* Rescan this long after a file should have become stable, for clock slack. */
#define INTAKE_MARGIN_US 100000

#define INTAKE_NAME_MAX 64

typedef enum { AFTER_KEEP, AFTER_DELETE, AFTER_MOVE } after_mode;

typedef struct scan_item {
    char *path;
    uint64_t size;
    int64_t mtime_us;
    bool stable;            /* ready to take in this pass */
    bool done;              /* recorded in the ledger: forget it */
} scan_item;

/*
 * What one of the files taken at once needs of its own: a connection to
 * the share and one to the ledger. Worker 0 uses the source's own.
 */
typedef struct worker {
    intake *in;
    share *sh;
    ledger *lg;
    pthread_t thread;
    cp_status st;
    cp_error err;
} worker;

struct intake {
    char name[INTAKE_NAME_MAX + 1];
    char source[INTAKE_NAME_MAX + 16];          /* "intake.NAME", the archive's sender */
    share *sh;
    after_mode after;
    char done_dir[INGEST_PATH_MAX];
    int64_t poll_us;
    int64_t stable_us;
    int64_t institution_id;
    archive *arc;
    ledger *lg;
    worker workers[INGEST_JOBS_MAX];
    int64_t jobs;
    size_t next_item;                           /* under lock, during a pass */
    bool pass_failed;                           /* under lock: a worker lost the share */
    stable_tracker *tracker;
    char tmp_dir[INGEST_PATH_MAX];
    char local_root[INGEST_PATH_MAX];           /* for inotify; "" for SMB */
    int stop_fd;
    int notify_fd;
    ingest_log_fn log;
    void *log_ctx;

    /* the scan in progress */
    scan_item *items;
    size_t item_count;
    size_t item_cap;

    /* state, under lock: read by the status thread */
    pthread_mutex_t lock;
    bool down;
    bool started;
    char last_error[CP_ERROR_DETAIL_MAX];
    int64_t backoff_s;
    int64_t retry_at_us;
    uint64_t pass_count;
    bool stopping;
};

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void say(intake *in, cp_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void say(intake *in, cp_log_level level, const char *event, const char *fmt, ...)
{
    char detail[CP_ERROR_DETAIL_MAX + 256];
    va_list ap;

    if (in->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    in->log(in->log_ctx, level, event, detail);
}

static void count_by(intake *in, const char *outcome, double n)
{
    char labels[INTAKE_NAME_MAX + 64];

    snprintf(labels, sizeof labels, "source=\"%s\",outcome=\"%s\"", in->name, outcome);
    http_metrics_counter_add("cloudpacs_intake_files_total", labels, n);
}

static void count(intake *in, const char *outcome)
{
    count_by(in, outcome, 1);
}

/* The series a scrape should see from the start, before any file. */
static void count_register(intake *in)
{
    static const char *const outcomes[] = {
        LEDGER_STORED, LEDGER_DUPLICATE, LEDGER_FAILED, LEDGER_SKIPPED, LEDGER_DICOMDIR,
    };

    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++)
        count_by(in, outcomes[i], 0);
}

static bool intake_stopping(intake *in)
{
    bool stop;

    pthread_mutex_lock(&in->lock);
    stop = in->stopping;
    pthread_mutex_unlock(&in->lock);
    return stop;
}

/* --- configuration ---------------------------------------------------------- */

static bool name_ok(const char *s)
{
    if (s[0] == '\0' || strlen(s) > INTAKE_NAME_MAX)
        return false;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

cp_status intake_institution(directory *dir, const char *code, int64_t *id, cp_error *err)
{
    char *end;
    long long v;

    *id = 0;
    if (code == NULL || code[0] == '\0')
        return CP_OK;
    if (dir != NULL) {
        directory_institution inst;
        cp_error derr;

        cp_error_clear(&derr);
        if (directory_institution_by_code(dir, code, &inst, &derr) == CP_OK) {
            *id = inst.id;
            return CP_OK;
        }
    }
    errno = 0;
    v = strtoll(code, &end, 10);
    if (errno == 0 && end != code && *end == '\0' && v > 0) {
        *id = v;
        return CP_OK;
    }
    return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "institution \"%.64s\" is neither a known code nor an id", code);
}

cp_status intake_share_open(const cp_config *cfg, const char *section, const char *url_key,
                            share **out, cp_error *err)
{
    share_config sc;
    share_credentials cred;
    const char *file = cp_config_get(cfg, section, "credentials_file", "");
    cp_status st;

    memset(&sc, 0, sizeof sc);
    memset(&cred, 0, sizeof cred);
    sc.url = cp_config_get(cfg, section, url_key, "");
    sc.user = cp_config_get(cfg, section, "user", "");
    sc.password = cp_config_get(cfg, section, "password", "");
    sc.domain = cp_config_get(cfg, section, "domain", "");
    if (file[0] != '\0') {
        st = share_credentials_load(file, &cred, err);
        if (st != CP_OK)
            return st;
        sc.user = cred.user;
        sc.password = cred.password;
        if (cred.domain[0] != '\0')
            sc.domain = cred.domain;
    }
    st = share_open(&sc, out, err);
    explicit_bzero(&cred, sizeof cred);
    return st;
}

static cp_status read_after(const cp_config *cfg, const char *section, intake *in,
                            cp_error *err)
{
    const char *after = cp_config_get(cfg, section, "after", "keep");
    const char *done = cp_config_get(cfg, section, "done_dir", ".cloudpacs-done");

    if (strcmp(after, "keep") == 0)
        in->after = AFTER_KEEP;
    else if (strcmp(after, "delete") == 0)
        in->after = AFTER_DELETE;
    else if (strcmp(after, "move") == 0)
        in->after = AFTER_MOVE;
    else
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "[%s] after: keep, delete or move, not \"%.32s\"", section, after);
    while (*done == '/')
        done++;
    if (done[0] == '\0' || strstr(done, "..") != NULL || strlen(done) >= sizeof in->done_dir)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "[%s] done_dir: a folder below the source's folder", section);
    snprintf(in->done_dir, sizeof in->done_dir, "%s", done);
    return CP_OK;
}

static cp_status read_numbers(const cp_config *cfg, const char *section, intake *in,
                              cp_error *err)
{
    int64_t poll_s, stable_s;
    cp_status st;

    st = cp_config_get_int(cfg, section, "poll_seconds", 10, 1, 86400, &poll_s, err);
    if (st == CP_OK)
        st = cp_config_get_int(cfg, section, "jobs", INGEST_JOBS_DEFAULT, 1, INGEST_JOBS_MAX,
                               &in->jobs, err);
    if (st == CP_OK)
        st = cp_config_get_int(cfg, section, "stable_seconds", 2, 0, 86400, &stable_s, err);
    if (st != CP_OK)
        return st;
    in->poll_us = poll_s * 1000000;
    in->stable_us = stable_s * 1000000;
    return CP_OK;
}

static cp_status make_tmp_dir(const ingest_env *env, intake *in, cp_error *err)
{
    int n = snprintf(in->tmp_dir, sizeof in->tmp_dir, "%s/ingest-tmp", env->data_dir);

    if (n < 0 || (size_t)n >= sizeof in->tmp_dir)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "data directory path too long");
    if (mkdir(in->tmp_dir, 0700) != 0 && errno != EEXIST)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "mkdir \"%s\": %s", in->tmp_dir, strerror(errno));
    return CP_OK;
}

static cp_status open_ledger(const ingest_env *env, ledger **out, cp_error *err)
{
    char path[INGEST_PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/index.sqlite", env->data_dir);

    if (n < 0 || (size_t)n >= sizeof path)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "data directory path too long");
    return ledger_open(path, out, err);
}

cp_status intake_create(const ingest_env *env, const char *section, intake **out,
                        cp_error *err)
{
    const char *name = section + strlen("intake.");
    intake *in;
    cp_status st;

    *out = NULL;
    if (!name_ok(name))
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "[%.80s]: a name of letters, digits, '-', '_' and '.'", section);
    in = cp_calloc(1, sizeof *in);
    if (in == NULL)
        return CP_ERR_NOMEM;
    in->stop_fd = -1;
    in->notify_fd = -1;
    pthread_mutex_init(&in->lock, NULL);
    snprintf(in->name, sizeof in->name, "%s", name);
    snprintf(in->source, sizeof in->source, "%s", section);
    in->arc = env->arc;
    in->log = env->log;
    in->log_ctx = env->log_ctx;
    in->backoff_s = INGEST_BACKOFF_MIN_S;

    st = read_after(env->cfg, section, in, err);
    if (st == CP_OK)
        st = read_numbers(env->cfg, section, in, err);
    if (st == CP_OK)
        st = intake_institution(env->dir, cp_config_get(env->cfg, section, "institution", ""),
                                &in->institution_id, err);
    if (st == CP_OK)
        st = intake_share_open(env->cfg, section, "url", &in->sh, err);
    if (st == CP_OK)
        st = make_tmp_dir(env, in, err);
    if (st == CP_OK)
        st = open_ledger(env, &in->lg, err);
    in->workers[0] = (worker){ .in = in, .sh = in->sh, .lg = in->lg };
    for (int64_t i = 1; st == CP_OK && i < in->jobs; i++) {
        in->workers[i].in = in;
        st = intake_share_open(env->cfg, section, "url", &in->workers[i].sh, err);
        if (st == CP_OK)
            st = open_ledger(env, &in->workers[i].lg, err);
    }
    if (st != CP_OK)
        goto fail;
    in->tracker = stable_create(in->stable_us);
    in->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (in->tracker == NULL || in->stop_fd < 0) {
        st = CP_ERR_NOMEM;
        goto fail;
    }
    if (strcmp(share_kind(in->sh), "local") == 0) {
        snprintf(in->local_root, sizeof in->local_root, "%s", share_display(in->sh));
        in->notify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    }
    *out = in;
    return CP_OK;

fail:
    if (st != CP_ERR_NOMEM && err != NULL && strncmp(err->detail, "[", 1) != 0) {
        char detail[CP_ERROR_DETAIL_MAX];

        snprintf(detail, sizeof detail, "%s", err->detail);
        snprintf(err->detail, sizeof err->detail, "[%.60s] %.170s", section, detail);
    }
    intake_destroy(in);
    return st;
}

void intake_destroy(intake *in)
{
    if (in == NULL)
        return;
    for (size_t i = 0; i < in->item_count; i++)
        cp_free(in->items[i].path);
    cp_free(in->items);
    for (size_t i = 1; i < INGEST_JOBS_MAX; i++) {
        share_destroy(in->workers[i].sh);
        ledger_close(in->workers[i].lg);
    }
    share_destroy(in->sh);
    ledger_close(in->lg);
    stable_destroy(in->tracker);
    if (in->stop_fd >= 0)
        close(in->stop_fd);
    if (in->notify_fd >= 0)
        close(in->notify_fd);
    pthread_mutex_destroy(&in->lock);
    cp_free(in);
}

const char *intake_name(const intake *in)
{
    return in->name;
}

/* --- scanning --------------------------------------------------------------- */

typedef struct list_ctx {
    intake *in;
    const char *dir;
    char **subdirs;
    size_t sub_count;
    size_t sub_cap;
} list_ctx;

static cp_status join(const char *dir, const char *name, char **out)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p;

    if (a + b + 2 > INGEST_PATH_MAX)
        return CP_ERR_LIMIT;
    p = cp_malloc(a + b + 2);
    if (p == NULL)
        return CP_ERR_NOMEM;
    if (a > 0) {
        memcpy(p, dir, a);
        p[a++] = '/';
    }
    memcpy(p + a, name, b + 1);
    *out = p;
    return CP_OK;
}

static cp_status on_entry(void *ctx, const share_entry *e)
{
    list_ctx *lc = ctx;
    intake *in = lc->in;
    char *path;
    cp_status st;

    /* Hidden entries: the done folder, export temporaries, writers' own temporaries. */
    if (e->name[0] == '.')
        return CP_OK;
    st = join(lc->dir, e->name, &path);
    if (st == CP_ERR_LIMIT)
        return CP_OK;
    if (st != CP_OK)
        return st;
    if (e->is_dir) {
        if (strcmp(path, in->done_dir) == 0 ||
            cp_array_grow(&lc->subdirs, &lc->sub_cap, lc->sub_count, sizeof *lc->subdirs,
                          16, INGEST_SCAN_FILES_MAX) != CP_OK) {
            cp_free(path);
            return CP_OK;
        }
        lc->subdirs[lc->sub_count++] = path;
        return CP_OK;
    }
    if (cp_array_grow(&in->items, &in->item_cap, in->item_count, sizeof *in->items, 64,
                      INGEST_SCAN_FILES_MAX) != CP_OK) {
        cp_free(path);
        return CP_OK;
    }
    in->items[in->item_count].path = path;
    in->items[in->item_count].size = e->size;
    in->items[in->item_count].mtime_us = e->mtime_us;
    in->items[in->item_count].stable = false;
    in->items[in->item_count].done = false;
    in->item_count++;
    return CP_OK;
}

static void watch_dir(intake *in, const char *rel)
{
    char full[INGEST_PATH_MAX * 2];

    if (in->notify_fd < 0)
        return;
    snprintf(full, sizeof full, "%s%s%s", in->local_root, rel[0] != '\0' ? "/" : "", rel);
    /* A folder watched already keeps its watch; failures leave the periodic rescan. */
    inotify_add_watch(in->notify_fd, full, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
}

/* Lists the tree below dir, depth first, into in->items. */
static cp_status scan_tree(intake *in, const char *dir, int depth, cp_error *err)
{
    list_ctx lc = { in, dir, NULL, 0, 0 };
    cp_status st;

    watch_dir(in, dir);
    st = share_list(in->sh, dir, on_entry, &lc, err);
    /* A subfolder removed meanwhile, or closed to us, is passed over, not the share down. */
    if (depth > 0 && (st == CP_ERR_NOT_FOUND || st == CP_ERR_FORBIDDEN)) {
        if (err != NULL)
            cp_error_clear(err);
        st = CP_OK;
    }
    for (size_t i = 0; i < lc.sub_count; i++) {
        if (st == CP_OK && depth + 1 < INGEST_SCAN_DEPTH_MAX &&
            in->item_count < INGEST_SCAN_FILES_MAX)
            st = scan_tree(in, lc.subdirs[i], depth + 1, err);
        cp_free(lc.subdirs[i]);
    }
    cp_free(lc.subdirs);
    return st;
}

static void clear_items(intake *in)
{
    for (size_t i = 0; i < in->item_count; i++)
        cp_free(in->items[i].path);
    in->item_count = 0;
}

/* --- taking one file ---------------------------------------------------------- */

/* Where a taken file's bytes come from: a share file or a ZIP entry. */
typedef struct byte_source {
    share_file *file;
    zipwalk_reader *zip;
} byte_source;

static cp_status source_read(byte_source *src, void *buf, size_t len, size_t *got,
                             cp_error *err)
{
    if (src->zip != NULL)
        return zipwalk_read(src->zip, buf, len, got, err);
    return share_file_read(src->file, buf, len, got, err);
}

/* What became of one file or entry. */
typedef struct take_result {
    const char *outcome;        /* a LEDGER_* outcome, or NULL: try again later */
    char sop_uid[INDEX_UID_MAX + 1];
    char detail[CP_ERROR_DETAIL_MAX];
    bool read_failed;           /* the share failed: it is down */
    bool gone;                  /* removed since the listing: nothing to do */
} take_result;

static bool is_dicomdir_name(const char *path)
{
    const char *base = strrchr(path, '/');

    base = base != NULL ? base + 1 : path;
    return strcasecmp(base, "DICOMDIR") == 0;
}

static void classify(const archive_result *res, take_result *tr)
{
    snprintf(tr->sop_uid, sizeof tr->sop_uid, "%s", res->sop_instance_uid);
    switch (res->outcome) {
    case ARCHIVE_STORED:
    case ARCHIVE_REPLACED:
        tr->outcome = LEDGER_STORED;
        return;
    case ARCHIVE_DUPLICATE:
    case ARCHIVE_KEPT:
        tr->outcome = LEDGER_DUPLICATE;
        return;
    case ARCHIVE_REJECTED:
        break;
    }
    snprintf(tr->detail, sizeof tr->detail, "%.20s: %.200s", archive_reason_name(res->reason),
             res->detail);
    if (res->reason == ARCHIVE_REASON_RESOURCES)
        tr->outcome = NULL;
    else if (strcmp(res->sop_class_uid, INTAKE_DICOMDIR_CLASS) == 0)
        tr->outcome = LEDGER_DICOMDIR;
    else if (res->reason == ARCHIVE_REASON_NOT_DICOM)
        tr->outcome = LEDGER_SKIPPED;
    else
        tr->outcome = LEDGER_FAILED;
}

/*
 * Streams the bytes of src, which begin with the len bytes of head, through
 * the archive pipeline.
 */
static void stream_dicom(worker *w, byte_source *src, const void *head, size_t len,
                         void *buf, take_result *tr)
{
    intake *in = w->in;
    archive_source_info info;
    archive_ingest *ai = NULL;
    archive_result res;
    cp_error err;
    size_t got = len;

    cp_error_clear(&err);
    memset(&info, 0, sizeof info);
    info.source = in->source;
    info.institution_id = in->institution_id;
    if (archive_ingest_begin(in->arc, &info, &ai) != CP_OK) {
        snprintf(tr->detail, sizeof tr->detail, "out of memory");
        return;
    }
    archive_ingest_write(ai, head, len);
    while (got > 0) {
        if (source_read(src, buf, INGEST_CHUNK_BYTES, &got, &err) != CP_OK) {
            archive_ingest_abort(ai);
            snprintf(tr->detail, sizeof tr->detail, "%s", err.detail);
            tr->read_failed = src->zip == NULL;
            if (src->zip != NULL)
                tr->outcome = LEDGER_FAILED;
            return;
        }
        if (got > 0)
            archive_ingest_write(ai, buf, got);
    }
    memset(&res, 0, sizeof res);
    if (archive_ingest_finish(ai, &res) != CP_OK) {
        snprintf(tr->detail, sizeof tr->detail, "archive failed");
        return;
    }
    classify(&res, tr);
}

/* Reads the first chunk into buf: up to INGEST_CHUNK_BYTES, fewer only at the end. */
static cp_status read_head(byte_source *src, char *buf, size_t *len, cp_error *err)
{
    *len = 0;
    while (*len < INGEST_CHUNK_BYTES) {
        size_t got;
        cp_status st = source_read(src, buf + *len, INGEST_CHUNK_BYTES - *len, &got, err);

        if (st != CP_OK)
            return st;
        if (got == 0)
            break;
        *len += got;
    }
    return CP_OK;
}

static void record(worker *w, const char *path, const scan_item *it, const take_result *tr)
{
    intake *in = w->in;
    cp_error err;

    cp_error_clear(&err);
    if (ledger_record(w->lg, in->name, path, it->size, it->mtime_us, tr->outcome,
                      tr->sop_uid, tr->detail, now_us(), &err) != CP_OK)
        say(in, CP_LOG_ERROR, "intake.ledger_failed", "source=%s detail=\"%s\"", in->name,
            err.detail);
    if (strcmp(tr->outcome, LEDGER_UNPACKED) != 0)
        count(in, tr->outcome);
    if (strcmp(tr->outcome, LEDGER_SKIPPED) == 0)
        say(in, CP_LOG_INFO, "intake.file_skipped", "source=%s bytes=%" PRIu64
            " detail=\"not DICOM, left in place; listed by cloudpacs intake status\"",
            in->name, it->size);
    else if (strcmp(tr->outcome, LEDGER_FAILED) == 0)
        say(in, CP_LOG_WARN, "intake.file_refused", "source=%s sop_instance_uid=%s "
            "detail=\"%s\"", in->name, tr->sop_uid[0] != '\0' ? tr->sop_uid : "-", tr->detail);
}

typedef struct zip_ctx {
    worker *w;
    const scan_item *it;
    char *buf;
    char *head;
    size_t entries;
    size_t stored;
} zip_ctx;

static cp_status on_zip_entry(void *ctx, const zipwalk_entry *e, zipwalk_reader *r)
{
    zip_ctx *zc = ctx;
    worker *w = zc->w;
    intake *in = w->in;
    char key[INGEST_PATH_MAX * 2];
    char prior[16];
    bool found = false;
    byte_source src = { NULL, r };
    take_result tr;
    size_t len;
    cp_error err;

    cp_error_clear(&err);
    memset(&tr, 0, sizeof tr);
    snprintf(key, sizeof key, "%s!%s", zc->it->path, e->name);
    if (ledger_lookup(w->lg, in->name, key, zc->it->size, zc->it->mtime_us, &found, prior,
                      &err) != CP_OK)
        return CP_ERR_IO;
    zc->entries++;
    if (found)
        return CP_OK;
    if (is_dicomdir_name(e->name)) {
        tr.outcome = LEDGER_DICOMDIR;
    } else if (read_head(&src, zc->head, &len, &err) != CP_OK) {
        tr.outcome = LEDGER_FAILED;
        snprintf(tr.detail, sizeof tr.detail, "%s", err.detail);
    } else {
        stream_dicom(w, &src, zc->head, len, zc->buf, &tr);
    }
    if (tr.outcome == NULL)
        return CP_ERR_AGAIN;
    zc->stored += strcmp(tr.outcome, LEDGER_STORED) == 0;
    record(w, key, zc->it, &tr);
    return CP_OK;
}

/*
 * Copies an SMB file to a local temporary (libzip needs to seek).
 * *share_failed tells a failure of the share from one of the local disk.
 */
static cp_status copy_local(intake *in, share_file *f, const char *head, size_t len,
                            char *buf, char *tmp, size_t size, bool *share_failed,
                            cp_error *err)
{
    int fd;
    size_t got = len;
    cp_status st = CP_OK;

    *share_failed = false;

    snprintf(tmp, size, "%s/zip-XXXXXX", in->tmp_dir);
    fd = mkstemp(tmp);
    if (fd < 0)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "mkstemp: %s", strerror(errno));
    if (write(fd, head, len) != (ssize_t)len)
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "write: %s", strerror(errno));
    while (st == CP_OK && got > 0) {
        st = share_file_read(f, buf, INGEST_CHUNK_BYTES, &got, err);
        *share_failed = st != CP_OK;
        if (st == CP_OK && got > 0 && write(fd, buf, got) != (ssize_t)got)
            st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "write: %s", strerror(errno));
    }
    close(fd);
    if (st != CP_OK)
        unlink(tmp);
    return st;
}

static void take_zip(worker *w, const scan_item *it, share_file *f, char *head, size_t len,
                     char *buf, take_result *tr)
{
    intake *in = w->in;
    char tmp[INGEST_PATH_MAX * 2];
    zip_ctx zc = { w, it, buf, head, 0, 0 };
    bool copied = false;
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    if (in->local_root[0] != '\0') {
        snprintf(tmp, sizeof tmp, "%s/%s", in->local_root, it->path);
    } else {
        bool share_failed;

        st = copy_local(in, f, head, len, buf, tmp, sizeof tmp, &share_failed, &err);
        if (st != CP_OK) {
            /* A full local disk leaves the file for a later pass (outcome NULL). */
            snprintf(tr->detail, sizeof tr->detail, "%s", err.detail);
            tr->read_failed = share_failed;
            return;
        }
        copied = true;
    }
    st = zipwalk_file(tmp, on_zip_entry, &zc, &err);
    if (copied)
        unlink(tmp);
    if (st == CP_ERR_AGAIN || st == CP_ERR_IO)
        return;
    if (st != CP_OK) {
        tr->outcome = LEDGER_FAILED;
        snprintf(tr->detail, sizeof tr->detail, "%s", err.detail);
        return;
    }
    tr->outcome = LEDGER_UNPACKED;
    snprintf(tr->detail, sizeof tr->detail, "entries=%zu stored=%zu", zc.entries, zc.stored);
}

/* Reads the file and sends it through the pipeline (or unpacks it). */
static void take_bytes(worker *w, const scan_item *it, take_result *tr)
{
    char *head = cp_malloc(INGEST_CHUNK_BYTES);
    char *buf = cp_malloc(INGEST_CHUNK_BYTES);
    share_file *f = NULL;
    byte_source src = { NULL, NULL };
    size_t len = 0;
    cp_error err;

    cp_error_clear(&err);
    if (head == NULL || buf == NULL) {
        snprintf(tr->detail, sizeof tr->detail, "out of memory");
        goto done;
    }
    if (share_file_open(w->sh, it->path, false, &f, &err) != CP_OK) {
        snprintf(tr->detail, sizeof tr->detail, "%s", err.detail);
        /* A file gone between the listing and now is not a share failure. */
        tr->read_failed = err.status != CP_ERR_NOT_FOUND;
        tr->gone = err.status == CP_ERR_NOT_FOUND;
        goto done;
    }
    src.file = f;
    if (read_head(&src, head, &len, &err) != CP_OK) {
        snprintf(tr->detail, sizeof tr->detail, "%s", err.detail);
        tr->read_failed = true;
        goto done;
    }
    if (zipwalk_is_zip(head, len))
        take_zip(w, it, f, head, len, buf, tr);
    else
        stream_dicom(w, &src, head, len, buf, tr);

done:
    if (f != NULL)
        share_file_close(f, NULL);
    cp_free(head);
    cp_free(buf);
}

/* Deletes or moves a file that was taken. */
static cp_status finish_file(worker *w, const char *path, cp_error *err)
{
    intake *in = w->in;
    char target[INGEST_PATH_MAX * 2], dir[INGEST_PATH_MAX * 2];
    char *slash;
    cp_status st;

    if (in->after == AFTER_KEEP)
        return CP_OK;
    if (in->after == AFTER_DELETE)
        return share_unlink(w->sh, path, err);
    snprintf(target, sizeof target, "%s/%s", in->done_dir, path);
    snprintf(dir, sizeof dir, "%s", target);
    slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    st = share_mkdirs(w->sh, dir, err);
    if (st == CP_OK)
        st = share_rename(w->sh, path, target, err);
    return st;
}

static bool taken(const char *outcome)
{
    return strcmp(outcome, LEDGER_STORED) == 0 || strcmp(outcome, LEDGER_DUPLICATE) == 0 ||
           strcmp(outcome, LEDGER_DICOMDIR) == 0 || strcmp(outcome, LEDGER_UNPACKED) == 0;
}

/*
 * One file of the scan. CP_ERR_UNAVAILABLE when the share failed under it:
 * the pass stops and the source is down.
 */
static cp_status take_file(worker *w, const scan_item *it, cp_error *err)
{
    intake *in = w->in;
    char prior[16];
    bool found = false;
    take_result tr;
    cp_status st;

    st = ledger_lookup(w->lg, in->name, it->path, it->size, it->mtime_us, &found, prior, err);
    if (st != CP_OK)
        return st;
    if (found) {
        /* A crash came between the record and the delete or move: finish it. */
        if (taken(prior) && in->after != AFTER_KEEP)
            return finish_file(w, it->path, err) == CP_OK ? CP_OK : CP_ERR_UNAVAILABLE;
        return CP_OK;
    }

    memset(&tr, 0, sizeof tr);
    if (is_dicomdir_name(it->path))
        tr.outcome = LEDGER_DICOMDIR;
    else
        take_bytes(w, it, &tr);
    if (tr.read_failed)
        return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%s", tr.detail);
    if (tr.outcome == NULL && tr.gone)
        return CP_OK;
    if (tr.outcome == NULL) {
        say(in, CP_LOG_WARN, "intake.file_deferred", "source=%s detail=\"%s\"", in->name,
            tr.detail);
        return CP_OK;
    }
    record(w, it->path, it, &tr);
    if (!taken(tr.outcome))
        return CP_OK;
    if (finish_file(w, it->path, err) != CP_OK)
        return CP_ERR_UNAVAILABLE;
    return CP_OK;
}

/* --- the loop ----------------------------------------------------------------- */

static void set_up(intake *in)
{
    bool was_down;
    cp_error err;

    cp_error_clear(&err);
    pthread_mutex_lock(&in->lock);
    was_down = in->down || !in->started;
    in->down = false;
    in->started = true;
    in->last_error[0] = '\0';
    in->backoff_s = INGEST_BACKOFF_MIN_S;
    in->retry_at_us = 0;
    in->pass_count++;
    pthread_mutex_unlock(&in->lock);
    ledger_source_state(in->lg, in->name, "up", NULL, now_us(), now_us(), &err);
    if (was_down)
        say(in, CP_LOG_INFO, "intake.source_up", "source=%s url=%s", in->name,
            share_display(in->sh));
}

static int64_t set_down(intake *in, const cp_error *why)
{
    bool was_up;
    int64_t wait_s;
    cp_error err;

    cp_error_clear(&err);
    for (int64_t i = 0; i < in->jobs; i++)
        share_reset(in->workers[i].sh);
    pthread_mutex_lock(&in->lock);
    was_up = !in->down;
    in->down = true;
    in->started = true;
    snprintf(in->last_error, sizeof in->last_error, "%s", why->detail);
    wait_s = in->backoff_s;
    in->backoff_s = in->backoff_s * 2 > INGEST_BACKOFF_MAX_S ? INGEST_BACKOFF_MAX_S
                                                             : in->backoff_s * 2;
    in->retry_at_us = now_us() + wait_s * 1000000;
    pthread_mutex_unlock(&in->lock);
    ledger_source_state(in->lg, in->name, "down", why->detail, 0, now_us(), &err);
    if (was_up)
        say(in, CP_LOG_WARN, "intake.source_down", "source=%s url=%s retry_seconds=%" PRId64
            " detail=\"%s\"", in->name, share_display(in->sh), wait_s, why->detail);
    return wait_s * 1000000;
}

/* Takes the stable files of the scan, one after the other, until none is left. */
static void *work(void *arg)
{
    worker *w = arg;
    intake *in = w->in;

    w->st = CP_OK;
    cp_error_clear(&w->err);
    for (;;) {
        scan_item *it = NULL;

        pthread_mutex_lock(&in->lock);
        while (in->next_item < in->item_count && !in->pass_failed && !in->stopping &&
               !in->items[in->next_item].stable)
            in->next_item++;
        if (in->next_item < in->item_count && !in->pass_failed && !in->stopping)
            it = &in->items[in->next_item++];
        pthread_mutex_unlock(&in->lock);
        if (it == NULL)
            return NULL;

        cp_error_clear(&w->err);
        w->st = take_file(w, it, &w->err);
        it->done = w->st == CP_OK;
        if (w->st != CP_OK) {
            pthread_mutex_lock(&in->lock);
            in->pass_failed = true;
            pthread_mutex_unlock(&in->lock);
            return NULL;
        }
    }
}

/*
 * Runs up to `jobs` workers over the stable files: each file waits on its
 * blob's fsyncs and its index commit, which overlap when several are taken
 * at once (the index groups their commits).
 */
static cp_status take_stable(intake *in, size_t stable, cp_error *err)
{
    size_t n = stable < (size_t)in->jobs ? stable : (size_t)in->jobs;
    size_t started = 1;
    cp_status st = CP_OK;

    in->next_item = 0;
    in->pass_failed = false;
    for (; started < n; started++)
        if (pthread_create(&in->workers[started].thread, NULL, work,
                           &in->workers[started]) != 0)
            break;
    work(&in->workers[0]);
    for (size_t i = 1; i < started; i++)
        pthread_join(in->workers[i].thread, NULL);
    for (size_t i = 0; i < started && st == CP_OK; i++) {
        if (in->workers[i].st != CP_OK) {
            st = in->workers[i].st;
            if (err != NULL)
                *err = in->workers[i].err;
        }
    }
    return st;
}

cp_status intake_pass(intake *in, int64_t *wait_us, cp_error *err)
{
    int64_t next = in->poll_us;
    size_t stable = 0;
    cp_status st;

    clear_items(in);
    st = share_check(in->sh, err);
    if (st == CP_OK)
        st = scan_tree(in, "", 0, err);
    if (st != CP_OK) {
        *wait_us = set_down(in, err);
        return st;
    }

    for (size_t i = 0; i < in->item_count; i++) {
        scan_item *it = &in->items[i];
        int64_t wait = 0;

        it->stable = stable_observe(in->tracker, it->path, it->size, it->mtime_us, now_us(),
                                    &wait);
        stable += it->stable;
        if (!it->stable && wait + INTAKE_MARGIN_US < next)
            next = wait + INTAKE_MARGIN_US;
    }
    if (stable > 0)
        st = take_stable(in, stable, err);
    for (size_t i = 0; i < in->item_count; i++)
        if (in->items[i].done)
            stable_forget(in->tracker, in->items[i].path);
    stable_sweep(in->tracker);
    clear_items(in);
    if (st == CP_ERR_UNAVAILABLE) {
        *wait_us = set_down(in, err);
        return st;
    }
    if (st != CP_OK) {
        *wait_us = next;
        return st;
    }
    set_up(in);
    *wait_us = next;
    return CP_OK;
}

/* Drains inotify events; any of them means a rescan is worth doing now. */
static bool drain_notify(intake *in)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool any = false;

    while (read(in->notify_fd, buf, sizeof buf) > 0)
        any = true;
    return any;
}

/* Waits up to wait_us for the stop request or, for a local folder, an event. */
static void wait_for(intake *in, int64_t wait_us)
{
    struct pollfd fds[2] = { { in->stop_fd, POLLIN, 0 }, { in->notify_fd, POLLIN, 0 } };
    int64_t ms = wait_us / 1000;
    int n = in->notify_fd >= 0 ? 2 : 1;

    if (ms < 1)
        ms = 1;
    if (poll(fds, (nfds_t)n, (int)(ms > INT32_MAX ? INT32_MAX : ms)) > 0 && n == 2 &&
        (fds[1].revents & POLLIN))
        drain_notify(in);
}

void *intake_run(void *arg)
{
    intake *in = arg;

    count_register(in);
    say(in, CP_LOG_INFO, "intake.started", "source=%s url=%s kind=%s after=%s "
        "poll_seconds=%" PRId64 " stable_seconds=%" PRId64 " institution=%" PRId64, in->name,
        share_display(in->sh), share_kind(in->sh),
        in->after == AFTER_KEEP ? "keep" : in->after == AFTER_DELETE ? "delete" : "move",
        in->poll_us / 1000000, in->stable_us / 1000000, in->institution_id);
    while (!intake_stopping(in)) {
        int64_t wait = in->poll_us;
        cp_error err;

        cp_error_clear(&err);
        if (intake_pass(in, &wait, &err) != CP_OK && err.status != CP_ERR_UNAVAILABLE &&
            !in->down)
            say(in, CP_LOG_WARN, "intake.pass_failed", "source=%s detail=\"%s\"", in->name,
                err.detail);
        if (!intake_stopping(in))
            wait_for(in, wait);
    }
    say(in, CP_LOG_INFO, "intake.stopped", "source=%s", in->name);
    return NULL;
}

void intake_stop(intake *in)
{
    uint64_t one = 1;

    pthread_mutex_lock(&in->lock);
    in->stopping = true;
    pthread_mutex_unlock(&in->lock);
    if (write(in->stop_fd, &one, sizeof one) < 0)
        return;
}

void intake_status(intake *in, json_t *o)
{
    static const char *const afters[] = { "keep", "delete", "move" };
    int64_t retry;

    pthread_mutex_lock(&in->lock);
    json_object_set_new(o, "url", json_string(share_display(in->sh)));
    json_object_set_new(o, "kind", json_string(share_kind(in->sh)));
    json_object_set_new(o, "after", json_string(afters[in->after]));
    json_object_set_new(o, "state", json_string(!in->started ? "starting"
                                                : in->down ? "down" : "up"));
    json_object_set_new(o, "last_error", in->last_error[0] != '\0'
                        ? json_string(in->last_error) : json_null());
    retry = in->down ? (in->retry_at_us - now_us() + 999999) / 1000000 : 0;
    json_object_set_new(o, "retry_in_seconds", json_integer(retry > 0 ? retry : 0));
    json_object_set_new(o, "institution", json_integer(in->institution_id));
    pthread_mutex_unlock(&in->lock);
}
