/*
 * cmd_audit.c - `cloudpacs audit`: checks, exports and lists the audit
 * trail (auth/audit.h) kept in the index database of the data directory.
 *
 *   verify  walks the hash chain; exit 1 names the first bad record
 *   export  JSON lines in the shape of the IHE ATNA audit message
 *           (DICOM PS3.15 A.5), oldest first, streamed page by page
 *   list    a table for people, newest first
 *
 * Using the trail is itself recorded (event Audit Log Used, 110101, actor
 * "cli:<login name>") once the work is done, so that a verification or an
 * export shows in the trail it read.
 */
#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "auth/audit.h"
#include "cli/cli.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"

#define AUDIT_CLI_PATH_MAX 4096

typedef enum audit_verb { VERB_VERIFY, VERB_EXPORT, VERB_LIST } audit_verb;

typedef struct audit_args {
    audit_verb verb;
    const char *config;
    const char *data_dir;
    audit_filter filter;
    const char *event_name;
    long limit;
} audit_args;

/* The trail opened, with what the records written and exported name. */
typedef struct audit_trail {
    audit_log *log;
    char source[128];                   /* AuditSourceID: [audit] source_id */
    char path[AUDIT_CLI_PATH_MAX + 32];
} audit_trail;

/* What the command did, for the record it writes about itself. */
typedef struct audit_done {
    int64_t records;
    audit_verify_result verify;
    bool failed;
} audit_done;

void cli_audit_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs audit verify [--config FILE] [--data-dir DIR]\n"
        "       cloudpacs audit export [--config FILE] [--data-dir DIR] [FILTERS]\n"
        "       cloudpacs audit list [--config FILE] [--data-dir DIR] [FILTERS] [--limit N]\n"
        "\n"
        "The audit trail of the data directory (DIR/index.sqlite): every access to\n"
        "patient data and every change of rights, hash-chained.\n"
        "\n"
        "  verify   checks the chain: exit 0 and the number of records when whole,\n"
        "           exit 1 with the first bad sequence number and the problem\n"
        "  export   one JSON object per line (IHE ATNA shape), oldest first\n"
        "  list     a table, newest first\n"
        "\n"
        "filters (export, list):\n"
        "  --from DATE      records at or after DATE (YYYY-MM-DD or\n"
        "                   YYYY-MM-DDTHH:MM:SS, UTC)\n"
        "  --to DATE        records at or before DATE (a bare date: its whole day)\n"
        "  --user ID        by user id\n"
        "  --actor NAME     by actor (user name, token name, AE title)\n"
        "  --patient ID     by Patient ID\n"
        "  --study UID      by study (any object id: an order id, a query)\n"
        "  --event NAME     by event (instances_accessed, user_authentication, ...)\n"
        "  --limit N        list: at most N records (default %d)\n"
        "\n"
        "options:\n"
        "  --config FILE    the configuration (default: $CLOUDPACS_CONFIG)\n"
        "  --data-dir DIR   the data directory (default: [core] data_dir)\n"
        "  -h, --help       this text\n"
        "\n"
        "Each run is recorded in the trail (event audit_log_used, actor\n"
        "cli:<login name>).\n"
        "\n"
        "exit status: 0 on success; 1 when the chain is broken or the trail cannot\n"
        "be read; 2 on bad options; 4 when the configuration is wrong.\n",
        AUDIT_QUERY_DEFAULT);
}

/* --- arguments ------------------------------------------------------------------ */

static bool parse_int(const char *s, long long min, long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min)
        return false;
    *out = v;
    return true;
}

/*
 * A UTC date or time in microseconds. A bare date read as an upper bound
 * means the end of that day.
 */
static bool parse_date(const char *s, bool upper, int64_t *out)
{
    struct tm tm;
    int n = 0, len = (int)strlen(s);
    bool date_only;
    time_t t;

    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) != 3 || n != 10)
        return false;
    date_only = n == len;
    if (!date_only) {
        int m = 0;

        if ((s[n] != 'T' && s[n] != ' ') ||
            sscanf(s + n + 1, "%2d:%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &m) != 3)
            return false;
        n += 1 + m;
        if (s[n] == 'Z')
            n++;
        if (n != len)
            return false;
    }
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *out = (int64_t)t * 1000000;
    if (date_only && upper)
        *out += INT64_C(86400) * 1000000 - 1;
    return true;
}

/* The value of option `name` at argv[*i], or NULL when argv[*i] is another option. */
static const char *option_value(int argc, char **argv, int *i, const char *name, bool *bad)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];

    if (strncmp(arg, name, n) != 0)
        return NULL;
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "cloudpacs audit: %s needs a value\n", name);
        *bad = true;
        return "";
    }
    return argv[++*i];
}

/* Filters and --limit; false (after a message) on a bad one. */
static bool parse_filter(int argc, char **argv, int *i, audit_args *a, bool *matched)
{
    audit_filter *f = &a->filter;
    bool bad = false;
    long long n = 0;
    const char *v;

    *matched = true;
    if ((v = option_value(argc, argv, i, "--from", &bad)) != NULL) {
        if (!bad && !parse_date(v, false, &f->from_us))
            goto bad_date;
    } else if ((v = option_value(argc, argv, i, "--to", &bad)) != NULL) {
        if (!bad && !parse_date(v, true, &f->to_us))
            goto bad_date;
    } else if ((v = option_value(argc, argv, i, "--user", &bad)) != NULL) {
        if (!bad && !parse_int(v, 1, &n)) {
            fprintf(stderr, "cloudpacs audit: --user wants a user id (a number)\n");
            return false;
        }
        f->user_id = n;
    } else if ((v = option_value(argc, argv, i, "--actor", &bad)) != NULL) {
        f->actor = v;
    } else if ((v = option_value(argc, argv, i, "--patient", &bad)) != NULL) {
        f->patient_id = v;
    } else if ((v = option_value(argc, argv, i, "--study", &bad)) != NULL) {
        f->object_id = v;
    } else if ((v = option_value(argc, argv, i, "--event", &bad)) != NULL) {
        f->event = audit_event_parse(v);
        if (!bad && f->event == AUDIT_EVENT_NONE) {
            fprintf(stderr, "cloudpacs audit: unknown event \"%s\"\n", v);
            return false;
        }
    } else if (a->verb == VERB_LIST &&
               (v = option_value(argc, argv, i, "--limit", &bad)) != NULL) {
        if (!bad && !parse_int(v, 1, &n)) {
            fprintf(stderr, "cloudpacs audit: --limit wants a positive number\n");
            return false;
        }
        a->limit = (long)n;
    } else {
        *matched = false;
    }
    return !bad;

bad_date:
    fprintf(stderr, "cloudpacs audit: \"%s\" is not a date (YYYY-MM-DD[THH:MM:SS])\n", v);
    return false;
}

/* CLI_EXIT_OK, CLI_EXIT_USAGE, or -1 after printing the help. */
static int parse_args(int argc, char **argv, audit_args *a)
{
    memset(a, 0, sizeof *a);
    a->config = getenv("CLOUDPACS_CONFIG");
    a->limit = AUDIT_QUERY_DEFAULT;
    if (argc < 2) {
        cli_audit_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        cli_audit_usage(stdout);
        return -1;
    }
    if (strcmp(argv[1], "verify") == 0) {
        a->verb = VERB_VERIFY;
    } else if (strcmp(argv[1], "export") == 0) {
        a->verb = VERB_EXPORT;
    } else if (strcmp(argv[1], "list") == 0) {
        a->verb = VERB_LIST;
    } else {
        fprintf(stderr, "cloudpacs audit: unknown action \"%s\" (verify, export, list)\n",
                argv[1]);
        return CLI_EXIT_USAGE;
    }

    for (int i = 2; i < argc; i++) {
        bool bad = false, matched = false;
        const char *v;

        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            cli_audit_usage(stdout);
            return -1;
        } else if ((v = option_value(argc, argv, &i, "--config", &bad)) != NULL) {
            a->config = v;
        } else if ((v = option_value(argc, argv, &i, "--data-dir", &bad)) != NULL) {
            a->data_dir = v;
        } else if (a->verb != VERB_VERIFY) {
            if (!parse_filter(argc, argv, &i, a, &matched))
                return CLI_EXIT_USAGE;
        }
        if (bad)
            return CLI_EXIT_USAGE;
        if (v == NULL && !matched) {
            fprintf(stderr, "cloudpacs audit: bad argument \"%s\"\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    return CLI_EXIT_OK;
}

/* --- opening ----------------------------------------------------------------------- */

/* Opens the trail of the data directory, which must exist; the tables are made if new. */
static int open_trail(const audit_args *a, audit_trail *t)
{
    char text[CP_ERROR_DETAIL_MAX + 64];
    const char *data_dir, *level;
    cp_config *cfg = NULL;
    cp_log_level lvl;
    struct stat sb;
    cp_error err;
    int rc = CLI_EXIT_OK;

    cp_error_clear(&err);
    if (a->config != NULL ? cp_config_load(a->config, &cfg, &err) != CP_OK
                          : (cfg = cp_config_create()) == NULL) {
        fprintf(stderr, "cloudpacs audit: %s: %s\n", a->config != NULL ? a->config : "",
                cp_error_format(&err, text, sizeof text));
        return CLI_EXIT_CONFIG;
    }
    data_dir = a->data_dir != NULL ? a->data_dir
                                   : cp_config_get(cfg, "core", "data_dir", "./cloudpacs-data");
    level = cp_config_get(cfg, "core", "log_level", NULL);
    if (level != NULL && cp_log_parse_level(level, &lvl) == 0)
        cp_log_set_level(lvl);
    snprintf(t->source, sizeof t->source, "%s",
             cp_config_get(cfg, "audit", "source_id", "cloudpacs"));

    if (strlen(data_dir) > AUDIT_CLI_PATH_MAX) {
        fprintf(stderr, "cloudpacs audit: data directory path too long\n");
        rc = CLI_EXIT_USAGE;
    } else if (stat(data_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "cloudpacs audit: %s: no data directory there\n", data_dir);
        rc = CLI_EXIT_FAILURE;
    } else {
        snprintf(t->path, sizeof t->path, "%s/index.sqlite", data_dir);
        if (audit_open_sqlite(t->path, &t->log, &err) != CP_OK) {
            fprintf(stderr, "cloudpacs audit: %s: %s\n", t->path,
                    cp_error_format(&err, text, sizeof text));
            rc = CLI_EXIT_FAILURE;
        }
    }
    cp_config_destroy(cfg);
    return rc;
}

/* --- the record of this run ----------------------------------------------------------- */

static void login_name(char *out, size_t size)
{
    struct passwd pw, *found = NULL;
    char buf[1024];
    const char *env;

    if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &found) == 0 && found != NULL) {
        snprintf(out, size, "%s", pw.pw_name);
        return;
    }
    env = getenv("USER");
    if (env != NULL && env[0] != '\0')
        snprintf(out, size, "%s", env);
    else
        snprintf(out, size, "uid%lu", (unsigned long)geteuid());
}

/* Copies what fits of src; audit_write cuts it again on a character boundary. */
static void copy_field(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* The filters of the run as a JSON object, so that the trail says what was read. */
static void filter_detail(const audit_args *a, const audit_done *d, char *out, size_t size)
{
    const audit_filter *f = &a->filter;
    json_t *o = json_object();
    char *text;

    if (o == NULL) {
        out[0] = '\0';
        return;
    }
    json_object_set_new(o, "records", json_integer((json_int_t)d->records));
    if (a->verb == VERB_VERIFY) {
        json_object_set_new(o, "first_bad_seq", json_integer(d->verify.first_bad_seq));
    } else {
        if (f->from_us != 0)
            json_object_set_new(o, "from_us", json_integer(f->from_us));
        if (f->to_us != 0)
            json_object_set_new(o, "to_us", json_integer(f->to_us));
        if (f->user_id != 0)
            json_object_set_new(o, "user_id", json_integer(f->user_id));
        if (f->actor != NULL)
            json_object_set_new(o, "actor", json_string(f->actor));
        if (f->object_id != NULL)
            json_object_set_new(o, "object_id", json_string(f->object_id));
        if (f->event != AUDIT_EVENT_NONE)
            json_object_set_new(o, "event", json_string(audit_event_name(f->event)));
    }
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);

    /* A detail cut short would no longer be JSON: the counts alone then. */
    if (text != NULL && strlen(text) < size)
        snprintf(out, size, "%s", text);
    else
        snprintf(out, size, "{\"records\":%lld}", (long long)d->records);
    free(text);
}

/*
 * Records this use of the trail, and commits it; false (after a message)
 * when the record could not be committed.
 */
static bool record_use(audit_log *log, const audit_args *a, const char *path,
                       const audit_done *d)
{
    static const char *const verbs[] = { "verify", "export", "list" };
    char login[60], text[CP_ERROR_DETAIL_MAX + 64];
    audit_record r;
    cp_error err;

    memset(&r, 0, sizeof r);
    r.event = AUDIT_LOG_USED;
    r.action = a->verb == VERB_VERIFY ? AUDIT_EXECUTE : AUDIT_READ;
    r.outcome = d->failed ? AUDIT_SERIOUS_FAILURE : AUDIT_SUCCESS;
    snprintf(r.type, sizeof r.type, "%s", verbs[a->verb]);
    login_name(login, sizeof login);
    snprintf(r.actor, sizeof r.actor, "cli:%s", login);
    if (gethostname(r.peer, sizeof r.peer - 1) != 0)
        r.peer[0] = '\0';
    snprintf(r.object_kind, sizeof r.object_kind, "audit");
    copy_field(r.object_id, sizeof r.object_id, path);
    if (a->filter.patient_id != NULL)
        snprintf(r.patient_id, sizeof r.patient_id, "%s", a->filter.patient_id);
    filter_detail(a, d, r.detail, sizeof r.detail);
    cp_error_clear(&err);
    if (audit_write(log, &r) == CP_OK && audit_flush(log, &err) == CP_OK) {
        if (a->verb != VERB_VERIFY || d->verify.first_bad_seq == 0)
            return true;

        /* A broken chain is a security event of its own. */
        r.event = AUDIT_SECURITY_ALERT;
        snprintf(r.type, sizeof r.type, "audit_chain_broken");
        if (audit_write(log, &r) == CP_OK && audit_flush(log, &err) == CP_OK)
            return true;
    }
    fprintf(stderr, "cloudpacs audit: this run could not be recorded: %s\n",
            err.status != CP_OK ? cp_error_format(&err, text, sizeof text) : "refused");
    return false;
}

/* --- verify ------------------------------------------------------------------------------ */

static int run_verify(audit_log *log, audit_done *d)
{
    char text[CP_ERROR_DETAIL_MAX + 64];
    cp_error err;

    cp_error_clear(&err);
    if (audit_verify(log, &d->verify, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs audit: verify: %s\n", cp_error_format(&err, text, sizeof text));
        d->failed = true;
        return CLI_EXIT_FAILURE;
    }
    d->records = d->verify.records;
    if (d->verify.first_bad_seq != 0) {
        printf("audit trail broken at seq %lld: %s (%lld records checked before it)\n",
               (long long)d->verify.first_bad_seq, d->verify.problem,
               (long long)d->verify.records);
        return CLI_EXIT_FAILURE;
    }
    printf("audit trail intact: %lld records checked\n", (long long)d->verify.records);
    return CLI_EXIT_OK;
}

/* --- export ------------------------------------------------------------------------------ */

typedef struct export_state {
    const char *source;
    cp_buf line;
    int64_t last_seq;
    size_t page_count;
    int64_t written;
} export_state;

static cp_status export_one(void *ctx, const audit_record *r, const uint8_t hash[AUDIT_HASH_SIZE])
{
    export_state *x = ctx;
    cp_status st;

    cp_buf_reset(&x->line);
    st = audit_record_json_hashed(r, hash, x->source, &x->line);
    if (st == CP_OK)
        st = cp_buf_append_byte(&x->line, '\n');
    if (st != CP_OK)
        return st;
    if (fwrite(x->line.data, 1, x->line.len, stdout) != x->line.len)
        return CP_ERR_IO;
    x->last_seq = r->seq;
    x->page_count++;
    x->written++;
    return CP_OK;
}

/*
 * Pages of AUDIT_QUERY_MAX records after the last seq written, so that a
 * trail of millions costs one page of memory. The upper time bound is fixed
 * at the start, so that records written meanwhile do not keep it going.
 */
static int run_export(audit_log *log, const audit_args *a, const char *source, audit_done *d)
{
    char text[CP_ERROR_DETAIL_MAX + 64];
    export_state x = { source, CP_BUF_INIT, 0, 0, 0 };
    audit_filter f = a->filter;
    struct timespec now;
    cp_status st;
    cp_error err;

    clock_gettime(CLOCK_REALTIME, &now);
    if (f.to_us == 0)
        f.to_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    f.limit = AUDIT_QUERY_MAX;
    f.newest_first = false;
    cp_error_clear(&err);
    do {
        x.page_count = 0;
        f.after_seq = x.last_seq;
        st = audit_query_hashed(log, &f, export_one, &x, &err);
    } while (st == CP_OK && x.page_count == AUDIT_QUERY_MAX);
    cp_buf_free(&x.line);
    d->records = x.written;
    if (st == CP_OK && fflush(stdout) != 0)
        st = CP_ERR_IO;
    if (st != CP_OK) {
        if (err.status == CP_OK)
            cp_error_set(&err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "writing the export");
        fprintf(stderr, "cloudpacs audit: export: %s\n", cp_error_format(&err, text, sizeof text));
        d->failed = true;
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}

/* --- list ------------------------------------------------------------------------------- */

typedef struct list_state {
    int64_t oldest_seq;
    size_t page_count;
    int64_t printed;
} list_state;

static const char *or_dash(const char *s)
{
    return s[0] != '\0' ? s : "-";
}

static cp_status list_one(void *ctx, const audit_record *r)
{
    list_state *l = ctx;
    char when[32], user[24];
    time_t t = (time_t)(r->time_us / 1000000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(when, sizeof when, "-");
    snprintf(user, sizeof user, "%lld", (long long)r->user_id);
    printf("%8lld  %-19s  %-21s  %c  %2d  %-20s  %5s  %-8s  %-30s  %s\n", (long long)r->seq,
           when, or_dash(audit_event_name(r->event)), (char)r->action, (int)r->outcome,
           or_dash(r->actor), r->user_id != 0 ? user : "-", or_dash(r->object_kind),
           or_dash(r->object_id), or_dash(r->patient_id));
    l->oldest_seq = r->seq;
    l->page_count++;
    l->printed++;
    return CP_OK;
}

/* Newest first, a page at a time before the oldest printed, up to --limit. */
static int run_list(audit_log *log, const audit_args *a, audit_done *d)
{
    char text[CP_ERROR_DETAIL_MAX + 64];
    list_state l = { 0, 0, 0 };
    audit_filter f = a->filter;
    cp_status st = CP_OK;
    cp_error err;

    printf("%8s  %-19s  %-21s  %s  %2s  %-20s  %5s  %-8s  %-30s  %s\n", "SEQ", "TIME (UTC)",
           "EVENT", "A", "O", "ACTOR", "USER", "OBJECT", "ID", "PATIENT");
    f.newest_first = true;
    cp_error_clear(&err);
    while (l.printed < a->limit) {
        long left = a->limit - (long)l.printed;

        f.limit = left < AUDIT_QUERY_MAX ? (size_t)left : AUDIT_QUERY_MAX;
        f.before_seq = l.oldest_seq;
        l.page_count = 0;
        st = audit_query(log, &f, list_one, &l, &err);
        if (st != CP_OK || l.page_count < f.limit || l.oldest_seq <= 1)
            break;
    }
    d->records = l.printed;
    if (st != CP_OK) {
        fprintf(stderr, "cloudpacs audit: list: %s\n", cp_error_format(&err, text, sizeof text));
        d->failed = true;
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}

int cli_audit_run(int argc, char **argv)
{
    audit_trail t;
    audit_args a;
    audit_done d;
    int rc;

    rc = parse_args(argc, argv, &a);
    if (rc == -1)
        return CLI_EXIT_OK;
    if (rc != CLI_EXIT_OK)
        return rc;
    memset(&t, 0, sizeof t);
    rc = open_trail(&a, &t);
    if (rc != CLI_EXIT_OK)
        return rc;

    memset(&d, 0, sizeof d);
    if (a.verb == VERB_VERIFY)
        rc = run_verify(t.log, &d);
    else if (a.verb == VERB_EXPORT)
        rc = run_export(t.log, &a, t.source, &d);
    else
        rc = run_list(t.log, &a, &d);
    if (!record_use(t.log, &a, t.path, &d) && rc == CLI_EXIT_OK)
        rc = CLI_EXIT_FAILURE;
    audit_close(t.log);
    return rc;
}
